"""Reproducible quality benchmark on real Amazon Beauty and Sports (METHOD.md section 1).

    python benchmarks/quality/run_quality.py --dataset beauty [--seeds 0 1 2] [--variants ...]
    python benchmarks/quality/run_quality.py --dataset sports
    python benchmarks/quality/run_quality.py --dataset beauty --smoke   # 100 users, 1 epoch (CI)
    python benchmarks/quality/run_quality.py --dataset beauty --collect # tabulate finished runs only
    python benchmarks/quality/run_quality.py --dataset beauty --seeds 2 \
        --merge benchmarks/quality/results/beauty.json                  # run seed 2, add earlier seeds

Each seed runs the pinned config (``beauty.yaml`` / ``sports.yaml`` beside this file) through
the pipeline into ``OUT/DATASET/seedS/full``; every ablation copies that run folder and changes
its settings, so only the steps whose inputs change are recomputed (the step keys decide).
Writes ``OUT/DATASET/results.json`` and ``results.md``: Recall@5/10 and NDCG@5/10, mean and
standard deviation over the seeds of each row, the published rows beside them, and per run the
resolved config, seed, data fingerprint, package versions and wall time (also in each run
folder). ``--collect`` runs nothing and tabulates every finished run that is current for the
pinned configs. ``--merge`` adds the runs of earlier results.json files that are current (same
resolved config and data fingerprint), so the table can grow run by run over sessions and
machines whose run folders are gone: the published results file is the record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from common import markdown_table  # noqa: E402
from eager_llm.io import atomic_write_json, atomic_write_text  # noqa: E402
from eager_llm.pipeline import ConfigError, RunDir, resolve_values, steps  # noqa: E402
from eager_llm.pipeline.config import PRESETS, RunConfig, merge, read_config_file  # noqa: E402

DATA_FOLDERS = {"beauty": "amazon-beauty-2014-5core", "sports": "amazon-sports-2014-5core"}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
# The small model's ablations, and one variant of ours: settings laid over the full run's config.
ABLATIONS = {
    "semantic_only": {"index": {"behavior": None}},
    "behavior_only": {"index": {"semantic": None}},
    "no_gct": {"stage1": {"gct": False}},
    # The released code's tree: branch 256, a cluster code and a slot code per source.
    "released_tree": {"index": {"semantic": {"quantizer": "balanced_tree", "codebook_size": 256},
                                "behavior": {"quantizer": "balanced_tree", "codebook_size": 256}}},
    "rq_kmeans": {"index": {"semantic": {"quantizer": "rq_kmeans"}, "behavior": {"quantizer": "rq_kmeans"}}},
    "response_only": {"tasks": {"history_targets": False}},
    "behavior_first": {"index": {"order": ["behavior", "semantic"]}},
    # The SASRec baseline trains with dropout, the small Llama has none (BENCHMARKS.md).
    "dropout": {"model": {"dropout": 0.1}},
}
# Do the two index changes that scored highest on Beauty add up?
ABLATIONS["behavior_first_rq_kmeans"] = merge(ABLATIONS["behavior_first"], ABLATIONS["rq_kmeans"])
VARIANTS = ("full", *ABLATIONS, "smollm2")
LABELS = {"full": "EAGER-LLM small (ours: sub-clustered trees, 2 + 2 codes, history targets)",
          "no_stage2": "ablation: no stage 2",
          "semantic_only": "ablation: semantic-only index", "behavior_only": "ablation: behavior-only index",
          "no_gct": "ablation: no GCT", "released_tree": "ablation: released-code tree index (branch 256: cluster + slot)",
          "rq_kmeans": "ablation: RQ-KMeans index", "response_only": "ablation: response-only LM loss (the paper's)",
          "behavior_first": "variant: behavior codes first in the index",
          "behavior_first_rq_kmeans": "variant: behavior codes first and an RQ-KMeans index",
          "dropout": "variant: dropout 0.1 in the small LM (residual branches and attention)",
          "smollm2": "EAGER-LLM SmolLM2-135M + LoRA (subsample)"}
# METHOD.md section 1 (R@5, R@10, N@5, N@10), the paper's numbers at LLaMA-7B scale.
PUBLISHED = {
    "beauty": {"EAGER-LLM": (0.0548, 0.0830, 0.0369, 0.0459), "TIGER": (0.0454, 0.0648, 0.0321, 0.0384),
               "SASRec": (0.0387, 0.0605, 0.0249, 0.0318)},
    "sports": {"EAGER-LLM": (0.0373, 0.0569, 0.0251, 0.0315), "TIGER": (0.0264, 0.0400, 0.0181, 0.0225),
               "SASRec": (0.0233, 0.0350, 0.0154, 0.0192)},
}
SMOKE = {"data": {"max_users": 100}, "embed": {"behavior": {"max_epochs": 2}, "text": {"model": "hashed-bow"}},
         "tasks": {"ratios": {"item2index": 0.2, "index2item": 0.2, "history_index_to_title": 0.0,
                              "history_title_to_index": 0.0}},
         "stage1": {"epochs": 1}, "stage2": {"epochs": 1}, "evaluate": {"validation_users": 0}}


FINAL = "EAGER-LLM stage 1 + 2"


def hardware() -> str:
    return (f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"threads{', CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ', no GPU'}")


def _run_result(run: RunDir) -> dict:
    """The test metrics rows, the run record (with its resolved config), the compute time and
    the hardware of a run whose evaluation is current. A run's compute time is the sum of its
    steps' times as each was computed (the record keeps them), so it is what the run costs from
    scratch, also when this call reused steps."""
    with open(run.file("evaluate", "metrics.json"), encoding="utf-8") as handle:
        rows = json.load(handle)["rows"]
    record = {**run.record(), "config": run.config.to_dict()}
    seconds = sum(step.get("seconds", 0.0) for step in record["steps"].values())
    return {"rows": rows, "record": record, "seconds": round(seconds, 1), "hardware": hardware()}


def run_pipeline(folder: str, values: dict, log) -> dict:
    """Runs every step (reusing what the folder already holds for the same inputs)."""
    run = RunDir.create(folder, resolve_values(values), "benchmarks/quality/run_quality.py", None, log=log)
    steps.run_steps(run, ("prepare", "embed", "index", "train", "evaluate"), progress=False)
    return _run_result(run)


def finished_run(folder: str, values: dict) -> dict | None:
    """The result of ``folder`` when its evaluation is current for ``values``; None when it has
    not been evaluated or was computed from other settings (an earlier config, or a copy of the
    full run that the ablation has not rerun yet). The data folder may have been named by
    another path, as long as it is the same dataset folder: the step keys after prepare hold
    the data's fingerprint."""
    prepared = os.path.join(folder, "prepare", "data.json")
    if not os.path.isfile(prepared):
        return None
    with open(prepared, encoding="utf-8") as handle:
        source = json.load(handle)["source"]
    if os.path.basename(os.path.normpath(source)) != os.path.basename(os.path.normpath(values["data"]["source"])):
        return None
    run = RunDir(folder, resolve_values(merge(values, {"data": {"source": source}})))
    try:
        steps.require_current(run, "evaluate")
    except ConfigError:
        return None
    return _run_result(run)


