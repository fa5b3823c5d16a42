"""The EAGER-LLM model: index tokens in an HF causal LM plus the GCT decompression losses."""

from .eager import EagerConfig, EagerLLM, add_index_tokens

__all__ = ["EagerConfig", "EagerLLM", "add_index_tokens"]
