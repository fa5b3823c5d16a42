"""Experiment: one training option, off against on, on the demo data over seeds.

    python benchmarks/bench_demo_options.py token_init [--seeds 0 1 2] [--out runs/token-init]
    python benchmarks/bench_demo_options.py history_targets [--seeds 0 1 2] [--out runs/history-targets]
    python benchmarks/bench_demo_options.py --quick    # a smoke run of each (60 users, one seed)

Per seed, runs the demo pipeline (``eager-llm demo`` defaults) with the option's first setting,
then copies that run folder and retrains with the second (data, embeddings and index are
reused: only training and evaluation differ). Prints test Recall@10 / NDCG@10 after stage 1
and after stage 2, mean and standard deviation over seeds.
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

# Each option's two settings, in the order they run, as config layers over the demo preset.
OPTIONS = {
    "token_init": {"mean": {"model": {"token_init": "mean"}},
                   "exogenous": {"model": {"token_init": "exogenous"}}},
    "history_targets": {"response only": {"tasks": {"history_targets": False}},
                        "history targets": {"tasks": {"history_targets": True}}},
}
QUICK = {"data": {"max_users": 60}, "embed": {"behavior": {"max_epochs": 1}}, "stage1": {"epochs": 1},
         "evaluate": {"validation_users": 8}}
STAGES = ("EAGER-LLM stage 1", "EAGER-LLM stage 1 + 2")


def run(folder: str, values: dict) -> dict:
    run_dir = RunDir.create(folder, resolve_values(values), "benchmarks/bench_demo_options.py", None)
    steps.run_steps(run_dir, ("prepare", "embed", "index", "train", "evaluate"), progress=False)
    with open(run_dir.file("evaluate", "metrics.json"), encoding="utf-8") as handle:
        return json.load(handle)["rows"]


def compare(option: str, seeds: list[int], out: str, quick: bool) -> list[list[str]]:
    """Table rows (setting, stage, Recall@10, NDCG@10, Recall@10 per seed); writes OUT/OPTION.json."""
    settings = OPTIONS[option]
    results = {setting: [] for setting in settings}
    for seed in seeds:
        values = merge(PRESETS["demo"], {"seed": seed, **(QUICK if quick else {})})
        folders = [os.path.join(out, f"seed{seed}-{setting.replace(' ', '-')}") for setting in settings]
        for folder, (setting, layer) in zip(folders, settings.items()):
            if folder != folders[0]:  # retrain a copy of the first setting's run
                shutil.rmtree(folder, ignore_errors=True)
                shutil.copytree(folders[0], folder)
            results[setting].append(run(folder, merge(values, layer)))
        print(f"{option}: seed {seed} done", file=sys.stderr)
    atomic_write_json(os.path.join(out, f"{option}.json"), {"seeds": seeds, "results": results})
    rows = []
    for setting, per_seed in results.items():
        for stage in STAGES:
            cells = [setting, stage.replace("EAGER-LLM ", "")]
            for metric in ("recall@10", "ndcg@10"):
                values = [r[stage][metric] for r in per_seed]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.4f} ± {spread:.4f}")
            cells.append(", ".join(f"{r[stage]['recall@10']:.4f}" for r in per_seed))
            rows.append(cells)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("option", nargs="?", choices=sorted(OPTIONS), help="required unless --quick")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=None, help="folder for the runs (default: a temporary one)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.option is None and not args.quick:
        parser.error("name the option to compare: " + ", ".join(sorted(OPTIONS)))
    out = args.out or tempfile.mkdtemp(prefix="demo-options-")
    for option in [args.option] if args.option else sorted(OPTIONS):
        rows = compare(option, args.seeds[:1] if args.quick else args.seeds, out, args.quick)
        print(markdown_table([option.replace("_", " "), "stage", "Recall@10", "NDCG@10", "Recall@10 per seed"], rows))
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
