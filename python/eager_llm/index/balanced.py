"""Balanced (equal-size) k-means: every cluster gets ``floor(N/k)`` or ``ceil(N/k)`` rows.

The assignment step is a greedy by regret with capacities, run in vectorised rounds: every
unassigned row proposes to its nearest open cluster; each cluster accepts the proposals of the
rows with the largest regret (distance to the second-nearest open cluster minus distance to the
nearest: what the row loses if turned away) up to its capacity; clusters that are full close.
Exactly ``N mod k`` clusters may take one row above ``floor(N/k)``; those extra places go, in
each round, to the waiting rows with the largest regret. A cluster that turns a row away is full
afterwards, so there are at most ``k + 1`` rounds.

Determinism: all orderings are stable sorts with the row index as the last key, and the initial
centroids come from the seeded :func:`~eager_llm.index.kmeans.kmeans`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import check_matrix, check_positive
from .kmeans import KMeansResult, cluster_means, kmeans, squared_distances


def _nearest_two(distances: Tensor) -> tuple[Tensor, Tensor]:
    """Column of each row's smallest entry (first on ties) and the regret (second minus first)."""
    best = distances.argmin(1)
    best_value = distances.gather(1, best[:, None]).squeeze(1)
    if distances.shape[1] == 1:
        return best, torch.full_like(best_value, float("inf"))
    second = distances.scatter(1, best[:, None], float("inf")).amin(1)
    return best, second - best_value


def _priority_order(rows: Tensor, regret: Tensor) -> Tensor:
    """Positions of ``rows`` sorted by regret, largest first, then by row index."""
    by_row = torch.argsort(rows, stable=True)
    return by_row[torch.argsort(-regret[by_row], stable=True)]


def balanced_assign(distances: Tensor) -> Tensor:
    """Assigns ``N`` rows to ``k`` clusters of sizes ``floor(N/k)`` or ``floor(N/k) + 1`` (exactly
    ``N mod k`` of the latter), greedily by regret; see the module docstring.

    Args:
        distances: ``[N, k]`` row-to-centroid distances (any monotone cost), ``k <= N``.

    Returns:
        ``[N]`` int64 cluster of each row.
    """
    if distances.dim() != 2 or distances.shape[1] < 1:
        raise ValueError(f"distances must have shape [N, k] with k >= 1, got {list(distances.shape)}")
    n, k = distances.shape
    if k > n:
        raise ValueError(f"distances has more clusters ({k}) than rows ({n})")
    base, extras = divmod(n, k)
    sizes = torch.zeros(k, dtype=torch.long)
    assignments = torch.full((n,), -1, dtype=torch.long)
    pending = torch.arange(n)
    is_open = torch.ones(k, dtype=torch.bool)
    distances = distances.cpu()
    while pending.numel():
        open_ids = is_open.nonzero().squeeze(1)
        local, regret = _nearest_two(distances[pending][:, open_ids])
        target = open_ids[local]
        # Proposals grouped by cluster, each group in priority order.
        order = _priority_order(pending, regret)
        order = order[torch.argsort(target[order], stable=True)]
        grouped = target[order]
        rank = torch.arange(order.numel()) - torch.searchsorted(grouped, grouped)
        regular = base - sizes[grouped]
        accepted = order[rank < regular]
        # At most one row per cluster is waiting for an extra place: the one just past its
        # regular capacity. The extra places go to the waiting rows of largest regret.
        waiting = order[rank == regular]
        if extras and waiting.numel():
            taken = waiting[_priority_order(pending[waiting], regret[waiting])][:extras]
            extras -= taken.numel()
            accepted = torch.cat([accepted, taken])
        assignments[pending[accepted]] = target[accepted]
        sizes += torch.bincount(target[accepted], minlength=k)
        is_open = (sizes < base) | ((sizes == base) & (extras > 0))
        keep = torch.ones(pending.numel(), dtype=torch.bool)
        keep[accepted] = False
        pending = pending[keep]
    return assignments


def balanced_kmeans(
    x: Tensor, k: int, *, seed: int = 0, max_iter: int = 20, kmeans_iter: int = 50
) -> KMeansResult:
    """k-means whose clusters all hold ``floor(N/k)`` or ``ceil(N/k)`` rows.

    Starts from (unconstrained) :func:`~eager_llm.index.kmeans.kmeans` centroids, then alternates
    :func:`balanced_assign` and the mean update until the assignment repeats or ``max_iter``
    rounds ran. The greedy assignment does not guarantee a monotone cost, so the result is the
    best (lowest inertia) balanced clustering seen, with its means as centroids.

    Args:
        x: ``[N, D]`` rows.
        k: clusters, ``1 <= k <= N``.
        seed: seeds the initial k-means.
        max_iter: most balanced assignment rounds (>= 1).
        kmeans_iter: ``max_iter`` of the initial k-means.
    """
    x = check_matrix(x, "x")
    check_positive(max_iter, "max_iter")
    if k == x.shape[0]:
        # One row per cluster is the only balanced clustering (inertia 0); number them by row.
        return KMeansResult(x.clone(), torch.arange(k, device=x.device), 0.0, [0.0], 0, True)
    centroids = kmeans(x, k, seed=seed, max_iter=kmeans_iter).centroids
    best, history, previous, converged = None, [], None, False
    for _ in range(max_iter):
        assignments = balanced_assign(squared_distances(x, centroids)).to(x.device)
        if previous is not None and torch.equal(assignments, previous):
            converged = True
            break
        centroids = cluster_means(x, assignments, k)[0].float()
        inertia = float((x - centroids[assignments]).pow(2).sum(dtype=torch.float64))
        history.append(inertia)
        if best is None or inertia < best.inertia:
            best = KMeansResult(centroids, assignments, inertia, history, len(history), False)
        previous = assignments
    best.inertia_history, best.iterations, best.converged = history, len(history), converged
    return best
