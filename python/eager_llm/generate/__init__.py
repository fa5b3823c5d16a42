"""Trie-constrained generation: every returned sequence is a real item."""

from .beam_search import constrained_beam_search, left_pad, position_constrained_beam_search
from .logits_processor import TrieLogitsProcessor, check_generation_config

__all__ = [
    "constrained_beam_search",
    "left_pad",
    "position_constrained_beam_search", "TrieLogitsProcessor", "check_generation_config"]
