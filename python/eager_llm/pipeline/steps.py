"""The pipeline's steps, each reading the run folder's earlier outputs and writing its own:

prepare (data -> statistics, split, titles) -> embed (behavior + semantic item embeddings)
-> index (DKI + trie) -> stage1 -> stage2 (training) -> evaluate (test split, baselines)
-> bench (decode speed, ours vs HF generate) -> report.

Each step's key hashes the config parts it reads plus its upstream keys, so changing, say,
``index.semantic.levels`` recomputes index, training and evaluation but reuses the embeddings.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time

import torch
from safetensors.torch import load_file

from ..data import Dataset, Split, leave_one_out, load_dataset, read_preferences
from ..embed import build_item_embeddings, popularity_metrics
from ..evaluate import EvaluationConfig, evaluate
from ..generate import constrained_beam_search, left_pad
from ..index import DualSourceIndex
from ..io import atomic_write_json, save_tensors
from ..model import EagerLLM, Recommender, add_index_tokens
from ..model.backbones import pretrained, smollm2, tiny_llama, word_tokenizer
from ..report import final_loss
from ..tasks import evaluation_prompt_ids, fixed_texts, pad_token_id, training_samples
from ..train import recall_validation, train_stage
from ..train.checkpoint import remove_checkpoint
from .config import ConfigError, RunConfig
from .rundir import RunDir, key_of

STAGES = ("stage1", "stage2")


def _section(value) -> dict:
    # A config's own to_dict knows which fields keep older keys valid (IndexConfig.order).
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


# ----------------------------------------------------------------------------------- keys


def keys(run: RunDir) -> dict[str, str]:
    """The key every step would have for the run's current config."""
    c = run.config
    out = {"prepare": key_of("prepare", _section(c.data), c.seed)}
    out["embed"] = key_of(_prepared_data(run, out["prepare"]), _section(c.embed), c.seed)
    out["index"] = key_of(out["embed"], _section(c.index), c.seed)
    out["stage1"] = key_of(out["index"], c.data.preferences, _section(c.model), _section(c.eager), _section(c.tasks),
                           _section(c.stage1), c.evaluate.validation_users, c.seed)
    out["stage2"] = key_of(out["stage1"], _section(c.stage2), c.evaluate.validation_users, c.seed)
    out["evaluate"] = key_of(out["stage2"], _section(c.evaluate))
    out["bench"] = key_of(out["stage2"], _section(c.bench), _section(c.evaluate))
    return out


def _prepared_data(run: RunDir, prepare_key: str) -> tuple[str, str]:
    """What the steps after prepare see of the data: its content fingerprint once prepare has
    run with ``prepare_key``, so that moving the data folder, or naming it by another path,
    keeps everything computed from it."""
    record = run.step_record("prepare")
    if record is None or record["key"] != prepare_key:
        return ("unprepared", prepare_key)
    return ("data", record["fingerprint"])


def require_current(run: RunDir, name: str) -> None:
    """An error unless step ``name`` finished with the inputs of the current config."""
    stored, expected = run.step_key(name), keys(run)[name]
    command = "train" if name in STAGES else name
    if stored is None:
        raise ConfigError(f"{run.path}: step '{name}' has not run yet; run `eager-llm {command} --run {run.path}`")
    if stored != expected:
        raise ConfigError(f"{run.path}: '{name}' was computed from other inputs than the current config "
                          f"(an earlier step or its settings changed); rerun `eager-llm {command} --run {run.path}`")


# ----------------------------------------------------------------------------------- data


def read_data(config: RunConfig) -> Dataset:
    """The dataset a config names: its seeded subsample when ``data.max_users`` is set."""
    dataset = load_dataset(config.data.source)
    if config.data.max_users is not None:
        dataset = dataset.subsample(config.data.max_users, config.seed)
    return dataset


def load_data(run: RunDir) -> tuple[Dataset, Split]:
    dataset = read_data(run.config)
    return dataset, leave_one_out(dataset)


def prepare(run: RunDir, force: bool = False) -> None:
    def compute(folder: str) -> dict:
        dataset, split = load_data(run)
        fingerprint = dataset.fingerprint()
        atomic_write_json(os.path.join(folder, "data.json"), {
            "name": dataset.name, "source": run.config.data.source, "fingerprint": fingerprint,
            "statistics": dataset.statistics(), "report": dataset.report.as_dict(),
            "split": {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)}})
        atomic_write_json(os.path.join(folder, "titles.json"), [text.name() for text in dataset.item_text])
        record = run.record()
        record["data_fingerprint"] = fingerprint
        run.write_record(record)
        return {"fingerprint": fingerprint}

    run.step("prepare", keys(run)["prepare"], compute, force)


