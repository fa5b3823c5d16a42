"""Explicit, deterministic collision policies: after them no two items share an index.

Two items *collide* when all their codes are equal. Within a group of colliding items the one
with the smallest item id (row) always keeps its codes; the others are resolved in item-id
order. Keeping the earliest item means that items added later can never disturb existing ones.

* ``"extra_level"``: append one disambiguation code to every item: 0, 1, 2, ... within each group
  of identical codes in item-id order, 0 for items without a collision.
* ``"reassign"``: give each later item of a group the nearest free code at the last level (by
  the quantizer's last-level distances, ties to the smaller code), where free means that no
  item holds the resulting full index. Items for which no free code exists (every code under
  their prefix is taken, or the distances are infinite) fall back to ``"extra_level"``: the
  column is appended to all items, with 0 for everyone else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Union

import torch
from torch import Tensor

from ._checks import check_codes

POLICIES = ("extra_level", "reassign")

# [N, K] last-level distances of every row, or a function of row ids [M] -> [M, K].
Distances = Union[Tensor, Callable[[Tensor], Tensor]]


@dataclass
class CollisionReport:
    """Collisions before and after a policy ran.

    ``items_*`` counts the items that belong to a group of two or more items with identical
    codes, ``groups_*`` the number of such groups.
    """

    policy: str
    items_before: int
    groups_before: int
    items_after: int
    groups_after: int
    reassigned: int = 0  # items that got another last-level code
    extra_level: bool = False  # whether a disambiguation column was appended

    def as_dict(self) -> dict:
        return asdict(self)


def collision_stats(codes: Tensor) -> tuple[int, int]:
    """``(items in a group of size > 1, number of such groups)`` for ``[N, L]`` codes."""
    codes = check_codes(codes, "codes")
    if codes.shape[0] == 0:
        return 0, 0
    _, inverse, counts = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
    shared = counts > 1
    return int(shared[inverse].sum()), int(shared.sum())


def check_policy(policy, name: str = "policy") -> str:
    """Returns ``policy`` if it is one of :data:`POLICIES`; the error names ``name``."""
    if policy not in POLICIES:
        raise ValueError(f"{name} must be one of {POLICIES}, got {policy!r}")
    return policy


def resolve_collisions(
    codes: Tensor, policy: str = "extra_level", last_level_distances: Distances | None = None
) -> tuple[Tensor, CollisionReport]:
    """Makes every row of ``codes`` unique with ``policy`` (see the module docstring).

    Args:
        codes: ``[N, L]`` int64 codes, row = item.
        policy: ``"extra_level"`` or ``"reassign"``.
        last_level_distances: for ``"reassign"``: an ``[N, K]`` tensor of distances from each
            item to each code of the last level (``inf`` where a code is not available to it), or
            a function that returns those rows for a tensor of row ids (only colliding rows are
            asked for).

    Returns:
        The resolved codes (``[N, L]``, or ``[N, L + 1]`` with a disambiguation column) and a
        :class:`CollisionReport`. Rows without a collision keep their codes.
    """
    codes = check_codes(codes, "codes")
    check_policy(policy)
    items_before, groups_before = collision_stats(codes)
    reassigned = 0
    if policy == "reassign":
        if last_level_distances is None:
            raise ValueError("last_level_distances is required for policy='reassign'")
        resolved, unresolved = reassign_last_level(codes, last_level_distances)
        reassigned = int((resolved != codes).any(1).sum())
        append = bool(unresolved.any())
    else:
        resolved, append = codes, True
    if append:
        resolved = torch.cat([resolved, extra_level_codes(resolved)[:, None]], 1)
    items_after, groups_after = collision_stats(resolved)
    report = CollisionReport(policy, items_before, groups_before, items_after, groups_after, reassigned, append)
    return resolved, report


def extra_level_codes(codes: Tensor, fixed: Tensor | None = None) -> Tensor:
    """``[N]`` disambiguation codes: for each row, the smallest code that no earlier row with the
    same ``codes`` holds (so 0, 1, 2, ... in item-id order within a group, 0 without collision).

    Args:
        codes: ``[N, L]`` codes.
        fixed: optional disambiguation codes of the first ``M`` rows, which are kept as given.
    """
    extra = torch.zeros(codes.shape[0], dtype=torch.long)
    start = 0 if fixed is None else fixed.numel()
    if start:
        extra[:start] = fixed.cpu()
    if codes.shape[0] == 0:
        return extra
    _, inverse, counts = torch.unique(codes.cpu(), dim=0, return_inverse=True, return_counts=True)
    used: dict[int, set[int]] = {}
    for row in (counts[inverse] > 1).nonzero().squeeze(1).tolist():
        group = used.setdefault(int(inverse[row]), set())
        if row >= start:
            code = 0
            while code in group:
                code += 1
            extra[row] = code
        group.add(int(extra[row]))
    return extra


def reassign_last_level(codes: Tensor, distances: Distances, start: int = 0) -> tuple[Tensor, Tensor]:
    """Moves each row (from ``start`` on) whose codes an earlier row already holds to the nearest
    last-level code that makes its index free; rows before ``start`` never change.

    Returns:
        The new codes and an ``[N]`` bool mask of the rows that had to move but found no free code
        (they keep their codes).
    """
    codes = codes.cpu().clone()
    unresolved = torch.zeros(codes.shape[0], dtype=torch.bool)
    movers = _later_duplicates(codes, start)
    if movers.numel() == 0:
        return codes, unresolved
    rows = distances(movers) if callable(distances) else distances[movers]
    rows = rows.cpu()
    if rows.dim() != 2 or rows.shape[0] != movers.numel():
        raise ValueError(f"last_level_distances must give one row per item, got shape {list(rows.shape)}")
    occupied = set(map(tuple, codes.tolist()))
    for mover, row_distances in zip(movers.tolist(), rows):
        prefix = tuple(codes[mover, :-1].tolist())
        code = _nearest_free(prefix, row_distances, occupied)
        if code is None:
            unresolved[mover] = True
        else:
            occupied.add(prefix + (code,))
            codes[mover, -1] = code
    return codes, unresolved


def _nearest_free(prefix: tuple, distances: Tensor, occupied: set) -> int | None:
    """The finite-distance last-level code nearest first (ties to the smaller code) whose full
    index ``prefix + (code,)`` is not occupied, or None."""
    for code in torch.argsort(distances, stable=True).tolist():
        if distances[code] == float("inf"):
            return None
        if prefix + (code,) not in occupied:
            return code
    return None


def _later_duplicates(codes: Tensor, start: int) -> Tensor:
    """Rows (>= start, ascending) whose codes also belong to an earlier row."""
    _, inverse = torch.unique(codes, dim=0, return_inverse=True)
    first = torch.full((codes.shape[0],), codes.shape[0], dtype=torch.long)  # >= number of groups
    first.scatter_reduce_(0, inverse, torch.arange(codes.shape[0]), "amin")
    rows = torch.arange(codes.shape[0])
    return rows[(first[inverse] != rows) & (rows >= start)]
