"""DKI: dual-source knowledge-rich item indices (METHOD.md section 3).

k-means and balanced k-means, the quantizers (residual k-means, balanced hierarchical trees),
explicit collision policies, and :class:`DualSourceIndex`, which joins semantic and behavior
codes into item token sequences, their vocabulary and their decoding trie.
"""

from .balanced import balanced_assign, balanced_kmeans
from .collisions import POLICIES, CollisionReport, collision_stats, resolve_collisions
from .dki import DualSourceIndex, IndexConfig, SourceConfig
from .kmeans import KMeansResult, kmeans, kmeans_plusplus
from .quantizers import (
    QUANTIZER_KINDS,
    BalancedTreeQuantizer,
    Quantizer,
    RQKMeansQuantizer,
    make_quantizer,
    quantizer_from_state,
)

__all__ = [
    "POLICIES",
    "QUANTIZER_KINDS",
    "BalancedTreeQuantizer",
    "CollisionReport",
    "DualSourceIndex",
    "IndexConfig",
    "KMeansResult",
    "Quantizer",
    "RQKMeansQuantizer",
    "SourceConfig",
    "balanced_assign",
    "balanced_kmeans",
    "collision_stats",
    "kmeans",
    "kmeans_plusplus",
    "make_quantizer",
    "quantizer_from_state",
    "resolve_collisions",
]