def variant_values(dataset: str, variant: str, seed: int, data_root: str, smoke: bool) -> dict:
    if variant == "smollm2":
        values = merge(PRESETS["smollm2"], read_config_file(os.path.join(HERE, "smollm2-beauty.yaml")))
    else:
        values = merge(read_config_file(os.path.join(HERE, f"{dataset}.yaml")), ABLATIONS.get(variant, {}))
    values = merge(values, {"seed": seed, "data": {"source": os.path.join(data_root, DATA_FOLDERS[dataset])}})
    return merge(values, SMOKE) if smoke else values


def run_seed(args, seed: int, log) -> dict:
    """{variant: result} for one seed (see ``_run_result``), running what is not yet current."""
    base = os.path.join(args.out, args.dataset, f"seed{seed}")
    results = {}
    for variant in args.variants:
        folder = os.path.join(base, variant)
        if variant in ABLATIONS and not os.path.exists(folder) and os.path.exists(os.path.join(base, "full")):
            shutil.copytree(os.path.join(base, "full"), folder)  # reuse data, embeddings, index where unchanged
        results[variant] = run_pipeline(folder, variant_values(args.dataset, variant, seed, args.data_root, args.smoke), log)
        log(f"seed {seed} {variant}: Recall@10 {results[variant]['rows'][FINAL]['recall@10']:.4f}")
    return results


