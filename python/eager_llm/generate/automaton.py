"""A trie-shaped automaton for the released EAGER-LLM constraint (for comparison only)."""

from __future__ import annotations

import torch


class PositionAutomaton:
    """Node d (0 <= d < depth) has one child per token seen at position d among the items, all
    leading to node d + 1. It has the flat arrays of an ItemTrie, so trie_beam_step runs on it
    unchanged; the sequences it accepts are every combination of per-position tokens, most of
    which are no item."""

    def __init__(self, allowed: list[torch.Tensor], device=torch.device("cpu")):
        self.depth = len(allowed)
        counts = torch.tensor([len(a) for a in allowed] + [0])
        self.child_offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)]).to(device)
        self.child_tokens = torch.cat(allowed).to(device)
        self.child_nodes = torch.repeat_interleave(torch.arange(1, self.depth + 1), counts[:-1]).to(device)
        self.min_token = int(self.child_tokens.min())
        self.max_token = int(self.child_tokens.max())
        self.max_children = int(counts.max())
        self.device = torch.device(device)
        self._allowed = allowed

    @classmethod
    def from_trie(cls, trie) -> "PositionAutomaton":
        codes = trie.codes
        return cls([torch.unique(codes[:, d]) for d in range(codes.shape[1])])

    def to(self, device) -> "PositionAutomaton":
        return PositionAutomaton(self._allowed, device)