def checked_data(run: RunDir) -> tuple[Dataset, Split]:
    """The dataset again (reading is cheap next to training), checked against what prepare saw."""
    dataset, split = load_data(run)
    with open(run.file("prepare", "data.json"), encoding="utf-8") as handle:
        expected = json.load(handle)["fingerprint"]
    if dataset.fingerprint() != expected:
        raise ConfigError(f"{run.config.data.source}: the data changed since `eager-llm prepare` "
                          f"(fingerprint {dataset.fingerprint()} != {expected}); rerun prepare with --force")
    return dataset, split


# ----------------------------------------------------------------------------------- embed and index


def embed(run: RunDir, progress: bool = True, force: bool = False) -> None:
    require_current(run, "prepare")
    config = run.config.embed

    def compute(folder: str) -> dict:
        dataset, split = checked_data(run)
        embeddings = build_item_embeddings(dataset, split, config.behavior, config.text, progress=progress)
        save_tensors(os.path.join(folder, "embeddings.safetensors"),
                     {"semantic": embeddings.semantic.contiguous(), "behavior": embeddings.behavior.contiguous()})
        result = embeddings.behavior_result
        atomic_write_json(os.path.join(folder, "behavior.json"), {
            "model": config.behavior.model, "valid_metrics": result.valid_metrics, "test_metrics": result.test_metrics,
            "epochs": result.epochs, "best_epoch": result.best_epoch, "seconds": result.seconds})
        return {"behavior_test_recall@10": result.test_metrics.get("recall@10")}

    run.step("embed", keys(run)["embed"], compute, force)


def load_embeddings(run: RunDir) -> dict[str, torch.Tensor]:
    return load_file(run.file("embed", "embeddings.safetensors"))


def index(run: RunDir, force: bool = False) -> None:
    require_current(run, "embed")

    def compute(folder: str) -> dict:
        tables = load_embeddings(run)
        config = run.config.index
        built = DualSourceIndex.build(tables["semantic"] if config.semantic else None,
                                      tables["behavior"] if config.behavior else None, config)
        built.save(os.path.join(folder, "index"))
        statistics = built.statistics()
        atomic_write_json(os.path.join(folder, "statistics.json"), statistics)
        counts = {position["position"]: torch.bincount(built.codes[:, column], minlength=position["codebook_size"]).tolist()
                  for column, position in enumerate(statistics["positions"])}
        atomic_write_json(os.path.join(folder, "code_counts.json"), counts)
        return {"num_tokens": built.num_tokens, "collisions_after": statistics["collisions"]["after"]["items"]}

    run.step("index", keys(run)["index"], compute, force)


def load_index(run: RunDir) -> DualSourceIndex:
    return DualSourceIndex.load(run.file("index", "index"))


# ----------------------------------------------------------------------------------- training


def titles(run: RunDir) -> list[str]:
    """Each item's name as the text tasks and `recommend` show it (row i - 1 is item i)."""
    with open(run.file("prepare", "titles.json"), encoding="utf-8") as handle:
        return json.load(handle)


def _backbone(run: RunDir, titles: list[str]):
    settings = run.config.model
    if settings.backbone == "tiny":
        texts = titles + fixed_texts()
        if run.config.data.preferences:
            texts += list(read_preferences(run.config.data.preferences).values())
        tokenizer = word_tokenizer(texts)
        model = tiny_llama(tokenizer, settings.hidden_size, settings.intermediate_size, settings.layers, settings.heads,
                           dropout=settings.dropout, seed=run.config.seed)
        return model, tokenizer
    model, tokenizer = smollm2() if settings.backbone == "smollm2" else pretrained(settings.backbone)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _validation(run: RunDir, split: Split, index_: DualSourceIndex, tokenizer, first: int):
    users = run.config.evaluate.validation_users
    if users == 0:
        return None
    generator = torch.Generator().manual_seed(run.config.seed)
    chosen = torch.randperm(len(split.valid), generator=generator)[:users].sort().values.tolist()
    return recall_validation([split.valid[i] for i in chosen], index_, tokenizer, first, k=10,
                             num_beams=run.config.evaluate.num_beams, batch_size=run.config.evaluate.batch_size)


def _write_training(folder: str, result, eager: EagerLLM) -> dict:
    tokens = sum(entry["tokens"] for entry in result.history)
    trainable = sum(p.numel() for p in eager.parameters() if p.requires_grad)
    summary = {"seconds": round(result.seconds, 2), "steps": result.steps,
               "tokens_per_s": round(tokens / max(result.seconds, 1e-9), 1),
               "epoch_metrics": result.epoch_metrics, "best_epoch": result.best_epoch,
               "trainable_parameters": trainable, "total_parameters": sum(p.numel() for p in eager.parameters())}
    atomic_write_json(os.path.join(folder, "history.json"), result.history)
    atomic_write_json(os.path.join(folder, "summary.json"), summary)
    # The saved recommender holds the weights; the resumable checkpoint is no longer needed.
    remove_checkpoint(os.path.join(folder, "checkpoint"))
    shutil.rmtree(os.path.join(folder, "best"), ignore_errors=True)
    return {"tokens_per_s": summary["tokens_per_s"], "final_loss": final_loss(result.history),
            "earlier_seconds": round(result.earlier_seconds, 2)}


