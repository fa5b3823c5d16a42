"""The training loop of one stage, readable top to bottom (built on accelerate).

Data order, shared GCT negatives and micro-batch split are pure functions of (seed, epoch,
step), so a run resumed from a checkpoint replays exactly, and the same global batch over 1 or
N processes gives the same losses (equal micro-batches average exactly: see
``eager_llm.model.eager.per_sample_lm_loss``).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from ..model import EagerLLM
from ..tasks import TaskSample, collate_tokenized, pad_token_id, tokenize
from .checkpoint import load_checkpoint, load_weights, save_checkpoint, save_weights
from .config import LoraSettings, StageConfig


@dataclass
class StageResult:
    history: list[dict] = field(default_factory=list)  # one entry per optimizer step
    epoch_metrics: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    steps: int = 0
    seconds: float = 0.0  # training time, including the interrupted attempts it resumed from
    earlier_seconds: float = 0.0  # the part of ``seconds`` those attempts took, up to their last checkpoint


def apply_lora(eager: EagerLLM, settings: LoraSettings) -> None:
    """Wraps the LM in a PEFT LoRA adapter and freezes everything but the adapter, the
    embeddings and the LM head (they hold the index tokens)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules)
    try:
        eager.lm = get_peft_model(eager.lm, config)
    except ValueError as error:
        raise ValueError(f"LoRA target_modules={settings.target_modules!r} do not fit this model: {error}") from None
    for layer in (eager.lm.get_input_embeddings(), eager.lm.get_output_embeddings()):
        layer.weight.requires_grad_(True)


def _precision(requested: str) -> str:
    if requested != "auto":
        return requested
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def _accelerator(config: StageConfig) -> Accelerator:
    precision = _precision(config.mixed_precision)
    # accelerate fixes one precision per process and refuses another; but a process may train
    # several stages (the pipeline trains stage 1 then stage 2), each with its own precision.
    # The reset keeps the process group.
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    # cpu=True without a GPU is what makes accelerate run torchrun'd CPU processes as one
    # gloo group (otherwise each would train alone).
    return Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available(),
                       gradient_accumulation_steps=config.grad_accumulation)


# A run stops after this many updates in a row were skipped for non-finite gradients.
MAX_SKIPPED_IN_A_ROW = 10


def _clip_and_check_gradients(accelerator: Accelerator, parameters: list, max_grad_norm: float) -> bool:
    """Clips the gradients to ``max_grad_norm`` (none when 0) and says whether their norm is
    finite. One NaN or infinite gradient would turn every weight into NaN at the update, and
    without loss scaling (fp32, bf16) nothing else catches it. The norm is of the synchronised
    gradients, so every process decides alike."""
    norm = accelerator.clip_grad_norm_(parameters, max_grad_norm if max_grad_norm > 0 else math.inf)
    return norm is None or bool(torch.isfinite(norm))


def _note_skipped_update(step: int, in_a_row: int, config: StageConfig) -> None:
    if in_a_row >= MAX_SKIPPED_IN_A_ROW:
        raise FloatingPointError(
            f"training diverged: the last {in_a_row} updates (to step {step}) had a non-finite loss or gradient "
            f"with mixed_precision={config.mixed_precision!r} and lr={config.lr}; try mixed_precision='no' or a "
            "lower lr")
    warnings.warn(f"step {step}: non-finite loss or gradient, update skipped", RuntimeWarning, stacklevel=2)


# Samples are sorted by length within windows of this many global batches.
LENGTH_GROUP_BATCHES = 50


