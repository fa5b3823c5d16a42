"""Benchmark: eager_ext.gathered_infonce (forward + backward) against the expanded form.

    python benchmarks/bench_gathered_infonce.py            # the sizes of BENCHMARKS.md
    python benchmarks/bench_gathered_infonce.py --quick    # a smoke run

The expanded form is what the released EAGER-LLM code does: gather the negatives, broadcast
them to [B, M, E] next to the queries, multiply and sum. Floor: forward and backward read the
M negative rows (M * E * 4 bytes) and do 2 * B * M * E FLOPs per pass; our backward makes two
passes (it recomputes the logits instead of saving them), so 3 passes in all.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eager_ext  # noqa: E402
from eager_ext import reference  # noqa: E402
from common import interleaved_medians, markdown_table, measure_in_subprocess, peak_extra_mib  # noqa: E402

BATCH, NEGATIVES, TABLE_ROWS, TEMPERATURE = 16, 2048, 12_101, 0.1


def expanded_infonce(query, table, positive_ids, negative_ids, temperature, valid=None):
    """The released code's way: every query times every negative as a [B, M, E] tensor."""
    q = F.normalize(query, dim=-1)
    positives = F.normalize(table[positive_ids], dim=-1)
    negatives = F.normalize(table[negative_ids], dim=-1).unsqueeze(0).expand(q.shape[0], -1, -1)
    positive_logits = (q * positives).sum(-1, keepdim=True)
    negative_logits = (q.unsqueeze(1) * negatives).sum(-1)
    logits = torch.cat([positive_logits, negative_logits], dim=1) / temperature
    target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
    return F.cross_entropy(logits, target)


IMPLEMENTATIONS = {
    "eager_ext": eager_ext.gathered_infonce,
    "gathered [M, E] + matmul": reference.gathered_infonce,
    "expanded [B, M, E]": expanded_infonce,
}


def make_inputs(e: int):
    g = torch.Generator().manual_seed(0)
    query = torch.randn(BATCH, e, generator=g, requires_grad=True)
    table = torch.randn(TABLE_ROWS, e, generator=g)
    positive_ids = torch.randint(0, TABLE_ROWS, (BATCH,), generator=g)
    negative_ids = torch.randint(0, TABLE_ROWS, (NEGATIVES,), generator=g)
    return query, table, positive_ids, negative_ids


def forward_backward(fn, inputs):
    query = inputs[0]
    loss = fn(*inputs, TEMPERATURE)
    loss.backward()
    query.grad = None


def run(dims: list[int], repeats: int) -> str:
    rows = []
    for e in dims:
        inputs = make_inputs(e)
        times = interleaved_medians(
            {name: (lambda f=fn: forward_backward(f, inputs)) for name, fn in IMPLEMENTATIONS.items()}, repeats
        )
        memory = {name: measure_in_subprocess(__file__, [name, str(e)]) for name in IMPLEMENTATIONS}
        ours, expanded, gathered = times["eager_ext"], times["expanded [B, M, E]"], times["gathered [M, E] + matmul"]
        floor_bytes = 3 * NEGATIVES * e * 4
        rows.append([
            str(e), f"{ours * 1e3:.1f}", f"{gathered * 1e3:.1f}", f"{expanded * 1e3:.1f}",
            f"{expanded / ours:.1f}x",
            f"{memory['eager_ext']:.1f} / {memory['gathered [M, E] + matmul']:.1f} / {memory['expanded [B, M, E]']:.1f}",
            f"{memory['expanded [B, M, E]'] / max(memory['eager_ext'], 0.1):.0f}x",
            f"{floor_bytes / ours / 1e9:.1f}",
        ])
        print(f"done E={e}", file=sys.stderr)
    header = ["E", "ours ms", "gathered+matmul ms", "expanded ms", "speed-up vs expanded",
              "peak MiB ours / gathered / expanded", "memory saving vs expanded", "ours GB/s of negative rows"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--memory-probe", nargs=2, metavar=("IMPL", "E"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        name, e = args.memory_probe
        inputs = make_inputs(int(e))
        peak = peak_extra_mib(lambda: forward_backward(IMPLEMENTATIONS[name], inputs))
        print(json.dumps({"peak_mib": peak}))
        return
    dims, repeats = ([32], 1) if args.quick else ([1024, 4096], 9)
    print(f"gathered_infonce forward + backward, B = {BATCH}, M = {NEGATIVES}, table {TABLE_ROWS:,} rows, "
          f"float32, {torch.get_num_threads()} threads, median of {repeats}")
    print()
    print(run(dims, repeats))


if __name__ == "__main__":
    main()