def _stage1(run: RunDir, progress: bool) -> None:
    def compute(folder: str) -> dict:
        dataset, split = checked_data(run)
        titles = [text.name() for text in dataset.item_text]
        index_ = load_index(run)
        tables = load_embeddings(run)
        model, tokenizer = _backbone(run, titles)
        token_embeddings = None
        if run.config.model.token_init == "exogenous":
            token_embeddings = index_.code_embeddings(tables["semantic"], tables["behavior"])
        first = add_index_tokens(model, tokenizer, index_.token_strings(), token_embeddings, seed=run.config.seed)
        eager = EagerLLM(model, tables, run.config.eager, index_tokens=(first, first + index_.num_tokens))
        preferences = read_preferences(run.config.data.preferences) if run.config.data.preferences else None
        samples = training_samples(split, index_.item_strings(), titles, run.config.tasks, preferences)
        result = train_stage(eager, tokenizer, samples, run.config.stage1, folder,
                             evaluate=_validation(run, split, index_, tokenizer, first), progress=progress)
        Recommender(eager, tokenizer, index_, first).save_pretrained(os.path.join(folder, "recommender"))
        return {**_write_training(folder, result, eager), "samples": len(samples)}

    run.step("stage1", keys(run)["stage1"], compute)


def _stage2(run: RunDir, progress: bool) -> None:
    def compute(folder: str) -> dict:
        dataset, split = checked_data(run)
        recommender = Recommender.from_pretrained(run.file("stage1", "recommender"))
        eager = recommender.eager
        if hasattr(eager.lm, "peft_config"):
            # Stage 2 is a fresh adapter on the stage-1 model, not more training of stage 1's.
            eager.lm = eager.lm.merge_and_unload()
        titles = [text.name() for text in dataset.item_text]
        samples = training_samples(split, recommender.index.item_strings(), titles,
                                   dataclasses.replace(run.config.tasks, ratios={"seqrec": 1.0}))
        result = train_stage(eager, recommender.tokenizer, samples, run.config.stage2, folder,
                             evaluate=_validation(run, split, recommender.index, recommender.tokenizer,
                                                  recommender.first_token_id), progress=progress)
        Recommender(eager, recommender.tokenizer, recommender.index, recommender.first_token_id).save_pretrained(
            os.path.join(folder, "recommender"))
        return {**_write_training(folder, result, eager), "samples": len(samples)}

    run.step("stage2", keys(run)["stage2"], compute)


def train(run: RunDir, progress: bool = True, stages: tuple[str, ...] = STAGES, force: bool = False) -> None:
    require_current(run, "index")
    if force:
        for stage in stages:
            shutil.rmtree(run.file(stage), ignore_errors=True)
    if "stage1" in stages:
        _stage1(run, progress)
    if "stage2" in stages:
        require_current(run, "stage1")
        _stage2(run, progress)


def latest_recommender(run: RunDir) -> Recommender:
    """The last trained stage's recommender, checked to be current."""
    for stage in reversed(STAGES):
        if run.step_key(stage) is not None:
            require_current(run, stage)
            return Recommender.from_pretrained(run.file(stage, "recommender"))
    raise ConfigError(f"{run.path}: no trained model yet; run `eager-llm train --run {run.path}`")


# ----------------------------------------------------------------------------------- evaluate and bench


def evaluation_config(run: RunDir, recommender: Recommender) -> EvaluationConfig:
    settings = run.config.evaluate
    return EvaluationConfig(num_beams=settings.num_beams, ks=settings.ks, batch_size=settings.batch_size,
                            pad_token_id=pad_token_id(recommender.tokenizer),
                            item_tokens=recommender.item_tokens)


