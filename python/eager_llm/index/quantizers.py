"""Quantizers that turn item embeddings into short code sequences.

* :class:`RQKMeansQuantizer`: residual k-means, one codebook per level.
* :class:`BalancedTreeQuantizer`: the balanced hierarchical k-means tree of the released EAGER
  code (last code = the item's slot in its cluster), or with real sub-clusters at every level.

Both share one interface: ``fit(x, seed)``, ``encode(x)`` for any rows with the frozen model,
``codebook_sizes``, ``reconstruct(codes)``, ``quantization_error(x, codes)``,
``last_level_distances(x, codes)`` (for collision re-assignment), ``assign_new(x, taken)`` (codes
for items added after fitting) and ``state()`` / :func:`quantizer_from_state` for saving.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

import eager_ext

from ._checks import check_codes, check_dim, check_matrix, check_positive, derive_seed
from .balanced import balanced_kmeans
from .kmeans import kmeans, nearest, squared_distances

QUANTIZER_KINDS = ("rq_kmeans", "balanced_tree", "balanced_tree_sub")


class Quantizer(ABC):
    """Interface of the quantizers; see the module docstring.

    After ``fit``, ``train_codes`` ``[N, L]`` holds the codes of the fitted rows. For the
    balanced tree they come from the capacity-constrained assignment, which ``encode`` (nearest
    centroid, no capacities) does not reproduce, so index builders must use ``train_codes``.
    """

    kind: str
    train_codes: Tensor | None = None
    dim: int | None = None  # embedding width; None until fitted

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    @abstractmethod
    def codebook_sizes(self) -> list[int]:
        """Number of codes at each level."""

    @abstractmethod
    def fit(self, x: Tensor, seed: int = 0) -> "Quantizer":
        """Fits on ``[N, D]`` rows, deterministically for ``seed``; returns ``self``."""

    @abstractmethod
    def encode(self, x: Tensor) -> Tensor:
        """``[N, levels]`` int64 codes of any rows with the frozen model."""

    @abstractmethod
    def reconstruct(self, codes: Tensor) -> Tensor:
        """``[N, D]`` approximation of the rows that have ``codes``."""

    @abstractmethod
    def last_level_distances(self, x: Tensor, codes: Tensor) -> Tensor:
        """``[N, K_last]`` squared distances of each row to each last-level code given its other
        codes (``inf`` for codes that do not exist there), for collision re-assignment."""

    @abstractmethod
    def state(self) -> tuple[dict, dict[str, Tensor]]:
        """JSON-able settings and the tensors that :func:`quantizer_from_state` rebuilds from."""

    def assign_new(self, x: Tensor, taken: Tensor) -> Tensor:
        """Codes for items that arrive after fitting, given the codes ``taken`` ``[M, L]`` that
        items already hold. Only the slot variant of the tree needs ``taken``; the others encode."""
        return self.encode(x)

    def squared_errors(self, x: Tensor, codes: Tensor | None = None) -> Tensor:
        """``[N]`` float32 ``||x - reconstruct(codes)||^2`` per row (codes default to ``encode(x)``)."""
        x = self._check_input(x, "x")
        codes = self.encode(x) if codes is None else self._check_codes(codes, x.shape[0])
        return (x - self.reconstruct(codes).to(x.device)).pow(2).sum(1).cpu()

    def quantization_error(self, x: Tensor, codes: Tensor | None = None) -> float:
        """Mean over rows of ``||x - reconstruct(codes)||^2`` (codes default to ``encode(x)``)."""
        return float(self.squared_errors(x, codes).mean(dtype=torch.float64))

    def _check_fitted(self) -> None:
        if self.dim is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x) first")

    def _check_input(self, x, name: str) -> Tensor:
        self._check_fitted()
        x = check_matrix(x, name)
        check_dim(x, self.dim, name)
        return x

    def _check_codes(self, codes, rows: int | None = None, name: str = "codes") -> Tensor:
        """``codes`` as int64 ``[rows, levels]`` (any number of rows if ``rows`` is None), CPU."""
        self._check_fitted()
        codes = check_codes(codes, name)
        if codes.shape[1] != self.levels or (rows is not None and codes.shape[0] != rows):
            expected = f"[{'N' if rows is None else rows}, {self.levels}]"
            raise ValueError(f"{name} must have shape {expected}, got {list(codes.shape)}")
        if codes.numel() and bool((codes >= torch.tensor(self.codebook_sizes)).any()):
            raise ValueError(f"{name} exceed the codebook sizes {self.codebook_sizes}")
        return codes


class RQKMeansQuantizer(Quantizer):
    """Residual k-means: level ``l`` is k-means on what levels ``0..l-1`` left unexplained.

    Args:
        codebook_size: codes per level (<= number of fitted rows).
        levels: number of levels (>= 1).
        max_iter: Lloyd iterations per level.
    """

    kind = "rq_kmeans"

    def __init__(self, codebook_size: int = 256, levels: int = 3, max_iter: int = 100):
        self.codebook_size = check_positive(codebook_size, "codebook_size")
        self.num_levels = check_positive(levels, "levels")
        self.max_iter = check_positive(max_iter, "max_iter", minimum=0)
        self.codebooks: Tensor | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size] * self.num_levels

    def fit(self, x: Tensor, seed: int = 0) -> "RQKMeansQuantizer":
        """Fits one k-means per level on the residuals, each seeded from ``(seed, level)``."""
        x = check_matrix(x, "x")
        if self.codebook_size > x.shape[0]:
            raise ValueError(f"codebook_size ({self.codebook_size}) exceeds the number of items ({x.shape[0]})")
        residual, codebooks = x, []
        for level in range(self.num_levels):
            result = kmeans(residual, self.codebook_size, seed=derive_seed(seed, level), max_iter=self.max_iter)
            codebooks.append(result.centroids)
            residual = residual - result.centroids[result.assignments]
        self.codebooks = torch.stack(codebooks)
        self.dim = x.shape[1]
        self.train_codes = self.encode(x)
        return self

    def encode(self, x: Tensor) -> Tensor:
        """``[N, levels]`` codes: the nearest centroid of the running residual at each level."""
        x = self._check_input(x, "x")
        return eager_ext.rq_encode(x, self.codebooks.to(x.device))[0]

    def reconstruct(self, codes: Tensor) -> Tensor:
        """Sum over levels of the chosen centroids, ``[N, D]``."""
        codes = self._check_codes(codes)
        levels = torch.arange(self.num_levels)
        return self.codebooks[levels, codes].sum(1)

    def last_level_distances(self, x: Tensor, codes: Tensor) -> Tensor:
        """``[N, codebook_size]`` squared distances from the residual left by all levels but the
        last to each centroid of the last codebook."""
        x = self._check_input(x, "x")
        codes = self._check_codes(codes, x.shape[0])
        prefix = self.codebooks[torch.arange(self.num_levels - 1), codes[:, :-1]].sum(1)
        return squared_distances(x - prefix.to(x.device), self.codebooks[-1].to(x.device))

    def state(self) -> tuple[dict, dict[str, Tensor]]:
        self._check_fitted()
        meta = {"kind": self.kind, "codebook_size": self.codebook_size, "levels": self.num_levels,
                "max_iter": self.max_iter, "dim": self.dim}
        return meta, {"codebooks": self.codebooks, "train_codes": self.train_codes}

    @classmethod
    def _from_state(cls, meta: dict, tensors: dict[str, Tensor]) -> "RQKMeansQuantizer":
        quantizer = cls(meta["codebook_size"], meta["levels"], meta["max_iter"])
        quantizer.codebooks, quantizer.train_codes = tensors["codebooks"], tensors["train_codes"]
        quantizer.dim = meta["dim"]
        return quantizer


class BalancedTreeQuantizer(Quantizer):
    """Balanced hierarchical k-means tree.

    Level 1 is balanced k-means over all items with ``branch`` clusters (sizes
    ``floor/ceil(N / branch)``); each deeper level splits every cluster by balanced k-means into
    ``min(branch, cluster size)`` sub-clusters.

    ``sub_cluster=False`` is the released EAGER variant: levels ``1..levels-1`` are clusters and
    the last code is only the item's slot in its cluster (its rank in item-id order), which
    never collides but carries no meaning. ``sub_cluster=True`` makes every level, the last one
    included, a real sub-cluster (items that share a leaf then collide; see
    :mod:`~eager_llm.index.collisions`).

    New items (``encode``/``assign_new``) follow the nearest centroid at each level; capacities do
    not apply. In the slot variant a new item takes the next free slot of its cluster; if that
    cluster already has ``branch`` items it goes to the nearest cluster (by centroid) that still
    has a free slot.

    Args:
        branch: clusters per node and codes per level (>= 2).
        levels: code length (>= 1 with sub-clusters, >= 2 for the slot variant).
        sub_cluster: real sub-clusters at the last level instead of slots.
        max_iter: balanced assignment rounds per node.
        kmeans_iter: Lloyd iterations of the k-means that starts each node.
    """

    def __init__(self, branch: int = 256, levels: int = 2, sub_cluster: bool = False,
                 max_iter: int = 20, kmeans_iter: int = 50):
        self.branch = check_positive(branch, "branch", minimum=2)
        self.num_levels = check_positive(levels, "levels", minimum=1 if sub_cluster else 2)
        self.sub_cluster = bool(sub_cluster)
        self.max_iter = check_positive(max_iter, "max_iter")
        self.kmeans_iter = check_positive(kmeans_iter, "kmeans_iter", minimum=0)
        self.kind = "balanced_tree_sub" if self.sub_cluster else "balanced_tree"
        # centroids[l]: [nodes at level l, D]; child_offsets[l][p]..[p+1]: the level-l children
        # of node p of level l-1 (level 0 has the root as its only parent).
        self.centroids: list[Tensor] = []
        self.child_offsets: list[Tensor] = []

    @property
    def cluster_levels(self) -> int:
        """Levels that are real clusters (all, or all but the slot level)."""
        return self.num_levels if self.sub_cluster else self.num_levels - 1

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.branch] * self.num_levels

    def fit(self, x: Tensor, seed: int = 0) -> "BalancedTreeQuantizer":
        """Builds the tree level by level; node ``p`` of level ``l`` is seeded from ``(seed, l, p)``."""
        x = check_matrix(x, "x")
        if self.branch > x.shape[0]:
            raise ValueError(f"branch ({self.branch}) exceeds the number of items ({x.shape[0]})")
        if not self.sub_cluster and x.shape[0] > self.branch**self.num_levels:
            # Exact, as balanced clusters hold floor/ceil of their parent's share: no leaf then
            # holds more than branch items. Checked before minutes of clustering.
            raise ValueError(
                f"{x.shape[0]} items do not fit a slot tree of branch={self.branch} and "
                f"levels={self.num_levels} (at most branch**levels = {self.branch**self.num_levels}): "
                "raise levels or branch (an index config's codebook_size)"
            )
        self.centroids, self.child_offsets = [], []
        nodes = torch.zeros(x.shape[0], dtype=torch.long)
        codes = []
        for level in range(self.cluster_levels):
            level_codes, nodes = self._fit_level(x, nodes, derive_seed(seed, level))
            codes.append(level_codes)
        if not self.sub_cluster:
            codes.append(_rank_within_groups(nodes))  # fits: checked above
        self.dim = x.shape[1]
        self.train_codes = torch.stack(codes, 1)
        return self

    def _fit_level(self, x: Tensor, parents: Tensor, seed: int) -> tuple[Tensor, Tensor]:
        """Splits every parent's items; returns their codes and node ids at the new level."""
        codes = torch.empty_like(parents)
        centroids, offsets = [], [0]
        for parent, members in enumerate(_group_rows(parents)):
            k = min(self.branch, members.numel())
            result = balanced_kmeans(x[members], k, seed=derive_seed(seed, parent),
                                     max_iter=self.max_iter, kmeans_iter=self.kmeans_iter)
            codes[members] = result.assignments.cpu()
            centroids.append(result.centroids.cpu())
            offsets.append(offsets[-1] + k)
        self.centroids.append(torch.cat(centroids))
        self.child_offsets.append(torch.tensor(offsets))
        return codes, self.child_offsets[-1][parents] + codes

    def _descend(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest-centroid path of each row: codes ``[N, cluster_levels]`` and leaf node ids."""
        nodes = torch.zeros(x.shape[0], dtype=torch.long)
        codes = []
        for centroids, offsets in zip(self.centroids, self.child_offsets):
            level_codes = torch.empty_like(nodes)
            for members in _group_rows(nodes):
                parent = int(nodes[members[0]])
                children = centroids[offsets[parent] : offsets[parent + 1]].to(x.device)
                level_codes[members] = nearest(x[members], children)[0].cpu()
            codes.append(level_codes)
            nodes = offsets[nodes] + level_codes
        return torch.stack(codes, 1), nodes

    def _nodes_of(self, cluster_codes: Tensor) -> Tensor:
        """Node reached by each row of ``[N, d]`` cluster codes: a node of level ``d - 1``, or
        the root (0) when ``d`` is 0."""
        nodes = torch.zeros(cluster_codes.shape[0], dtype=torch.long)
        for level in range(cluster_codes.shape[1]):
            offsets = self.child_offsets[level]
            children = offsets[nodes + 1] - offsets[nodes]
            if bool((cluster_codes[:, level] >= children).any()):
                raise ValueError(f"codes name a cluster that does not exist at level {level}")
            nodes = offsets[nodes] + cluster_codes[:, level]
        return nodes

    def _path_of(self, leaf: int) -> list[int]:
        """Cluster codes leading to node ``leaf`` of the deepest cluster level."""
        path = []
        for offsets in reversed(self.child_offsets):
            parent = int(torch.searchsorted(offsets, leaf, right=True)) - 1
            path.append(leaf - int(offsets[parent]))
            leaf = parent
        return path[::-1]

    def encode(self, x: Tensor) -> Tensor:
        """``[N, levels]`` codes of new rows with the frozen tree (see the class docstring); in the
        slot variant the slots start after those of the fitted items."""
        return self.assign_new(x, self.train_codes)

    def assign_new(self, x: Tensor, taken: Tensor) -> Tensor:
        """Nearest-centroid paths; in the slot variant, slots after the largest one in ``taken``
        within each cluster (see the class docstring)."""
        x = self._check_input(x, "x")
        codes, leaves = self._descend(x)
        if self.sub_cluster:
            return codes
        taken = self._check_codes(taken, name="taken")
        return self._assign_slots(x, codes, leaves, taken)

    def _assign_slots(self, x: Tensor, codes: Tensor, leaves: Tensor, taken: Tensor) -> Tensor:
        """Next free slots in row order; rows whose leaf is full go to the nearest leaf with room."""
        num_leaves = self.centroids[-1].shape[0]
        next_free = torch.zeros(num_leaves, dtype=torch.long)
        taken_leaves = self._nodes_of(taken[:, :-1])
        next_free.scatter_reduce_(0, taken_leaves, taken[:, -1] + 1, "amax")
        slots = next_free[leaves] + _rank_within_groups(leaves)
        next_free = torch.minimum(next_free + torch.bincount(leaves, minlength=num_leaves),
                                  torch.tensor(self.branch))
        codes = torch.cat([codes, slots[:, None]], 1)
        for row in (slots >= self.branch).nonzero().squeeze(1).tolist():
            distances = squared_distances(x[row : row + 1], self.centroids[-1].to(x.device))[0].cpu()
            distances[next_free >= self.branch] = float("inf")
            leaf = int(distances.argmin())
            if distances[leaf] == float("inf"):
                raise ValueError(f"no free slot left for new items: all {num_leaves} clusters are full")
            codes[row] = torch.tensor(self._path_of(leaf) + [int(next_free[leaf])])
            next_free[leaf] += 1
        return codes

    def reconstruct(self, codes: Tensor) -> Tensor:
        """Centroid of each row's deepest cluster (the slot level, if any, adds nothing)."""
        codes = self._check_codes(codes)
        return self.centroids[-1][self._nodes_of(codes[:, : self.cluster_levels])]

    def last_level_distances(self, x: Tensor, codes: Tensor) -> Tensor:
        """``[N, branch]`` squared distances from each row to the children of its parent at the last
        level (``inf`` for codes the parent does not have). Slots carry no meaning, so in the slot
        variant all distances are 0 and the smallest free slot is the nearest."""
        x = self._check_input(x, "x")
        codes = self._check_codes(codes, x.shape[0])
        if not self.sub_cluster:
            return torch.zeros(x.shape[0], self.branch)
        distances = torch.full((x.shape[0], self.branch), float("inf"))
        parents = self._nodes_of(codes[:, :-1])
        offsets = self.child_offsets[-1]
        for members in _group_rows(parents):
            parent = int(parents[members[0]])
            children = self.centroids[-1][offsets[parent] : offsets[parent + 1]].to(x.device)
            distances[members, : children.shape[0]] = squared_distances(x[members], children).cpu()
        return distances

    def state(self) -> tuple[dict, dict[str, Tensor]]:
        self._check_fitted()
        meta = {"kind": self.kind, "branch": self.branch, "levels": self.num_levels,
                "max_iter": self.max_iter, "kmeans_iter": self.kmeans_iter, "dim": self.dim}
        tensors = {"train_codes": self.train_codes}
        for level, (centroids, offsets) in enumerate(zip(self.centroids, self.child_offsets)):
            tensors[f"centroids.{level}"] = centroids
            tensors[f"child_offsets.{level}"] = offsets
        return meta, tensors

    @classmethod
    def _from_state(cls, meta: dict, tensors: dict[str, Tensor]) -> "BalancedTreeQuantizer":
        quantizer = cls(meta["branch"], meta["levels"], meta["kind"] == "balanced_tree_sub",
                        meta["max_iter"], meta["kmeans_iter"])
        levels = range(quantizer.cluster_levels)
        quantizer.centroids = [tensors[f"centroids.{level}"] for level in levels]
        quantizer.child_offsets = [tensors[f"child_offsets.{level}"] for level in levels]
        quantizer.train_codes, quantizer.dim = tensors["train_codes"], meta["dim"]
        return quantizer


def _group_rows(groups: Tensor) -> list[Tensor]:
    """Row indices of each distinct value of ``groups``, by increasing value, rows ascending."""
    order = torch.argsort(groups, stable=True)
    counts = torch.unique_consecutive(groups[order], return_counts=True)[1]
    return list(torch.split(order, counts.tolist()))


def _rank_within_groups(groups: Tensor) -> Tensor:
    """For each row, how many earlier rows share its group value."""
    order = torch.argsort(groups, stable=True)
    sorted_groups = groups[order]
    ranks = torch.empty_like(groups)
    ranks[order] = torch.arange(groups.numel()) - torch.searchsorted(sorted_groups, sorted_groups)
    return ranks


def make_quantizer(kind: str, levels: int, codebook_size: int) -> Quantizer:
    """A quantizer of ``kind`` (one of :data:`QUANTIZER_KINDS`) with ``levels`` levels of
    ``codebook_size`` codes."""
    if kind == "rq_kmeans":
        return RQKMeansQuantizer(codebook_size=codebook_size, levels=levels)
    if kind in ("balanced_tree", "balanced_tree_sub"):
        return BalancedTreeQuantizer(branch=codebook_size, levels=levels, sub_cluster=kind == "balanced_tree_sub")
    raise ValueError(f"quantizer must be one of {QUANTIZER_KINDS}, got {kind!r}")


def quantizer_from_state(meta: dict, tensors: dict[str, Tensor]) -> Quantizer:
    """Rebuilds a fitted quantizer from what its ``state()`` returned."""
    kind = meta.get("kind")
    if kind == "rq_kmeans":
        return RQKMeansQuantizer._from_state(meta, tensors)
    if kind in ("balanced_tree", "balanced_tree_sub"):
        return BalancedTreeQuantizer._from_state(meta, tensors)
    raise ValueError(f"unknown quantizer kind {kind!r} in saved state")
