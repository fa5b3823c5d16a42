"""Benchmark: one trie-constrained beam step, eager_ext.trie_beam_step against the usual way.

    python benchmarks/bench_trie_beam_step.py            # the sizes of BENCHMARKS.md
    python benchmarks/bench_trie_beam_step.py --quick    # a smoke run

The usual way is what HF generate does with prefix_allowed_tokens_fn: log_softmax over the full
vocabulary, a Python dict trie walked per beam to build a -inf mask, beam scores added, and a
top-k over each prompt's W x V scores. Items have random 4-token codes with 256 codes per level
(tokens at the end of a V = 32,000 vocabulary); the step is the second one (beams on depth-1
nodes, the widest fan-out after the root). Ours runs on the full vocabulary (same work: a
full-vocabulary log-normaliser) and on the 1,024-column item-token slice of the same logits,
read in place.

Floor: a step must read the logits once: rows x V x 4 bytes (41 MB for 320 x 32,000 float32,
1.3 MB for the item slice); the trie adds a few bytes per candidate.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eager_ext  # noqa: E402
from common import interleaved_medians, markdown_table  # noqa: E402

VOCAB, LEVELS, CODES = 32_000, 4, 256
ITEM_OFFSET = VOCAB - LEVELS * CODES  # item tokens occupy the last 1,024 columns


def random_item_tokens(num_items: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    codes = torch.unique(torch.randint(0, CODES, (int(num_items * 1.01) + 16, LEVELS), generator=g), dim=0)
    codes = codes[torch.randperm(codes.shape[0], generator=g)][:num_items]
    return codes + ITEM_OFFSET + torch.arange(LEVELS) * CODES


def dict_trie(tokens: torch.Tensor) -> dict[tuple, list[int]]:
    """prefix -> allowed next tokens, the structure prefix_allowed_tokens_fn implementations use."""
    children: dict[tuple, set] = {}
    for row in tokens.tolist():
        for depth in range(LEVELS):
            children.setdefault(tuple(row[:depth]), set()).add(row[depth])
    return {prefix: sorted(allowed) for prefix, allowed in children.items()}


def usual_step(logits, beam_scores, prefixes, trie_dict, num_beams):
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    mask = torch.full_like(log_probs, float("-inf"))
    for row, prefix in enumerate(prefixes):
        mask[row, trie_dict.get(prefix, [])] = 0
    scores = (log_probs + mask + beam_scores[:, None]).view(-1, num_beams * logits.shape[1])
    best, index = torch.topk(scores, num_beams, dim=1)
    return best, index // logits.shape[1], index % logits.shape[1]


def make_step_inputs(tokens: torch.Tensor, trie, batch: int, num_beams: int, seed: int = 1):
    """Beams on random depth-1 nodes; logits random (never zeros)."""
    g = torch.Generator().manual_seed(seed)
    rows = batch * num_beams
    picked = tokens[torch.randint(0, tokens.shape[0], (rows,), generator=g), :1]
    nodes = torch.tensor([int(trie.child_nodes[torch.searchsorted(trie.child_tokens[: trie.child_offsets[1]], t)])
                          for t in picked[:, 0].tolist()])
    prefixes = [tuple(p) for p in picked.tolist()]
    logits = torch.randn(rows, VOCAB, generator=g) * 2
    beam_scores = -torch.rand(rows, generator=g) * 3
    return logits, beam_scores, nodes, prefixes


def run(item_counts: list[int], batch: int, num_beams: int, repeats: int) -> str:
    rows_out = []
    for num_items in item_counts:
        tokens = random_item_tokens(num_items)
        trie = eager_ext.ItemTrie.from_codes(tokens)
        trie_dict = dict_trie(tokens)
        logits, beam_scores, nodes, prefixes = make_step_inputs(tokens, trie, batch, num_beams)
        item_slice = logits[:, ITEM_OFFSET:]  # a strided view: no copy
        times = interleaved_medians(
            {
                "usual": lambda: usual_step(logits, beam_scores, prefixes, trie_dict, num_beams),
                "ours, full vocabulary": lambda: eager_ext.trie_beam_step(logits, beam_scores, nodes, trie, num_beams),
                "ours, item slice": lambda: eager_ext.trie_beam_step(
                    item_slice, beam_scores, nodes, trie, num_beams, vocab_offset=ITEM_OFFSET
                ),
            },
            repeats,
        )
        usual, full, sliced = times["usual"], times["ours, full vocabulary"], times["ours, item slice"]
        rows = batch * num_beams
        rows_out.append([
            f"{tokens.shape[0]:,}", f"{trie.num_nodes:,}", f"{usual * 1e3:.2f}", f"{full * 1e3:.3f}",
            f"{sliced * 1e3:.3f}", f"{usual / full:.1f}x", f"{usual / sliced:.0f}x",
            f"{rows * VOCAB * 4 / full / 1e9:.1f} / {rows * LEVELS * CODES * 4 / sliced / 1e9:.1f}",
        ])
        print(f"done {num_items} items", file=sys.stderr)
    header = ["items", "trie nodes", "usual ms", "ours full-V ms", "ours item-slice ms",
              "speed-up full-V", "speed-up item slice", "logits GB/s full-V / slice"]
    return markdown_table(header, rows_out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    args = parser.parse_args()
    if args.quick:
        counts, batch, beams, repeats = [2_000], 2, 4, 1
    else:
        counts, batch, beams, repeats = [12_101, 1_000_000], 16, 20, 25
    print(f"trie_beam_step, {batch} prompts x {beams} beams, V = {VOCAB:,}, {LEVELS} x {CODES} item tokens, "
          f"float32 logits, {torch.get_num_threads()} threads, median of {repeats}")
    print()
    print(run(counts, batch, beams, repeats))


if __name__ == "__main__":
    main()
