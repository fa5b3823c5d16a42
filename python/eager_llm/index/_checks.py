"""Argument checks shared by the index modules, and seed derivation."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def check_matrix(x, name: str) -> Tensor:
    """Returns ``x`` as a contiguous float32 ``[N, D]`` tensor with N, D >= 1 and finite values."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape [N, D], got {type(x).__name__}")
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have shape [N, D] with N, D >= 1, got {list(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    x = x.float().contiguous()
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_codes(codes, name: str) -> Tensor:
    """Returns ``codes`` as an int64 CPU ``[N, L]`` tensor of non-negative codes (N may be 0);
    codes are small and the collision bookkeeping runs on the CPU."""
    if not isinstance(codes, Tensor) or codes.dim() != 2:
        shape = list(codes.shape) if isinstance(codes, Tensor) else type(codes).__name__
        raise ValueError(f"{name} must be an integer tensor of shape [N, L], got {shape}")
    if codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got {codes.dtype}")
    if codes.shape[1] < 1:
        raise ValueError(f"{name} must have at least one level (L >= 1), got {list(codes.shape)}")
    codes = codes.long().cpu()
    if codes.numel() and int(codes.min()) < 0:
        raise ValueError(f"{name} must be non-negative, got {int(codes.min())}")
    return codes


def check_positive(value, name: str, minimum: int = 1) -> int:
    """Returns ``value`` as an int, or raises if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_dim(x: Tensor, dim: int, name: str) -> None:
    """Raises if ``x`` (``[N, D]``) does not have the ``D`` the model was fitted on."""
    if x.shape[1] != dim:
        raise ValueError(f"{name} has {x.shape[1]} columns but the quantizer was fitted on {dim}")


def derive_seed(seed: int, *path) -> int:
    """A seed for one sub-problem (a level, a tree node, a source), fixed by ``seed`` and ``path``.

    Hashing (rather than one shared generator) makes each sub-fit independent of the order in
    which the others ran, and unlike Python's ``hash`` it is the same in every process.
    """
    digest = hashlib.sha256(repr((int(seed), *path)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
