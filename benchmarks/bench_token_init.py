"""Experiment: how the index tokens' embedding rows start, mean vs exogenous, on the demo data.

    python benchmarks/bench_token_init.py [--seeds 0 1 2] [--out runs/token-init]
    python benchmarks/bench_token_init.py --quick      # a smoke run (60 users, one seed)

Runs the demo pipeline (``eager-llm demo`` defaults) per seed with ``model.token_init=mean``,
then copies that run folder and retrains with ``exogenous`` (data, embeddings and index are
reused: only training and evaluation differ). Prints test Recall@10 / NDCG@10 after stage 2,
mean and standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table  # noqa: E402
from eager_llm.io import atomic_write_json  # noqa: E402
from eager_llm.pipeline import RunDir, resolve_values, steps  # noqa: E402
from eager_llm.pipeline.config import PRESETS, merge  # noqa: E402

QUICK = {"data": {"max_users": 60}, "embed": {"behavior": {"max_epochs": 1}}, "stage1": {"epochs": 1},
         "evaluate": {"validation_users": 8}}


def run(folder: str, values: dict) -> dict:
    run_dir = RunDir.create(folder, resolve_values(values), "benchmarks/bench_token_init.py", None)
    steps.run_steps(run_dir, ("prepare", "embed", "index", "train", "evaluate"), progress=False)
    with open(run_dir.file("evaluate", "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)["rows"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="token-init-")
    seeds = args.seeds[:1] if args.quick else args.seeds
    results = {"mean": [], "exogenous": []}
    for seed in seeds:
        values = merge(PRESETS["demo"], {"seed": seed, **(QUICK if args.quick else {})})
        mean_dir = os.path.join(out, f"seed{seed}-mean")
        results["mean"].append(run(mean_dir, merge(values, {"model": {"token_init": "mean"}})))
        exogenous_dir = os.path.join(out, f"seed{seed}-exogenous")
        shutil.rmtree(exogenous_dir, ignore_errors=True)
        shutil.copytree(mean_dir, exogenous_dir)
        results["exogenous"].append(run(exogenous_dir, merge(values, {"model": {"token_init": "exogenous"}})))
        print(f"seed {seed} done", file=sys.stderr)
    rows = []
    for init, per_seed in results.items():
        for stage in ("EAGER-LLM stage 1", "EAGER-LLM stage 1 + 2"):
            cells = [init, stage.replace("EAGER-LLM ", "")]
            for metric in ("recall@10", "ndcg@10"):
                values = [r[stage][metric] for r in per_seed]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
            cells.append(", ".join(f"{r[stage]['recall@10']:.4f}" for r in per_seed))
            rows.append(cells)
    atomic_write_json(os.path.join(out, "token_init.json"), {"seeds": seeds, "results": results})
    print(markdown_table(["token init", "stage", "Recall@10", "NDCG@10", "Recall@10 per seed"], rows))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
