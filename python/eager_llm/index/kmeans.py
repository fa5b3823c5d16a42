"""k-means: k-means++ seeding and Lloyd iterations whose assignment step is ``eager_ext.rq_encode``.

Determinism: the only randomness is a ``torch.Generator`` seeded with ``seed`` (k-means++ draws);
``rq_encode`` is deterministic regardless of thread count and breaks ties towards the smaller
centroid index; the centroid sums are accumulated with ``index_add_`` in float64, which on the
CPU adds rows in index order. So the same inputs, seed and build give bitwise equal results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

import eager_ext

from ._checks import check_matrix, check_positive


@dataclass
class KMeansResult:
    """The outcome of :func:`kmeans` (and of :func:`~eager_llm.index.balanced.balanced_kmeans`).

    Attributes:
        centroids: ``[k, D]`` float32.
        assignments: ``[N]`` int64 cluster of each row.
        inertia: sum of squared distances of the rows to their assigned centroids.
        inertia_history: the inertia after the initial assignment and after each iteration.
        iterations: update steps run.
        converged: whether the stopping rule (not ``max_iter``) ended the loop.
        reseeded: how many times an empty cluster was given a new centroid.
    """

    centroids: Tensor
    assignments: Tensor
    inertia: float
    inertia_history: list[float]
    iterations: int
    converged: bool
    reseeded: int = 0


def nearest(x: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest centroid of each row (ties to the smaller index) and its squared distance."""
    codes, sq_dist = eager_ext.rq_encode(x, centroids[None].contiguous())
    return codes[:, 0], sq_dist


def squared_distances(x: Tensor, centroids: Tensor) -> Tensor:
    """``[N, K]`` squared Euclidean distances by one matmul, clamped at 0 (rounding can dip below)."""
    x_sq = x.pow(2).sum(1, keepdim=True)
    c_sq = centroids.pow(2).sum(1)
    return torch.addmm(c_sq, x, centroids.T, alpha=-2).add_(x_sq).clamp_(min=0)


def kmeans_plusplus(x: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding: each next centroid is a row drawn with probability proportional to its
    squared distance to the nearest centroid chosen so far. Returns ``[k, D]`` float32.

    When every row already coincides with a chosen centroid (fewer distinct rows than ``k``) the
    draw is uniform; the duplicate centroids then stay empty, which :func:`kmeans` tolerates.
    """
    x = check_matrix(x, "x")
    n = x.shape[0]
    check_positive(k, "k")
    if k > n:
        raise ValueError(f"k ({k}) exceeds the number of rows of x ({n})")
    x_sq = x.pow(2).sum(1)
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    closest = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
    for _ in range(1, k):
        last = x[chosen[-1]]
        dist = (x_sq - 2 * (x @ last) + last.dot(last)).clamp_(min=0).double()
        closest = torch.minimum(closest, dist)
        closest[chosen[-1]] = 0  # exact zero: a chosen row can never be drawn again by rounding
        total = float(closest.sum())
        if total > 0:
            u = torch.rand((), generator=generator, dtype=torch.float64) * total
            cumulative = closest.cpu().cumsum(0)
            # right=True: the first row whose cumulative weight exceeds u, so zero-weight rows
            # (already chosen) are never picked; the clamp guards rounding at the far end.
            pick = min(int(torch.searchsorted(cumulative, u, right=True)), n - 1)
        else:
            pick = int(torch.randint(n, (1,), generator=generator))
        chosen.append(pick)
    return x[torch.tensor(chosen, device=x.device)].clone()


def cluster_means(x: Tensor, assignments: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """float64 ``[k, D]`` means of the rows of each cluster (0 for empty ones) and ``[k]`` counts."""
    sums = torch.zeros(k, x.shape[1], dtype=torch.float64, device=x.device)
    sums.index_add_(0, assignments, x.double())
    counts = torch.bincount(assignments, minlength=k)
    return sums / counts.clamp(min=1)[:, None], counts


def _reseed_empty(x: Tensor, assignments: Tensor, centroids: Tensor, counts: Tensor) -> int:
    """Moves each empty cluster's centroid onto one of the rows farthest from their own centroid
    (ties to the smaller row index), in place; returns how many were moved.

    Each moved row then sits at distance 0 from a centroid, so the inertia strictly drops and the
    Lloyd loop stays monotone. Rows already at distance 0 are never used: moving them would not
    lower the inertia and could make two clusters trade the same duplicate rows for ever.
    """
    empty = (counts == 0).nonzero().squeeze(1)
    if empty.numel() == 0:
        return 0
    dist = (x - centroids[assignments]).pow(2).sum(1)
    order = torch.argsort(dist, descending=True, stable=True)
    candidates = order[dist[order] > 0][: empty.numel()]
    centroids[empty[: candidates.numel()]] = x[candidates]
    return int(candidates.numel())


def kmeans(
    x: Tensor,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 100,
    tol: float = 1e-6,
    init: Tensor | None = None,
) -> KMeansResult:
    """Lloyd's k-means with k-means++ seeding.

    Each iteration sets every centroid to the mean of its rows, re-seeds empty clusters with the
    farthest rows, and re-assigns every row to its nearest centroid (``rq_encode``). The inertia
    never increases. The loop stops when an iteration re-seeded nothing and lowered the inertia by
    at most ``tol`` times its previous value (in particular when no assignment changed), or after
    ``max_iter`` iterations. The returned assignments are always the nearest centroids of the
    returned centroids.

    Args:
        x: ``[N, D]`` floating-point rows.
        k: clusters, ``1 <= k <= N``.
        seed: seeds the k-means++ draws.
        max_iter: most update steps (>= 0).
        tol: relative inertia decrease below which the loop stops (>= 0).
        init: optional ``[k, D]`` initial centroids instead of k-means++.
    """
    x = check_matrix(x, "x")
    check_positive(k, "k")
    if k > x.shape[0]:
        raise ValueError(f"k ({k}) exceeds the number of rows of x ({x.shape[0]})")
    check_positive(max_iter, "max_iter", minimum=0)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if init is None:
        centroids = kmeans_plusplus(x, k, torch.Generator().manual_seed(int(seed)))
    else:
        centroids = check_matrix(init, "init").to(x.device).clone()
        if centroids.shape != (k, x.shape[1]):
            raise ValueError(f"init must have shape [k, D] = {[k, x.shape[1]]}, got {list(centroids.shape)}")
    assignments, sq_dist = nearest(x, centroids)
    history = [float(sq_dist.sum(dtype=torch.float64))]
    reseeded, converged, iterations = 0, False, 0
    while iterations < max_iter:
        iterations += 1
        means, counts = cluster_means(x, assignments, k)
        # Empty clusters keep their old centroid unless a row can be moved onto them.
        centroids = torch.where(counts[:, None] > 0, means.float(), centroids)
        moved = _reseed_empty(x, assignments, centroids, counts)
        reseeded += moved
        assignments, sq_dist = nearest(x, centroids)
        history.append(float(sq_dist.sum(dtype=torch.float64)))
        if moved == 0 and history[-2] - history[-1] <= tol * history[-2]:
            converged = True
            break
    return KMeansResult(centroids, assignments, history[-1], history, iterations, converged, reseeded)
