"""Trains stage 1 of the demo under several settings and reports where the loss stops being finite.

    python benchmarks/gpu_train_check.py OUTDIR                     # on a GPU machine
    python benchmarks/gpu_train_check.py OUTDIR --set data.max_users=60 --variants fp32_kernels

On a GPU the trainer's "auto" precision is bf16 autocast, which the CPU tests never exercise.
Each variant changes one thing against that default, so the first non-finite step of each
tells where a divergence comes from: the precision, our CUDA kernels (against the plain-torch
reference ops), or the GCT loss as a whole.
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
from eager_llm import cli

# name -> (extra --set overrides, use the plain-torch reference ops instead of the kernels)
VARIANTS = {
    "bf16_kernels": ([], False),
    "fp32_kernels": (["stage1.mixed_precision=no"], False),
    "bf16_reference_ops": ([], True),
    "bf16_no_gct": (["stage1.gct=false"], False),
}


def train_stage1(run: str, overrides: list[str], reference_ops: bool) -> None:
    """prepare -> embed -> index -> train in `run`, in this process."""
    sets = [arg for value in ["stage1.epochs=1", *overrides] for arg in ("--set", value)]
    if reference_ops:
        eager_ext.summary_gather, eager_ext.gathered_infonce = reference.summary_gather, reference.gathered_infonce
    for command in (["prepare", "--preset", "demo"], ["embed"], ["index"], ["train"]):
        if cli.main([*command, "--run", run, "--quiet", *sets]) != 0:
            raise SystemExit(f"eager-llm {command[0]} failed in {run}")


def stage1_history(name: str, out: str, extra: list[str]) -> list[dict] | None:
    """Trains one variant in a child process (accelerate's precision is fixed once per process);
    None when it failed."""
    run = os.path.join(out, name)
    extra_sets = [arg for value in extra for arg in ("--set", value)]
    child = subprocess.run([sys.executable, os.path.abspath(__file__), out, "--only", name, *extra_sets])
    if child.returncode != 0:
        return None
    with open(os.path.join(run, "stage1", "history.json")) as file:
        return json.load(file)


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
        overrides, reference_ops = VARIANTS[args.only]
        train_stage1(os.path.join(args.out, args.only), overrides + args.extra, reference_ops)
        return 0
    diverged = []
    lines = ["| variant | steps | step 1 lm / gct_behavior / gct_semantic | first non-finite | loss @10 | @50 | "
             "@100 | last | seconds |", "|---|---|---|---|---|---|---|---|---|"]
    for name in args.variants:
        started = time.time()
        history = stage1_history(name, args.out, args.extra)
        if history is None:
            lines.append(f"| {name} | failed: see the output above | | | | | | | |")
            diverged.append(name)
            continue
        non_finite = first_non_finite(history)
        lines.append(f"| {name} | {len(history)} | {first_step_terms(history)} | {non_finite} | {loss_at(history, 10)} | "
                     f"{loss_at(history, 50)} | {loss_at(history, 100)} | {history[-1]['loss']:.3f} | "
                     f"{time.time() - started:.0f} |")
        print(lines[-1], flush=True)
        if non_finite != "none":
            diverged.append(name)
    print("\n".join(lines))
    if diverged:
        print(f"failed or non-finite loss in: {', '.join(diverged)}")
    return 1 if diverged else 0


if __name__ == "__main__":
    sys.exit(main())
