"""Both exogenous embeddings of a dataset, cached on disk (METHOD.md section 2)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor

from ..data import Dataset, Split
from .behavior import BehaviorConfig, BehaviorResult, train_behavior_model
from .cache import cached_embeddings
from .semantic import TextEncoderConfig, describe, encode_items


@dataclass
class ItemEmbeddings:
    """Row i - 1 of each table is item i. ``behavior_result`` is None when the behavior table
    came from the cache (its metrics were recorded by the run that computed it)."""

    semantic: Tensor
    behavior: Tensor
    behavior_result: BehaviorResult | None
    semantic_cached: bool
    behavior_cached: bool


def build_item_embeddings(dataset: Dataset, split: Split, behavior: BehaviorConfig | None = None,
                          text: TextEncoderConfig | None = None, cache_dir: str | None = None,
                          progress: bool = True) -> ItemEmbeddings:
    """Semantic embeddings of the item text and behavior embeddings of a sequential model
    trained on ``split``'s training part. With ``cache_dir``, each table is stored under a key
    of everything that determines it (encoder or model config, fields, data fingerprint), so a
    changed input recomputes instead of reusing stale vectors."""
    behavior = behavior or BehaviorConfig()
    text = text or TextEncoderConfig()
    fingerprint = dataset.fingerprint()
    results = {}

    def train() -> Tensor:
        results["behavior"] = train_behavior_model(split, dataset.num_items, behavior, progress=progress)
        return results["behavior"].item_embeddings

    behavior_table, behavior_cached = cached_embeddings(
        cache_dir, "behavior", {"config": asdict(behavior), "data": fingerprint}, train)
    semantic_table, semantic_cached = cached_embeddings(
        cache_dir, "semantic", {**describe(text), "data": fingerprint},
        lambda: encode_items(dataset.item_text, text, progress=progress))
    return ItemEmbeddings(semantic_table, behavior_table, results.get("behavior"), semantic_cached, behavior_cached)