def evaluate_run(run: RunDir, progress: bool = True, force: bool = False) -> None:
    for stage in STAGES:
        require_current(run, stage)

    def compute(folder: str) -> dict:
        dataset, split = checked_data(run)
        with open(run.file("embed", "behavior.json"), encoding="utf-8") as handle:
            behavior = json.load(handle)
        ks = run.config.evaluate.ks
        rows = {"popularity": popularity_metrics(split, dataset.num_items, ks=ks),
                run.config.embed.behavior.model.upper().replace("SASREC", "SASRec"): behavior["test_metrics"]}
        targets, users, prompts = [sample.target - 1 for sample in split.test], [s.user for s in split.test], None
        for stage, label in zip(STAGES, ("EAGER-LLM stage 1", "EAGER-LLM stage 1 + 2")):
            recommender = Recommender.from_pretrained(run.file(stage, "recommender"))
            if prompts is None:  # stage 2 keeps stage 1's tokenizer and index
                prompts = evaluation_prompt_ids(split.test, recommender.index.item_strings(), recommender.tokenizer)
            result = evaluate(recommender.eager.lm, prompts, targets, recommender.trie,
                              evaluation_config(run, recommender), user_ids=users,
                              output_dir=os.path.join(folder, stage), progress=progress)
            rows[label] = {name: value for name, value in result.metrics.items()
                           if name.startswith(("recall@", "ndcg@")) or name == "validity"}
        atomic_write_json(os.path.join(folder, "metrics.json"), {"rows": rows, "users": len(split.test), "split": "test"},
                          sort_keys=False)
        return {"recall@10": rows["EAGER-LLM stage 1 + 2"].get("recall@10")}

    run.step("evaluate", keys(run)["evaluate"], compute, force)


def _dict_trie(codes: torch.Tensor) -> dict[tuple, list[int]]:
    """prefix -> allowed next tokens: what the usual prefix_allowed_tokens_fn looks up."""
    children: dict[tuple, set] = {}
    for row in codes.tolist():
        for depth in range(len(row)):
            children.setdefault(tuple(row[:depth]), set()).add(row[depth])
    return {prefix: sorted(tokens) for prefix, tokens in children.items()}


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench(run: RunDir, force: bool = False) -> None:
    """Users per second of our constrained search and of HF generate with a dict trie, on the
    run's final model and test prompts (same beams, same prompts, one warm-up each)."""
    require_current(run, "stage2")

    def compute(folder: str) -> dict:
        _, split = checked_data(run)
        recommender = latest_recommender(run)
        model = recommender.eager.lm.eval()
        prompts = evaluation_prompt_ids(split.test[: run.config.bench.users], recommender.index.item_strings(),
                                        recommender.tokenizer)
        beams = run.config.evaluate.num_beams
        pad = evaluation_config(run, recommender).pad_token_id
        eos = recommender.tokenizer.eos_token_id
        depth = recommender.trie.depth
        allowed = _dict_trie(recommender.trie.codes)  # built once, outside the timed calls
        rows = []
        for batch_size in run.config.bench.batch_sizes:
            batches = [left_pad(prompts[i : i + batch_size], pad) for i in range(0, len(prompts), batch_size)]

            def ours():
                for input_ids, mask in batches:
                    constrained_beam_search(model, input_ids, mask, recommender.trie, beams,
                                            item_tokens=recommender.item_tokens)

            def hf():
                for input_ids, mask in batches:
                    start = input_ids.shape[1]
                    model.generate(input_ids=input_ids, attention_mask=mask, num_beams=beams, do_sample=False,
                                   num_return_sequences=beams, max_new_tokens=depth, pad_token_id=pad,
                                   eos_token_id=eos, prefix_allowed_tokens_fn=lambda batch_id, sequence:
                                   allowed.get(tuple(sequence[start:].tolist()), [eos]))

            with torch.inference_mode():
                for name, fn in (("eager-llm constrained_beam_search (items)", ours),
                                 ("HF generate + prefix_allowed_tokens_fn (dict trie)", hf)):
                    fn()  # warm-up
                    seconds = _timed(fn)
                    rows.append({"method": name, "batch_size": batch_size, "users_per_s": len(prompts) / seconds,
                                 "seconds": seconds})
        atomic_write_json(os.path.join(folder, "decode.json"), {
            "rows": rows, "num_beams": beams, "num_items": recommender.index.num_items, "users": len(prompts),
            "model": type(model).__name__})
        return {}

    run.step("bench", keys(run)["bench"], compute, force)


COMMANDS = ("prepare", "embed", "index", "train", "evaluate", "bench")


def run_steps(run: RunDir, names=COMMANDS, progress: bool = True, force: bool = False) -> None:
    """Runs the named steps (``COMMANDS`` order is the pipeline's), each reused when current."""
    for name in names:
        if name == "prepare":
            prepare(run, force=force)
        elif name == "embed":
            embed(run, progress=progress, force=force)
        elif name == "index":
            index(run, force=force)
        elif name == "train":
            train(run, progress=progress, force=force)
        elif name == "evaluate":
            evaluate_run(run, progress=progress, force=force)
        elif name == "bench":
            bench(run, force=force)
        else:
            raise ValueError(f"unknown step {name!r} (known: {', '.join(COMMANDS)})")
