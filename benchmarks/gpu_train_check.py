"""Trains stage 1 of the demo under several settings and reports where the loss stops being finite.

    python benchmarks/gpu_train_check.py OUTDIR                     # on a GPU machine
    python benchmarks/gpu_train_check.py OUTDIR --set data.max_users=60 --variants fp32_kernels

On a GPU the trainer's "auto" precision is bf16 autocast, which the CPU tests never exercise.
Each variant changes one thing against that default, so the first non-finite step of each
tells where a divergence comes from: the precision, our CUDA kernels (against the plain-torch
reference ops), the attention kernel SDPA picks (against HF's eager attention), or the GCT loss
as a whole. Every variant also watches the model: the first module whose forward output, and
the first parameter whose gradient, is not finite, with the count of training forward calls
(the step, unless the config accumulates gradients), so a divergence names where it starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import eager_ext
from eager_ext import reference
import torch
from eager_llm import cli
from eager_llm.generate.model_io import unwrap_peft
from eager_llm.model.eager import EagerLLM

# name -> (extra --set overrides, use the plain-torch reference ops, attention implementation)
VARIANTS = {
    "bf16_kernels": ([], False, None),
    "fp32_kernels": (["stage1.mixed_precision=no"], False, None),
    "bf16_reference_ops": ([], True, None),
    "bf16_eager_attention": ([], False, "eager"),
    "bf16_no_gct": (["stage1.gct=false"], False, None),
}
WATCH_FILE = "first_non_finite.json"


class NonFiniteWatch:
    """Hooks on every module and parameter of a model that record, once each, the first module
    whose forward output and the first parameter whose gradient holds a NaN or an infinity, with
    the count of forward calls in training mode, from 1. The hooks synchronise
    the GPU at every module: a diagnostic, not something to leave on in training."""

    def __init__(self, path: str):
        self.path = path
        self.step = 0
        self.found: dict[str, dict] = {}

    def attach(self, model: torch.nn.Module) -> None:
        for name, module in model.named_modules():
            module.register_forward_hook(self._forward_hook(name or "model"))
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                parameter.register_hook(self._gradient_hook(name))

    def _record(self, kind: str, where: str) -> None:
        if kind not in self.found:
            self.found[kind] = {"step": self.step, "where": where}
            with open(self.path, "w") as file:
                json.dump(self.found, file, indent=1)

    def _forward_hook(self, name: str):
        def hook(module, inputs, output):
            if "forward" not in self.found and any(not bool(torch.isfinite(tensor).all()) for tensor in _tensors(output)):
                self._record("forward", name)
        return hook

    def _gradient_hook(self, name: str):
        def hook(gradient):
            if "gradient" not in self.found and not bool(torch.isfinite(gradient).all()):
                self._record("gradient", name)
        return hook


def _tensors(output) -> list[torch.Tensor]:
    """The floating-point tensors of a module's output (a tensor, a tuple or a ModelOutput)."""
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else [output]
    found = []
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            found.append(value)
        elif isinstance(value, (tuple, list)):
            found.extend(_tensors(value))
    return found


def watch_training(path: str, attention: str | None) -> None:
    """Makes every EagerLLM count its training steps and attach a NonFiniteWatch on its first
    call (the model is built inside `eager-llm train`, out of this script's reach), switching
    the LM's attention implementation first when `attention` is given."""
    watch = NonFiniteWatch(path)
    forward = EagerLLM.forward

    def watched_forward(self, *args, **kwargs):
        if not getattr(self, "_watched", False):
            if attention is not None:
                unwrap_peft(self.lm).set_attn_implementation(attention)
            watch.attach(self)
            self._watched = True
        if self.training:
            watch.step += 1
        return forward(self, *args, **kwargs)

    EagerLLM.forward = watched_forward


def train_stage1(run: str, overrides: list[str], reference_ops: bool, attention: str | None) -> None:
    """prepare -> embed -> index -> train in `run`, in this process, watching stage 1."""
    sets = [arg for value in ["stage1.epochs=1", *overrides] for arg in ("--set", value)]
    if reference_ops:
        eager_ext.summary_gather, eager_ext.gathered_infonce = reference.summary_gather, reference.gathered_infonce
    for command in (["prepare", "--preset", "demo"], ["embed"], ["index"]):
        if cli.main([*command, "--run", run, "--quiet", *sets]) != 0:
            raise SystemExit(f"eager-llm {command[0]} failed in {run}")
    watch_training(os.path.join(run, WATCH_FILE), attention)
    if cli.main(["train", "--run", run, "--quiet", *sets]) != 0:
        raise SystemExit(f"eager-llm train failed in {run}")


def stage1_history(name: str, out: str, extra: list[str]) -> tuple[list[dict], dict] | None:
    """Trains one variant in a child process (accelerate's precision is fixed once per process);
    its stage-1 history and what its NonFiniteWatch found, or None when it failed."""
    run = os.path.join(out, name)
    extra_sets = [arg for value in extra for arg in ("--set", value)]
    child = subprocess.run([sys.executable, os.path.abspath(__file__), out, "--only", name, *extra_sets])
    if child.returncode != 0:
        return None
    with open(os.path.join(run, "stage1", "history.json")) as file:
        history = json.load(file)
    watch_path = os.path.join(run, WATCH_FILE)
    if not os.path.exists(watch_path):
        return history, {}
    with open(watch_path) as file:
        return history, json.load(file)


def where_non_finite(found: dict) -> str:
    parts = [f"{kind} call {found[kind]['step']} `{found[kind]['where']}`" for kind in ("forward", "gradient")
             if kind in found]
    return "; ".join(parts) or "none"


def first_non_finite(history: list[dict]) -> str:
    for entry in history:
        bad = [name for name, value in entry.items() if isinstance(value, float) and not math.isfinite(value)]
        if bad:
            return f"step {entry['step']}: {', '.join(sorted(bad))}"
    return "none"


def first_step_terms(history: list[dict]) -> str:
    first = history[0]
    return " / ".join(f"{first[name]:.4f}" for name in ("lm", "gct_behavior", "gct_semantic") if name in first)


def loss_at(history: list[dict], step: int) -> str:
    return f"{history[step - 1]['loss']:.3f}" if len(history) >= step else "-"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], dest="extra", help="extra config override")
    parser.add_argument("--only", choices=list(VARIANTS), help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.only:
        overrides, reference_ops, attention = VARIANTS[args.only]
        train_stage1(os.path.join(args.out, args.only), overrides + args.extra, reference_ops, attention)
        return 0
    diverged = []
    lines = ["| variant | steps | step 1 lm / gct_behavior / gct_semantic | first non-finite loss | skipped updates | "
             "first NaN at | loss @10 | @50 | @100 | last | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in args.variants:
        started = time.time()
        result = stage1_history(name, args.out, args.extra)
        if result is None:
            lines.append(f"| {name} | failed: see the output above | | | | | | | | | |")
            diverged.append(name)
            continue
        history, found = result
        non_finite = first_non_finite(history)
        skipped = sum(1 for entry in history if entry.get("skipped_update"))
        lines.append(f"| {name} | {len(history)} | {first_step_terms(history)} | {non_finite} | {skipped} | "
                     f"{where_non_finite(found)} | {loss_at(history, 10)} | {loss_at(history, 50)} | "
                     f"{loss_at(history, 100)} | {history[-1]['loss']:.3f} | {time.time() - started:.0f} |")
        print(lines[-1], flush=True)
        if non_finite != "none":
            diverged.append(name)
    print("\n".join(lines))
    if diverged:
        print(f"failed or non-finite loss in: {', '.join(diverged)}")
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
