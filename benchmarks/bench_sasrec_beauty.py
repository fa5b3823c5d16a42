"""Benchmark: SASRec on Amazon Beauty 2014 5-core, full ranking, leave-one-out, on the CPU.

    python benchmarks/bench_sasrec_beauty.py --out sasrec_beauty.json   # the pinned run
    python benchmarks/bench_sasrec_beauty.py --quick                   # a smoke run

The bar: test Recall@10 >= 0.055 (the literature's SASRec row, quoted by METHOD.md, is
R@5 0.0387 / R@10 0.0605 / N@5 0.0249 / N@10 0.0318) within 20 minutes on a 2-core CPU.
Quick mode trains one epoch on the first 300 users (the demo dataset when the data folder is
absent), so it checks that the script runs, not the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import asdict

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table  # noqa: E402

import eager_llm  # noqa: E402
from eager_llm.data import Dataset, demo_dataset, leave_one_out, load_dataset  # noqa: E402
from eager_llm.embed.behavior import BehaviorConfig, popularity_metrics, train_behavior_model  # noqa: E402
from eager_llm.io import atomic_write_json  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "data",
                            "amazon-beauty-2014-5core")
SEED = 0
# Pinned recipe: the common full-softmax SASRec on Beauty. Histories are capped at 20 items by
# the protocol (METHOD.md section 1), so longer training windows would not be seen at test time.
PINNED = BehaviorConfig(model="sasrec", dim=64, layers=2, heads=2, dropout=0.3, max_length=20, batch_size=128,
                        lr=2e-3, max_epochs=30, patience=5, seed=SEED, device="cpu")
QUICK_USERS = 300
LITERATURE = {"recall@5": 0.0387, "recall@10": 0.0605, "ndcg@5": 0.0249, "ndcg@10": 0.0318}
REPORTED = ("recall@5", "recall@10", "ndcg@5", "ndcg@10")


def load(path: str, quick: bool) -> Dataset:
    if quick and not os.path.isdir(path):
        print(f"{path} not found: quick mode uses the demo dataset")
        dataset = demo_dataset()
    else:
        dataset = load_dataset(path)
    if quick:
        dataset = Dataset(dataset.name + f"-first{QUICK_USERS}", dataset.sequences[:QUICK_USERS], dataset.item_text)
    return dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA, help="the amazon-beauty-2014-5core folder")
    parser.add_argument("--out", help="write the run's config, seed, data fingerprint and metrics here (JSON)")
    # One thread by default: with two threads on two shared cores, an epoch took 128 s instead of
    # about 25 s whenever another job ran (OpenMP threads wait for the one that is descheduled).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--max-epochs", type=int, default=PINNED.max_epochs)
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK_USERS} users, one epoch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = BehaviorConfig(**{**asdict(PINNED), "max_epochs": 1 if args.quick else args.max_epochs})

    dataset = load(os.path.normpath(args.data), args.quick)
    split = leave_one_out(dataset)
    started = time.perf_counter()
    result = train_behavior_model(split, dataset.num_items, config, progress=not args.quick)
    wall = time.perf_counter() - started
    popularity = popularity_metrics(split, dataset.num_items)

    print(f"SASRec on {dataset.name}: {dataset.num_users:,} users, {dataset.num_items:,} items, "
          f"{args.threads} threads, {result.epochs} epochs (best {result.best_epoch}), {wall:.0f} s")
    print()
    rows = [["SASRec (ours)", *(f"{result.test_metrics[m]:.4f}" for m in REPORTED)],
            ["SASRec (literature)", *(f"{LITERATURE[m]:.4f}" for m in REPORTED)],
            ["popularity", *(f"{popularity[m]:.4f}" for m in REPORTED)]]
    print(markdown_table(["test", "R@5", "R@10", "N@5", "N@10"], rows))
    if args.out:
        atomic_write_json(args.out, {
            "benchmark": "sasrec_beauty", "quick": args.quick, "config": asdict(config), "seed": config.seed,
            "dataset": dataset.name, "data_fingerprint": dataset.fingerprint(), "statistics": dataset.statistics(),
            "valid_metrics": result.valid_metrics, "test_metrics": result.test_metrics,
            "popularity_test_metrics": popularity, "epochs": result.epochs, "best_epoch": result.best_epoch,
            "train_seconds": result.seconds, "wall_seconds": wall, "threads": args.threads,
            "versions": {"eager_llm": eager_llm.__version__, "torch": torch.__version__,
                         "python": platform.python_version()},
        })


if __name__ == "__main__":
    main()
