"""Full-ranking metrics with one target per user."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def hit_ranks(ranked_items: Tensor, targets: Tensor) -> Tensor:
    """1-based rank of each user's target in its ranked list, 0 where it is absent.
    Entries of -1 (no item) never match."""
    if ranked_items.dim() != 2 or targets.dim() != 1 or ranked_items.shape[0] != targets.shape[0]:
        raise ValueError(
            f"ranked_items must be [users, k] and targets [users], got {tuple(ranked_items.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if bool((targets < 0).any()):
        raise ValueError("targets must be item ids >= 0")
    hits = ranked_items == targets[:, None]
    first = hits.int().argmax(dim=1) + 1
    return torch.where(hits.any(dim=1), first, 0)


def ranking_metrics(ranked_items: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5, 10, 20)) -> dict[str, float]:
    """Recall@k (= HR@k with one target) and NDCG@k (1 / log2(rank + 1) for a hit at 1-based
    rank <= k), averaged over all users. A list shorter than k counts what it has."""
    ranks = hit_ranks(ranked_items, targets).double()
    users = max(ranks.numel(), 1)
    metrics = {}
    for k in ks:
        if k < 1:
            raise ValueError(f"every k must be >= 1, got {k}")
        hit = (ranks >= 1) & (ranks <= k)
        metrics[f"recall@{k}"] = float(hit.sum()) / users
        metrics[f"ndcg@{k}"] = float((hit / torch.log2(ranks + 1).clamp(min=1)).sum()) / users
    return metrics


__all__ = ["hit_ranks", "ranking_metrics"]
