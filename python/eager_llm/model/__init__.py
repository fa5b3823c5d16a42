"""The EAGER-LLM model: index tokens in an HF causal LM plus the GCT decompression losses, and the
whole recommender with save_pretrained / from_pretrained."""

from .eager import EagerConfig, EagerLLM, add_index_tokens, per_sample_lm_loss
from .recommender import Recommender

__all__ = ["EagerConfig", "EagerLLM", "Recommender", "add_index_tokens", "per_sample_lm_loss"]
