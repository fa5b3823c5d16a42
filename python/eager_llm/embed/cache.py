"""On-disk cache of item embeddings, keyed by everything that determines them.

A file holds the tensor and, in its safetensors metadata, the key it was computed for (model
name, fields, data fingerprint, ...); a different key means a different file name, and a file
whose stored key does not match is recomputed, so changed inputs never reuse stale vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Callable

from safetensors.torch import load_file, safe_open
from torch import Tensor

from ..io import save_tensors


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def cache_path(cache_dir: str, kind: str, key: dict) -> str:
    digest = hashlib.sha256(_key_text(key).encode()).hexdigest()[:16]
    return os.path.join(cache_dir, f"{kind}-{digest}.safetensors")


def cached_embeddings(cache_dir: str | None, kind: str, key: dict, compute: Callable[[], Tensor]) -> tuple[Tensor, bool]:
    """The embeddings for `key` from `cache_dir`, or `compute()` stored there atomically.
    Returns (embeddings, whether they came from the cache). No cache_dir: always computes."""
    if cache_dir is None:
        return compute(), False
    path = cache_path(cache_dir, kind, key)
    if os.path.exists(path):
        with safe_open(path, framework="pt") as handle:
            stored = (handle.metadata() or {}).get("key")
        if stored == _key_text(key):
            return load_file(path)["embeddings"], True
    embeddings = compute().contiguous()
    save_tensors(path, {"embeddings": embeddings}, metadata={"key": _key_text(key)})
    return embeddings, False
