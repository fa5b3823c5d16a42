"""Reproducible quality benchmark on real Amazon Beauty and Sports (METHOD.md section 1).

    python benchmarks/quality/run_quality.py --dataset beauty [--seeds 0 1 2] [--variants ...]
    python benchmarks/quality/run_quality.py --dataset sports
    python benchmarks/quality/run_quality.py --dataset beauty --smoke   # 100 users, 1 epoch (CI)

Each seed runs the pinned config (``beauty.yaml`` / ``sports.yaml`` beside this file) through
the pipeline into ``OUT/DATASET/seedS/full``; every ablation copies that run folder and changes
its settings, so only the steps whose inputs change are recomputed (the step keys decide).
Writes ``OUT/DATASET/results.json`` and ``results.md``: Recall@5/10 and NDCG@5/10, mean and
standard deviation over seeds, the published rows beside them, and per run the resolved config,
seed, data fingerprint, package versions and wall time (also in each run folder).
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
from eager_llm.pipeline import RunDir, resolve_values, steps  # noqa: E402
from eager_llm.pipeline.config import PRESETS, merge, read_config_file  # noqa: E402

DATA_FOLDERS = {"beauty": "amazon-beauty-2014-5core", "sports": "amazon-sports-2014-5core"}
METRICS = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")
# The small model's ablations, and one variant of ours: settings laid over the full run's config.
ABLATIONS = {
    "semantic_only": {"index": {"behavior": None}},
    "behavior_only": {"index": {"semantic": None}},
    "no_gct": {"stage1": {"gct": False}},
    "released_tree": {"index": {"semantic": {"quantizer": "balanced_tree"},
                                "behavior": {"quantizer": "balanced_tree"}}},
    "rq_kmeans": {"index": {"semantic": {"quantizer": "rq_kmeans"}, "behavior": {"quantizer": "rq_kmeans"}}},
    "response_only": {"tasks": {"history_targets": False}},
    "behavior_first": {"index": {"order": ["behavior", "semantic"]}},
}
VARIANTS = ("full", *ABLATIONS, "smollm2")
LABELS = {"full": "EAGER-LLM small (ours: sub-clustered trees, 2 + 2 codes, history targets)",
          "no_stage2": "ablation: no stage 2",
          "semantic_only": "ablation: semantic-only index", "behavior_only": "ablation: behavior-only index",
          "no_gct": "ablation: no GCT", "released_tree": "ablation: released-code tree index",
          "rq_kmeans": "ablation: RQ-KMeans index", "response_only": "ablation: response-only LM loss (the paper's)",
          "behavior_first": "variant: behavior codes first in the index",
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


def run_pipeline(folder: str, values: dict, log) -> tuple[dict, dict]:
    """Runs every step (reusing what the folder already holds for the same inputs); returns the
    test metrics rows and the run record."""
    run = RunDir.create(folder, resolve_values(values), "benchmarks/quality/run_quality.py", None, log=log)
    steps.run_steps(run, ("prepare", "embed", "index", "train", "evaluate"), progress=False)
    with open(run.file("evaluate", "metrics.json"), encoding="utf-8") as handle:
        rows = json.load(handle)["rows"]
    return rows, {**run.record(), "config": run.config.to_dict()}


def variant_values(dataset: str, variant: str, seed: int, data_root: str, smoke: bool) -> dict:
    if variant == "smollm2":
        values = merge(PRESETS["smollm2"], read_config_file(os.path.join(HERE, "smollm2-beauty.yaml")))
    else:
        values = merge(read_config_file(os.path.join(HERE, f"{dataset}.yaml")), ABLATIONS.get(variant, {}))
    values = merge(values, {"seed": seed, "data": {"source": os.path.join(data_root, DATA_FOLDERS[dataset])}})
    return merge(values, SMOKE) if smoke else values


def run_seed(args, seed: int, log) -> dict:
    """{variant: {"rows": metrics rows, "record": run record, "seconds": compute time}} for one seed.

    A run's compute time is the sum of its steps' times as each was computed (the run record
    keeps them), so it is what the run costs from scratch, also when this call reused steps."""
    base = os.path.join(args.out, args.dataset, f"seed{seed}")
    results = {}
    for variant in args.variants:
        folder = os.path.join(base, variant)
        if variant in ABLATIONS and not os.path.exists(folder) and os.path.exists(os.path.join(base, "full")):
            shutil.copytree(os.path.join(base, "full"), folder)  # reuse data, embeddings, index where unchanged
        rows, record = run_pipeline(folder, variant_values(args.dataset, variant, seed, args.data_root, args.smoke), log)
        seconds = sum(step.get("seconds", 0.0) for step in record["steps"].values())
        results[variant] = {"rows": rows, "record": record, "seconds": round(seconds, 1)}
        log(f"seed {seed} {variant}: Recall@10 {rows['EAGER-LLM stage 1 + 2']['recall@10']:.4f}")
    return results


def summary_rows(per_seed: list[dict]) -> list[tuple[str, list[dict]]]:
    """(label, one metrics dict per seed) for every row of the table."""
    rows = []
    if per_seed and "full" in per_seed[0]:
        for name in ("popularity", "SASRec"):
            rows.append((f"{name} (same benchmark)", [seed["full"]["rows"][name] for seed in per_seed]))
        rows.append((LABELS["full"], [seed["full"]["rows"]["EAGER-LLM stage 1 + 2"] for seed in per_seed]))
        rows.append((LABELS["no_stage2"], [seed["full"]["rows"]["EAGER-LLM stage 1"] for seed in per_seed]))
    for variant in VARIANTS[1:]:
        if per_seed and variant in per_seed[0]:
            rows.append((LABELS[variant], [seed[variant]["rows"]["EAGER-LLM stage 1 + 2"] for seed in per_seed]))
    if per_seed and "smollm2" in per_seed[0]:  # its subsample has its own baselines
        for name in ("popularity", "SASRec"):
            rows.append((f"{name} on the SmolLM2 subsample", [seed["smollm2"]["rows"][name] for seed in per_seed]))
    return rows


def cell(values: list[float]) -> str:
    """Mean ± standard deviation over seeds; a single seed's value alone (it has no spread)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def write_results(args, per_seed: list[dict]) -> str:
    folder = os.path.join(args.out, args.dataset)
    rows = [[label, *(cell([m[metric] for m in metrics]) for metric in METRICS)] for label, metrics in summary_rows(per_seed)]
    rows += [[f"{name} (published{', LLaMA-7B scale' if name == 'EAGER-LLM' else ''})", *(f"{v:.4f}" for v in values)]
             for name, values in PUBLISHED[args.dataset].items()]
    hours = {variant: [seed[variant]["seconds"] / 3600 for seed in per_seed] for variant in per_seed[0]}
    hardware = (f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
                f"threads{', CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ', no GPU'}")
    budget = ", ".join(f"{variant} {statistics.mean(h):.2f} h" for variant, h in hours.items())
    seeds = list(args.seeds)
    text = "\n".join([
        f"`python benchmarks/quality/run_quality.py --dataset {args.dataset} --seeds {' '.join(map(str, seeds))} "
        f"--variants {' '.join(args.variants)}{' --smoke' if args.smoke else ''}` — test split, full ranking, "
        + (f"mean ± standard deviation over seeds {seeds}." if len(seeds) > 1 else f"one seed ({seeds[0]}), so no spread."),
        f"Hardware: {hardware}. Compute time per run (sum of its steps): {budget}.",
        "", markdown_table(["", "Recall@5", "Recall@10", "NDCG@5", "NDCG@10"], rows), ""])
    atomic_write_json(os.path.join(folder, "results.json"), {
        "dataset": args.dataset, "seeds": seeds, "smoke": args.smoke, "hardware": hardware,
        "rows": {label: metrics for label, metrics in summary_rows(per_seed)},
        "published": {name: dict(zip(METRICS, values)) for name, values in PUBLISHED[args.dataset].items()},
        "runs": [{variant: {"seconds": r["seconds"], "record": r["record"]} for variant, r in seed.items()}
                 for seed in per_seed]})
    atomic_write_text(os.path.join(folder, "results.md"), text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(DATA_FOLDERS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                        help="default: full and every ablation (and smollm2 on beauty)")
    parser.add_argument("--data-root", default=os.path.join(HERE, "..", "..", "..", "shared", "data"))
    parser.add_argument("--out", default="runs/quality")
    parser.add_argument("--smoke", action="store_true", help="100 users, one epoch: checks the pipeline end to end")
    args = parser.parse_args(argv)
    if args.variants is None:
        args.variants = [v for v in VARIANTS if v != "smollm2" or args.dataset == "beauty"]
    if "full" in args.variants:  # ablations copy the full run's folder
        args.variants = ["full"] + [v for v in args.variants if v != "full"]
    folder = os.path.join(args.data_root, DATA_FOLDERS[args.dataset])
    if not os.path.isdir(folder):
        raise SystemExit(f"{folder}: dataset folder not found (pass --data-root)")

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    per_seed = [run_seed(args, seed, log) for seed in args.seeds]
    print(write_results(args, per_seed))


if __name__ == "__main__":
    main()