def collect_seed(args, seed: int) -> dict:
    """{variant: result} of the runs of one seed that are finished and current; runs nothing."""
    base = os.path.join(args.out, args.dataset, f"seed{seed}")
    results = {}
    for variant in args.variants:
        values = variant_values(args.dataset, variant, seed, args.data_root, args.smoke)
        result = finished_run(os.path.join(base, variant), values)
        if result is not None:
            results[variant] = result
    return results


_FINGERPRINTS: dict[tuple, str] = {}


def data_fingerprint(config: RunConfig) -> str:
    """The fingerprint of the data ``config`` reads, computed once per dataset (and per seed only
    where the seed draws a subsample)."""
    key = (config.data.source, config.data.max_users, config.seed if config.data.max_users is not None else None)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = steps.read_data(config).fingerprint()
    return _FINGERPRINTS[key]


def _differences(stored: dict, expected: dict, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ between two nested config dicts."""
    out = []
    for key in sorted(set(stored) | set(expected)):
        a, b = stored.get(key), expected.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def stale_reason(expected: RunConfig, record: dict) -> str | None:
    """Why a stored run's record is not a run of ``expected`` (None when it is one): another
    resolved config, but for where the data folder lay, or other data."""
    source = expected.data.source
    stored = resolve_values(merge(record["config"], {"data": {"source": source}}))
    differing = _differences(stored.to_dict(), expected.to_dict())
    if differing:
        return f"its config differs from the pinned one in {', '.join(differing)}"
    fingerprint = data_fingerprint(expected)
    if record.get("data_fingerprint") != fingerprint:
        return f"its data fingerprint {record.get('data_fingerprint')} is not the data's ({fingerprint})"
    return None


def merged_runs(args, path: str) -> dict[int, dict]:
    """{seed: {variant: result}} of the runs of these seeds and variants that an earlier
    results.json holds and that are current for the pinned configs; says on stderr which it
    skips and why."""
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise SystemExit(f"--merge {path}: cannot read it ({error})") from None
    if stored.get("dataset") != args.dataset:
        raise SystemExit(f"--merge {path}: results of dataset {stored.get('dataset')!r}, not {args.dataset!r}")
    runs = stored.get("runs")
    if not isinstance(runs, dict) or any("rows" not in result for seed_runs in runs.values()
                                         for result in seed_runs.values()):
        raise SystemExit(f"--merge {path}: its runs lack their metrics rows (written by an older run_quality.py)")
    out: dict[int, dict] = {}
    for seed_text, seed_runs in runs.items():
        seed = int(seed_text)
        for variant, result in seed_runs.items():
            if seed not in args.seeds or variant not in args.variants:
                continue
            expected = resolve_values(variant_values(args.dataset, variant, seed, args.data_root, args.smoke))
            reason = stale_reason(expected, result["record"])
            if reason is None:
                out.setdefault(seed, {})[variant] = result
            else:
                log(f"--merge {path}: seed {seed} {variant} left out: {reason}")
    return out


def summary_rows(per_seed: dict[int, dict]) -> list[tuple[str, list[int], list[dict]]]:
    """(label, seeds, one metrics dict per seed) for every row of the table; each row averages
    the seeds that have its run."""
    def row(label: str, variant: str, name: str) -> tuple[str, list[int], list[dict]]:
        seeds = [seed for seed, runs in per_seed.items() if variant in runs]
        return label, seeds, [per_seed[seed][variant]["rows"][name] for seed in seeds]

    def measured(variant: str) -> bool:
        return any(variant in runs for runs in per_seed.values())

    rows = []
    if measured("full"):
        rows += [row(f"{name} (same benchmark)", "full", name) for name in ("popularity", "SASRec")]
        rows += [row(LABELS["full"], "full", FINAL), row(LABELS["no_stage2"], "full", "EAGER-LLM stage 1")]
    rows += [row(LABELS[variant], variant, FINAL) for variant in VARIANTS[1:] if measured(variant)]
    if measured("smollm2"):  # its subsample has its own baselines
        rows += [row(f"{name} on the SmolLM2 subsample", "smollm2", name) for name in ("popularity", "SASRec")]
    return rows


def cell(values: list[float]) -> str:
    """Mean ± standard deviation over seeds; a single seed's value alone (it has no spread)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def write_results(args, per_seed: dict[int, dict]) -> str:
    folder = os.path.join(args.out, args.dataset)
    summary = summary_rows(per_seed)
    rows = [[label, " ".join(map(str, seeds)), *(cell([m[metric] for m in metrics]) for metric in METRICS)]
            for label, seeds, metrics in summary]
    rows += [[f"{name} (published{', LLaMA-7B scale' if name == 'EAGER-LLM' else ''})", "",
              *(f"{v:.4f}" for v in values)] for name, values in PUBLISHED[args.dataset].items()]
    hours = {variant: [runs[variant]["seconds"] / 3600 for runs in per_seed.values() if variant in runs]
             for variant in args.variants}
    budget = ", ".join(f"{variant} {statistics.mean(h):.2f} h" for variant, h in hours.items() if h)
    measured_on = sorted({result["hardware"] for runs in per_seed.values() for result in runs.values()})
    seeds = sorted(per_seed)
    merges = "".join(f" --merge {path}" for path in args.merge)
    text = "\n".join([
        f"`python benchmarks/quality/run_quality.py --dataset {args.dataset} --seeds {' '.join(map(str, seeds))} "
        f"--variants {' '.join(args.variants)}{' --smoke' if args.smoke else ''}{' --collect' if args.collect else ''}"
        f"{merges}` — test split, full ranking; each row is the mean ± standard deviation over the seeds it lists "
        "(one seed's value alone has no spread).",
        f"Runs measured on: {'; '.join(measured_on)}. Compute time per run (sum of its steps, mean over seeds, "
        f"as measured where each ran): {budget}.",
        "", markdown_table(["", "seeds", "Recall@5", "Recall@10", "NDCG@5", "NDCG@10"], rows), ""])
    atomic_write_json(os.path.join(folder, "results.json"), {
        "dataset": args.dataset, "seeds": seeds, "smoke": args.smoke, "hardware": measured_on,
        "rows": {label: {"seeds": row_seeds, "metrics": metrics} for label, row_seeds, metrics in summary},
        "published": {name: dict(zip(METRICS, values)) for name, values in PUBLISHED[args.dataset].items()},
        "runs": {str(seed): dict(sorted(runs.items())) for seed, runs in sorted(per_seed.items())}})
    atomic_write_text(os.path.join(folder, "results.md"), text)
    return text


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATA_FOLDERS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                        help="default: full and every ablation (and smollm2 on beauty)")
    parser.add_argument("--data-root", default=os.path.join(HERE, "..", "..", "..", "shared", "data"))
    parser.add_argument("--out", default="runs/quality")
    parser.add_argument("--smoke", action="store_true", help="100 users, one epoch: checks the pipeline end to end")
    parser.add_argument("--collect", action="store_true",
                        help="run nothing: tabulate the finished runs of these seeds and variants that are current "
                             "for the pinned configs (a results table that grows run by run)")
    parser.add_argument("--merge", nargs="+", default=[], metavar="RESULTS_JSON",
                        help="add the current runs that earlier results.json files hold (a run found in --out, "
                             "or run now, takes precedence)")
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = [v for v in VARIANTS if v != "smollm2" or args.dataset == "beauty"]
    if "full" in args.variants:  # ablations copy the full run's folder
        args.variants = ["full"] + [v for v in args.variants if v != "full"]
    folder = os.path.join(args.data_root, DATA_FOLDERS[args.dataset])
    if not os.path.isdir(folder) and (args.merge or not args.collect):  # fingerprints need the data
        raise SystemExit(f"{folder}: dataset folder not found (pass --data-root)")
    per_seed: dict[int, dict] = {}
    for path in args.merge:
        for seed, runs in merged_runs(args, path).items():
            per_seed.setdefault(seed, {}).update(runs)
    for seed in args.seeds:
        runs = collect_seed(args, seed) if args.collect else run_seed(args, seed, log)
        per_seed.setdefault(seed, {}).update(runs)
    per_seed = {seed: runs for seed, runs in per_seed.items() if runs}
    if not per_seed:
        raise SystemExit(f"{os.path.join(args.out, args.dataset)}: no finished run is current for these seeds "
                         "and variants")
    print(write_results(args, per_seed))


if __name__ == "__main__":
    main()
