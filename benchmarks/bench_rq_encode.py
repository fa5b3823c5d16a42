"""Benchmark: eager_ext.rq_encode against the cdist reference and a tiled torch matmul version.

    python benchmarks/bench_rq_encode.py            # the sizes of BENCHMARKS.md
    python benchmarks/bench_rq_encode.py --quick    # a smoke run

Floor: the work is 2*N*K*D*L FLOPs against N*D*4 bytes read, so it is compute-bound; the
ceiling is the machine's matmul rate, measured in the same run on one tile's matmul shape
(torch.mm of [4096, D] x [D, K]). We report our rate as a fraction of it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eager_ext  # noqa: E402
from eager_ext import reference  # noqa: E402
from common import interleaved_medians, markdown_table, measure_in_subprocess, peak_extra_mib  # noqa: E402

K, LEVELS = 256, 3


def rq_encode_tiled_torch(x: torch.Tensor, codebooks: torch.Tensor, tile: int = 4096):
    """The best plain-torch version: per tile of rows, one addmm per level gives the distances
    (|c|^2 - 2 r.c), then argmin and the residual update while the tile is in cache."""
    centroids = codebooks.float()
    sq_norms = centroids.pow(2).sum(-1)
    n, levels = x.shape[0], centroids.shape[0]
    codes = torch.empty(n, levels, dtype=torch.long, device=x.device)
    norms = torch.empty(n, device=x.device)
    for start in range(0, n, tile):
        residual = x[start : start + tile].float()
        for level in range(levels):
            nearest = torch.addmm(sq_norms[level], residual, centroids[level].T, alpha=-2).argmin(1)
            codes[start : start + tile, level] = nearest
            residual = residual - centroids[level][nearest]
        norms[start : start + tile] = residual.pow(2).sum(1)
    return codes, norms


IMPLEMENTATIONS = {
    "eager_ext": eager_ext.rq_encode,
    "tiled torch": rq_encode_tiled_torch,
    "cdist reference": reference.rq_encode,
}


def make_inputs(n: int, d: int):
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, d, generator=generator), torch.randn(LEVELS, K, d, generator=generator)


def matmul_rate(d: int) -> float:
    a, b = torch.randn(4096, d), torch.randn(d, K)
    seconds = interleaved_medians({"mm": lambda: torch.mm(a, b)}, repeats=20, warmup=3)["mm"]
    return 2 * 4096 * d * K / seconds


def run(sizes: list[tuple[int, int]], repeats: int) -> str:
    rows = []
    for n, d in sizes:
        x, codebooks = make_inputs(n, d)
        times = interleaved_medians(
            {name: (lambda f=fn: f(x, codebooks)) for name, fn in IMPLEMENTATIONS.items()}, repeats
        )
        memory = {name: measure_in_subprocess(__file__, [name, str(n), str(d)]) for name in IMPLEMENTATIONS}
        ceiling = matmul_rate(d)
        flops = 2 * n * K * d * LEVELS
        ours = times["eager_ext"]
        rows.append([
            f"{n:,}", str(d),
            f"{ours * 1e3:.0f}", f"{times['tiled torch'] * 1e3:.0f}", f"{times['cdist reference'] * 1e3:.0f}",
            f"{times['cdist reference'] / ours:.2f}x", f"{times['tiled torch'] / ours:.2f}x",
            f"{memory['eager_ext']:.0f} / {memory['tiled torch']:.0f} / {memory['cdist reference']:.0f}",
            f"{flops / ours / 1e9:.0f} ({flops / ours / ceiling:.0%} of {ceiling / 1e9:.0f})",
        ])
        print(f"done N={n} D={d}", file=sys.stderr)
    header = ["N", "D", "ours ms", "tiled torch ms", "cdist ms", "vs cdist", "vs tiled",
              "peak MiB ours / tiled / cdist", "ours GFLOP/s (of mm rate)"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--memory-probe", nargs=3, metavar=("IMPL", "N", "D"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        name, n, d = args.memory_probe
        x, codebooks = make_inputs(int(n), int(d))
        print(json.dumps({"peak_mib": peak_extra_mib(lambda: IMPLEMENTATIONS[name](x, codebooks))}))
        return
    if args.quick:
        sizes, repeats = [(2_000, 16)], 1
    else:
        sizes, repeats = [(100_000, 64), (100_000, 256), (1_000_000, 64), (1_000_000, 256), (100_000, 768)], 5
    print(f"rq_encode, K = {K}, L = {LEVELS}, float32, {torch.get_num_threads()} threads, median of {repeats}")
    print()
    print(run(sizes, repeats))


if __name__ == "__main__":
    main()
