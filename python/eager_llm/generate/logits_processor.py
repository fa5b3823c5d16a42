"""The exact trie constraint as a Hugging Face LogitsProcessor, for existing generate() code."""

from __future__ import annotations

import torch
from torch import Tensor

import eager_ext


class TrieLogitsProcessor:
    """Restricts ``model.generate(..., num_beams=W, logits_processor=[this])`` to real items.

    The generated tokens of each row are walked down the trie (vectorised over rows, no Python
    loop), and ``eager_ext.trie_mask_`` sets every other token to -inf in place. Once a row has
    produced a whole item (or left the trie, which only another processor can cause), only
    ``eos_token_id`` is allowed, or an error is raised when none was given; set
    ``max_new_tokens=trie.depth`` to stop exactly at the item.

    Args:
        trie: the items' :class:`eager_ext.ItemTrie`.
        prompt_length: length of the (left-padded) prompts. If omitted, the first call's input
            length is taken, so use a new processor per ``generate`` call.
        eos_token_id: the token allowed after a complete item, if any.
        model: if given, its generation config is checked: sampling (``do_sample=True``)
            would silently turn the constrained beam search into constrained sampling, so it is
            rejected.
    """

    def __init__(self, trie, prompt_length: int | None = None, eos_token_id: int | None = None, model=None):
        if not isinstance(trie, eager_ext.ItemTrie):
            raise TypeError(f"trie must be an eager_ext.ItemTrie, got {type(trie).__name__}")
        if model is not None:
            check_generation_config(model.generation_config)
        self.trie = trie
        self.prompt_length = prompt_length
        self.eos_token_id = eos_token_id
        self._edge_keys = None

    def __call__(self, input_ids: Tensor, scores: Tensor) -> Tensor:
        if self.trie.device != scores.device:
            self.trie = self.trie.to(scores.device)
            self._edge_keys = None
        if self.prompt_length is None:
            self.prompt_length = input_ids.shape[1]
        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] >= self.trie.depth and self.eos_token_id is None:
            raise ValueError(
                f"generation went past the item length ({self.trie.depth} tokens) and no eos_token_id "
                f"was given; pass max_new_tokens={self.trie.depth} or eos_token_id"
            )
        nodes = self._walk(generated)
        off_trie = nodes < 0
        finished = off_trie | (self.trie.leaf_items[nodes.clamp(min=0)] >= 0)
        eos_scores = scores[:, self.eos_token_id].clone() if self.eos_token_id is not None else None
        masked = eager_ext.trie_mask_(scores, nodes.clamp(min=0), self.trie)
        masked.masked_fill_(off_trie[:, None], float("-inf"))
        if eos_scores is not None:
            masked[:, self.eos_token_id] = torch.where(finished, eos_scores, masked[:, self.eos_token_id])
        return masked

    def _walk(self, generated: Tensor) -> Tensor:
        """Trie node of each row after its generated tokens; -1 once a row leaves the trie."""
        keys, multiplier = self._keys(generated.device)
        nodes = torch.zeros(generated.shape[0], dtype=torch.long, device=generated.device)
        for position in range(min(generated.shape[1], self.trie.depth)):
            query = nodes.clamp(min=0) * multiplier + generated[:, position].clamp(min=0, max=multiplier - 1)
            edge = torch.searchsorted(keys, query).clamp(max=keys.numel() - 1)
            found = (keys[edge] == query) & (nodes >= 0) & (generated[:, position] < multiplier)
            nodes = torch.where(found, self.trie.child_nodes[edge], -1)
        if generated.shape[1] > self.trie.depth:
            nodes = torch.full_like(nodes, -1)
        return nodes

    def _keys(self, device):
        """Edges sorted by (parent node, token) as one int64 key each: breadth-first numbering
        already orders them so, which makes a child lookup one searchsorted for all rows."""
        if self._edge_keys is None:
            offsets = self.trie.child_offsets
            counts = offsets[1:] - offsets[:-1]
            parents = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
            multiplier = self.trie.max_token + 1
            self._edge_keys = (parents * multiplier + self.trie.child_tokens, multiplier)
        return self._edge_keys


def check_generation_config(config) -> None:
    """Raises ValueError for settings that silently turn beam search into sampling."""
    if getattr(config, "do_sample", False):
        raise ValueError(
            "the model's generation config has do_sample=True, which turns constrained beam search "
            "into constrained sampling (temperature, top_k and top_p would then apply too); set "
            "model.generation_config.do_sample = False or pass a GenerationConfig with do_sample=False"
        )
