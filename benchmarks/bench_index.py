"""Benchmark: building the DKI item index with each quantizer kind.

    python benchmarks/bench_index.py --semantic SEM.safetensors --behavior BEH.safetensors
    python benchmarks/bench_index.py --synthetic    # Gaussian, Beauty-sized: 12,101 x 384 and x 64
    python benchmarks/bench_index.py --quick        # a smoke run on small Gaussian embeddings

For every kind (the same kind for both sources) it builds the index once and prints a Markdown
table: build time, code usage per level (distinct codes used / codebook size), quantization error
(mean ||x - x_hat||^2, and relative to the mean ||x||^2), collisions of each source's codes alone
and of the joined index before and after the collision policy (items in a shared index / groups).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table  # noqa: E402
from eager_llm.index import QUANTIZER_KINDS, DualSourceIndex, IndexConfig, SourceConfig, collision_stats  # noqa: E402

BEAUTY_ITEMS = 12_101


def read_embeddings(path: str, key: str | None) -> torch.Tensor:
    """The tensor ``key`` of a .safetensors file, or its only tensor."""
    tensors = load_file(path)
    if key is None:
        if len(tensors) != 1:
            raise SystemExit(f"{path} holds {sorted(tensors)}: pass --key")
        return next(iter(tensors.values())).float()
    return tensors[key].float()


def gaussian(rows: int, dims: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randn(rows, dim, generator=generator) for dim in dims)


def usage(statistics: dict, source: str) -> str:
    return " / ".join(f"{p['codes_used']}/{p['codebook_size']}"
                      for p in statistics["positions"] if p["source"] == source)


def collisions(items_groups: tuple[int, int]) -> str:
    return f"{items_groups[0]:,} / {items_groups[1]:,}"


def run(semantic: torch.Tensor, behavior: torch.Tensor, levels: int, codebook_size: int, policy: str) -> str:
    mean_sq = {"semantic": float(semantic.pow(2).sum(1).mean()), "behavior": float(behavior.pow(2).sum(1).mean())}
    rows = []
    for kind in QUANTIZER_KINDS:
        source = SourceConfig(kind, levels, codebook_size)
        config = IndexConfig(semantic=source, behavior=source, collision_policy=policy)
        start = time.perf_counter()
        try:
            index = DualSourceIndex.build(semantic, behavior, config)
        except ValueError as error:  # e.g. the slot variant cannot hold this many items
            rows.append([kind, "not applicable: " + str(error)] + [""] * 9)
            continue
        seconds = time.perf_counter() - start
        stats = index.statistics()
        errors = stats["quantization_error"]
        after = stats["collisions"]["after"]
        rows.append([
            kind, f"{seconds:.1f}",
            usage(stats, "semantic"), usage(stats, "behavior"),
            *(f"{errors[name]:.3g} ({errors[name] / mean_sq[name]:.2f})" for name in ("semantic", "behavior")),
            collisions(collision_stats(index.raw_codes[:, :levels])),
            collisions(collision_stats(index.raw_codes[:, levels:])),
            collisions(collision_stats(index.raw_codes)),
            f"{collisions((after['items'], after['groups']))} ({stats['collisions']['reassigned']} moved"
            f"{', +1 level' if stats['collisions']['extra_level'] else ''})",
            f"{index.codes.shape[1]} / {index.num_tokens:,}",
        ])
    header = ["kind", "build s", "sem usage per level", "beh usage per level", "sem q-error (rel)",
              "beh q-error (rel)", "sem collisions", "beh collisions", "index collisions before",
              f"after ({policy})", "positions / tokens"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--semantic", help=".safetensors file with the [items, D] semantic embeddings")
    parser.add_argument("--behavior", help=".safetensors file with the [items, D] behavior embeddings")
    parser.add_argument("--key", help="tensor name inside the .safetensors files (default: the only one)")
    parser.add_argument("--synthetic", action="store_true", help="Gaussian embeddings of the Beauty size")
    parser.add_argument("--quick", action="store_true", help="small Gaussian smoke run")
    parser.add_argument("--levels", type=int, default=2, help="levels per source (default 2)")
    parser.add_argument("--codebook-size", type=int, default=256, help="codes per level (default 256)")
    parser.add_argument("--policy", default="reassign", help="collision policy (default reassign)")
    parser.add_argument("--threads", type=int, help="torch threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        semantic, behavior = gaussian(1_000, (32, 16))
        args.codebook_size = min(args.codebook_size, 32)
    elif args.synthetic:
        semantic, behavior = gaussian(BEAUTY_ITEMS, (384, 64))
    elif args.semantic and args.behavior:
        semantic, behavior = read_embeddings(args.semantic, args.key), read_embeddings(args.behavior, args.key)
    else:
        parser.error("pass --semantic and --behavior files, or --synthetic, or --quick")
    print(f"items {semantic.shape[0]:,}, semantic {semantic.shape[1]}-d, behavior {behavior.shape[1]}-d, "
          f"{args.levels} levels x {args.codebook_size} codes per source, torch threads {torch.get_num_threads()}\n")
    print(run(semantic, behavior, args.levels, args.codebook_size, args.policy))


if __name__ == "__main__":
    main()