def _epoch_order(count: int, seed: int, epoch: int, lengths: torch.Tensor | None = None,
                 global_batch: int = 1) -> torch.Tensor:
    """The sample order of one epoch: a seeded shuffle, grouped by length when ``lengths`` are given."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(count, generator=generator)
    return order if lengths is None else _grouped_by_length(order, lengths, global_batch, generator)


def _grouped_by_length(order: torch.Tensor, lengths: torch.Tensor, global_batch: int,
                       generator: torch.Generator) -> torch.Tensor:
    """Sorts each window of ``LENGTH_GROUP_BATCHES`` global batches by length, then shuffles the
    full batches, so a batch holds samples of similar length (little padding: on the Beauty
    task mix 1.03 padded tokens per real token, against 2.9 for a plain shuffle) while the
    sequence of batches stays random. A short last batch stays last."""
    window = global_batch * LENGTH_GROUP_BATCHES
    order = torch.cat([chunk[lengths[chunk].argsort(descending=True, stable=True)] for chunk in order.split(window)])
    full = len(order) // global_batch
    batches = order[:full * global_batch].view(full, global_batch)[torch.randperm(full, generator=generator)]
    return torch.cat([batches.reshape(-1), order[full * global_batch:]])


def _micro_batches(chunk: torch.Tensor, processes: int, accumulation: int, rank: int) -> list[torch.Tensor]:
    """This process's micro-batches of one global batch, in accumulation order. A short last
    chunk is split as evenly as possible; an empty share is marked by an empty tensor."""
    shares = torch.tensor_split(chunk, processes * accumulation)
    return [shares[step * processes + rank] for step in range(accumulation)]


def _negatives_generator(seed: int, global_step: int) -> torch.Generator:
    """The same GCT negatives on every process and in every replay of this step."""
    return torch.Generator().manual_seed(seed * 7_919 + global_step)


def train_stage(eager: EagerLLM, tokenizer, samples: list[TaskSample], config: StageConfig, output_dir: str,
                evaluate: Callable[[EagerLLM], float] | None = None, progress: bool = True) -> StageResult:
    """Trains ``eager`` on ``samples`` for ``config.epochs`` and returns the loss history.

    Writes ``output_dir/checkpoint`` every ``config.checkpoint_every`` steps and at each epoch's
    end, and resumes from it when present (the result's ``seconds`` then include the earlier
    attempts' time up to their last checkpoint). With ``evaluate`` (a function of the model returning
    a validation metric, higher is better), runs it after every epoch, keeps the best epoch's
    trainable weights in ``output_dir/best`` and restores them at the end.
    """
    if not samples:
        raise ValueError("no training samples")
    if config.lora is not None and not hasattr(eager.lm, "peft_config"):
        apply_lora(eager, config.lora)
    if not config.gct:
        for parameter in eager.projectors.parameters():
            parameter.requires_grad_(False)
    accelerator = _accelerator(config)
    parameters = [p for p in eager.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)
    global_batch = config.batch_size * accelerator.num_processes * config.grad_accumulation
    steps_per_epoch = math.ceil(len(samples) / global_batch)
    total_steps = steps_per_epoch * config.epochs
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(config.warmup_ratio * total_steps), total_steps)
    model, optimizer = accelerator.prepare(eager, optimizer)

    checkpoint = os.path.join(output_dir, "checkpoint")
    best_weights = os.path.join(output_dir, "best", "trainable.safetensors")
    state = load_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler) or {
        "epoch": 0, "step_in_epoch": 0, "global_step": 0, "history": [], "epoch_metrics": [], "best_epoch": None}
    # No checkpoint, or one written before checkpoints kept the training time: count from 0.
    earlier_seconds = state.get("seconds", 0.0)
    result = StageResult(state["history"], state["epoch_metrics"], state["best_epoch"], state["global_step"],
                         earlier_seconds=earlier_seconds)
    tokenized, pad = tokenize(samples, tokenizer), pad_token_id(tokenizer)  # once, not every epoch
    lengths = None
    if config.group_by_length:
        lengths = torch.tensor([min(len(sample), config.max_length) for sample in tokenized])
    started, run_tokens = time.time(), 0.0
    bar = tqdm(total=total_steps, initial=state["global_step"], desc="training", unit="step",
               disable=not progress or not accelerator.is_main_process)

    def save(epoch: int, step_in_epoch: int) -> None:
        progress_state = {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": result.steps,
                          "history": result.history, "epoch_metrics": result.epoch_metrics,
                          "best_epoch": result.best_epoch, "seconds": earlier_seconds + time.time() - started}
        if accelerator.is_main_process:
            save_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer, scheduler, progress_state)
        accelerator.wait_for_everyone()

    skipped_in_a_row = 0
    for epoch in range(state["epoch"], config.epochs):
        order = _epoch_order(len(samples), config.seed, epoch, lengths, global_batch)
        first_step = state["step_in_epoch"] if epoch == state["epoch"] else 0
        model.train()
        for step in range(first_step, steps_per_epoch):
            chunk = order[step * global_batch : (step + 1) * global_batch]
            shares = _micro_batches(chunk, accelerator.num_processes, config.grad_accumulation,
                                    accelerator.process_index)
            sums, tokens, skipped = {}, torch.zeros(()), False
            for share in shares:
                # An empty share still runs one (zero-weighted) sample, so every process takes
                # part in every collective.
                weight = 1.0 if len(share) else 0.0
                indices = share.tolist() if len(share) else chunk[:1].tolist()
                batch = collate_tokenized([tokenized[i] for i in indices], pad, config.max_length).to(accelerator.device)
                with accelerator.accumulate(model):
                    terms = model(batch, generator=_negatives_generator(config.seed, result.steps), gct=config.gct)
                    accelerator.backward(terms["loss"] * weight)
                    if accelerator.sync_gradients:
                        skipped = not _clip_and_check_gradients(accelerator, parameters, config.max_grad_norm)
                    if not skipped:
                        optimizer.step()
                    optimizer.zero_grad()
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + value.detach().float() * weight / len(shares)
                tokens = tokens + batch.attention_mask.sum().cpu() * weight
            scheduler.step()
            result.steps += 1
            logged = {name: accelerator.reduce(value.reshape(1).to(accelerator.device), "mean").item()
                      for name, value in sorted(sums.items())}
            seen_tokens = accelerator.reduce(tokens.reshape(1).to(accelerator.device), "sum").item()
            run_tokens += seen_tokens
            elapsed = max(time.time() - started, 1e-9)
            entry = {"step": result.steps, "epoch": epoch, **logged, "lr": scheduler.get_last_lr()[0],
                     "tokens": seen_tokens}
            if skipped:
                entry["skipped_update"] = True
                skipped_in_a_row += 1
                _note_skipped_update(result.steps, skipped_in_a_row, config)
            else:
                skipped_in_a_row = 0
            result.history.append(entry)
            bar.update(1)
            bar.set_postfix(loss=f"{logged['loss']:.4f}", tokens_per_s=f"{run_tokens / elapsed:.0f}")
            if result.steps % config.checkpoint_every == 0:
                save(epoch, step + 1)
        if evaluate is not None:
            metric = evaluate(accelerator.unwrap_model(model))
            result.epoch_metrics.append(metric)
            if result.best_epoch is None or metric > result.epoch_metrics[result.best_epoch]:
                result.best_epoch = len(result.epoch_metrics) - 1
                if accelerator.is_main_process:
                    os.makedirs(os.path.join(output_dir, "best"), exist_ok=True)
                    save_weights(best_weights, accelerator.unwrap_model(model))
        save(epoch + 1, 0)
    bar.close()
    if evaluate is not None and result.best_epoch is not None:
        accelerator.wait_for_everyone()
        load_weights(best_weights, accelerator.unwrap_model(model))
    result.seconds = earlier_seconds + time.time() - started
    return result
