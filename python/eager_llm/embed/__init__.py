"""Item embeddings: behavior (sequential recommenders trained on the interactions) and
semantic (text encoders over item fields), with an on-disk cache."""

from .behavior import BehaviorConfig, BehaviorResult, popularity_metrics, train_behavior_model
from .cache import cached_embeddings
from .pipeline import ItemEmbeddings, build_item_embeddings
from .semantic import TextEncoderConfig, encode_items, hashed_bag_of_words

__all__ = [
    "BehaviorConfig",
    "BehaviorResult",
    "ItemEmbeddings",
    "TextEncoderConfig",
    "build_item_embeddings",
    "cached_embeddings",
    "encode_items",
    "hashed_bag_of_words",
    "popularity_metrics",
    "train_behavior_model",
]
