"""Plain-torch implementations of every eager_ext op.

They define what the kernels compute: the tests compare the kernels against them, and the
benchmarks time the kernels against them. They favour obviousness over speed and memory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def rq_encode(x: Tensor, codebooks: Tensor) -> tuple[Tensor, Tensor]:
    """Residual quantization with ``torch.cdist`` + ``argmin`` per level (float32)."""
    residual = x.float()
    codes = []
    for centroids in codebooks.float():
        # argmin returns the first minimum, i.e. ties go to the smaller index.
        nearest = torch.cdist(residual, centroids).argmin(dim=1)
        codes.append(nearest)
        residual = residual - centroids[nearest]
    codes = torch.stack(codes, dim=1) if codes else x.new_empty((x.shape[0], 0), dtype=torch.long)
    return codes, residual.pow(2).sum(dim=1)


def summary_gather(hidden: Tensor, positions: Tensor) -> Tensor:
    """``hidden[b, positions[b]]`` by advanced indexing."""
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), positions]


def gathered_infonce(
    query: Tensor,
    table: Tensor,
    positive_ids: Tensor,
    negative_ids: Tensor,
    temperature: float,
    valid: Tensor | None = None,
) -> Tensor:
    """InfoNCE with the negatives gathered into an ``[M, E]`` tensor and one matmul."""
    q = F.normalize(query.float(), dim=-1)
    positives = F.normalize(table[positive_ids].float(), dim=-1)
    negatives = F.normalize(table[negative_ids].float(), dim=-1)
    logits = torch.cat([(q * positives).sum(-1, keepdim=True), q @ negatives.T], dim=1)
    target = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
    per_row = F.cross_entropy(logits / temperature, target, reduction="none")
    if valid is None:
        valid = torch.ones(query.shape[0], dtype=torch.bool, device=query.device)
    return (per_row * valid).sum() / valid.sum().clamp(min=1)
