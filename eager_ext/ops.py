"""Typed Python entry points of the kernels, with their fake kernels and autograd formulas.

The kernels themselves are registered by the compiled extension as ``torch.ops.eager_ext.*``;
this module adds what makes them first-class torch ops: shape inference for tracing
(``torch.compile``, meta tensors) and backward formulas.
"""

from __future__ import annotations

import torch
from torch import Tensor

_ops = torch.ops.eager_ext


def rq_encode(x: Tensor, codebooks: Tensor) -> tuple[Tensor, Tensor]:
    """Residual-quantizes each row of ``x`` with one codebook per level.

    For each level in turn, picks the centroid nearest (squared Euclidean distance, ties to
    the smaller index) to the current residual and subtracts it. All levels run in one pass
    over tiles of ``x``; the ``[N, K]`` distance matrix is never built, and the result does not
    depend on the number of threads.

    Args:
        x: ``[N, D]`` float32, float16 or bfloat16.
        codebooks: ``[L, K, D]`` of the same dtype and device.

    Returns:
        ``codes [N, L]`` int64 and the final residual's squared norm ``[N]`` float32
        (accumulated in float32 for half inputs).
    """
    return _ops.rq_encode(x, codebooks)


def summary_gather(hidden: Tensor, positions: Tensor) -> Tensor:
    """Returns ``hidden[b, positions[b]]`` for each batch row, as ``[B, H]``.

    Args:
        hidden: ``[B, T, H]`` hidden states (any float dtype; any batch/time strides).
        positions: ``[B]`` int64 in ``[0, T)``, e.g. the summary token of each sequence.

    The backward scatters the gradient into a zero ``[B, T, H]`` gradient of ``hidden``.
    """
    return _ops.summary_gather(hidden, positions)


def gathered_infonce(
    query: Tensor,
    table: Tensor,
    positive_ids: Tensor,
    negative_ids: Tensor,
    temperature: float,
    valid: Tensor | None = None,
) -> Tensor:
    """InfoNCE of each query against its positive row and shared negative rows of ``table``.

    With ``q``, ``p``, ``n_j`` the L2-normalised query, positive row and negative rows, row
    ``b``'s loss is ``-log softmax([q.p, q.n_1, ..., q.n_M] / temperature)[0]``. The rows are
    gathered inside the kernel: the ``[B, M, E]`` tensor of the expanded form never exists.

    Args:
        query: ``[B, E]`` float32, float16 or bfloat16; gradients flow back to it.
        table: ``[N, E]`` frozen embedding table of the same dtype (it gets no gradient, so it
            must not require one).
        positive_ids: ``[B]`` int64 row of ``table`` that is each query's positive.
        negative_ids: ``[M]`` int64 rows shared by all queries as negatives (duplicates and the
            positive itself are allowed and counted as given).
        temperature: softmax temperature, > 0.
        valid: optional ``[B]`` bool; rows where it is false take no part.

    Returns:
        The float32 mean loss over valid rows; 0 (with a zero gradient) when none is valid.
    """
    if table.requires_grad:
        raise ValueError(
            "gathered_infonce: table is treated as frozen and gets no gradient; "
            "pass table.detach() (or a table with requires_grad=False)"
        )
    return _ops.gathered_infonce(query, table, positive_ids, negative_ids, float(temperature), valid)


def trie_beam_step(
    logits: Tensor,
    beam_scores: Tensor,
    nodes: Tensor,
    trie,
    num_beams: int,
    vocab_offset: int = 0,
    log_normalize: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of beam search in which every beam stays a prefix of a real item.

    Args:
        logits: ``[B * W, V]`` (W = num_beams; float32, float16 or bfloat16); column ``j`` holds
            token ``vocab_offset + j``. A column slice of the full logits is read in place.
        beam_scores: ``[B * W]`` float32 running scores; ``-inf`` marks a dead beam (the first
            step starts with one live beam per batch element).
        nodes: ``[B * W]`` int64 trie node of each beam (anything on dead beams).
        trie: an :class:`eager_ext.ItemTrie` on the logits' device.
        num_beams: W, the beams kept per batch element.
        vocab_offset: token id of column 0.
        log_normalize: score ``logit - logsumexp(row)`` (True) or the raw logit (False).

    Returns:
        ``scores [B, W]`` (beam score + token score), ``parents [B, W]`` (beam index within the
        batch element), ``tokens [B, W]`` (token ids) and ``next_nodes [B, W]``, best first, ties
        broken by beam index then token. Where fewer than W candidates exist the rest have
        score ``-inf``, token ``-1``, node ``-1`` and parent 0. No host synchronisation; the
        cost does not depend on the number of items.
    """
    return _ops.trie_beam_step(
        logits, beam_scores, nodes, trie.child_offsets, trie.child_tokens, trie.child_nodes,
        num_beams, vocab_offset, log_normalize, trie.min_token, trie.max_token, trie.max_children,
    )


def trie_mask_(logits: Tensor, nodes: Tensor, trie, vocab_offset: int = 0) -> Tensor:
    """Sets, in place, every column of each row that is not a child token of the row's node to
    ``-inf`` (for a Hugging Face ``LogitsProcessor``), and returns ``logits``.

    Args:
        logits: ``[rows, V]`` float32, float16 or bfloat16 with unit column stride.
        nodes: ``[rows]`` int64 trie node of each row.
        trie: an :class:`eager_ext.ItemTrie` on the logits' device.
        vocab_offset: token id of column 0.
    """
    _ops.trie_mask_(
        logits, nodes, trie.child_offsets, trie.child_tokens, trie.child_nodes,
        vocab_offset, trie.min_token, trie.max_token, trie.max_children,
    )
    return logits


# ---------------------------------------------------------------------------------------------
# Fake kernels: output shapes and dtypes only, for tracing.


@torch.library.register_fake("eager_ext::rq_encode")
def _rq_encode_fake(x, codebooks):
    torch._check(x.dim() == 2, lambda: "rq_encode: x must have shape [N, D]")
    torch._check(codebooks.dim() == 3, lambda: "rq_encode: codebooks must have shape [L, K, D]")
    n, levels = x.shape[0], codebooks.shape[0]
    return x.new_empty((n, levels), dtype=torch.long), x.new_empty((n,), dtype=torch.float32)


@torch.library.register_fake("eager_ext::summary_gather")
def _summary_gather_fake(hidden, positions):
    torch._check(hidden.dim() == 3, lambda: "summary_gather: hidden must have shape [B, T, H]")
    return hidden.new_empty((hidden.shape[0], hidden.shape[2]))


@torch.library.register_fake("eager_ext::gathered_infonce")
def _gathered_infonce_fake(query, table, positive_ids, negative_ids, temperature, valid=None):
    return query.new_empty((), dtype=torch.float32)


@torch.library.register_fake("eager_ext::gathered_infonce_backward")
def _gathered_infonce_backward_fake(
    grad_loss, query, table, positive_ids, negative_ids, temperature, valid=None
):
    return torch.empty_like(query)


@torch.library.register_fake("eager_ext::trie_beam_step")
def _trie_beam_step_fake(
    logits, beam_scores, nodes, child_offsets, child_tokens, child_nodes, num_beams,
    vocab_offset, log_normalize, min_token, max_token, max_children,
):
    torch._check(logits.dim() == 2, lambda: "trie_beam_step: logits must have shape [rows, V]")
    shape = (logits.shape[0] // num_beams, num_beams)
    return (
        beam_scores.new_empty(shape),
        nodes.new_empty(shape),
        nodes.new_empty(shape),
        nodes.new_empty(shape),
    )


@torch.library.register_fake("eager_ext::trie_mask_")
def _trie_mask_fake(
    logits, nodes, child_offsets, child_tokens, child_nodes, vocab_offset, min_token, max_token, max_children
):
    return None


# ---------------------------------------------------------------------------------------------
# Autograd.


def _summary_gather_setup(ctx, inputs, output):
    hidden, positions = inputs
    ctx.hidden_shape = hidden.shape
    ctx.save_for_backward(positions)


def _summary_gather_backward(ctx, grad_out):
    (positions,) = ctx.saved_tensors
    grad_hidden = grad_out.new_zeros(ctx.hidden_shape)
    rows = torch.arange(positions.shape[0], device=positions.device)
    # index_put (not an in-place kernel) keeps double backward working.
    grad_hidden = grad_hidden.index_put((rows, positions), grad_out)
    return grad_hidden, None


torch.library.register_autograd(
    "eager_ext::summary_gather", _summary_gather_backward, setup_context=_summary_gather_setup
)


def _gathered_infonce_setup(ctx, inputs, output):
    query, table, positive_ids, negative_ids, temperature, valid = inputs
    ctx.temperature = temperature
    ctx.save_for_backward(query, table, positive_ids, negative_ids, valid)


def _gathered_infonce_backward(ctx, grad_loss):
    query, table, positive_ids, negative_ids, valid = ctx.saved_tensors
    grad_query = _ops.gathered_infonce_backward(
        grad_loss, query, table, positive_ids, negative_ids, ctx.temperature, valid
    )
    return grad_query, None, None, None, None, None


torch.library.register_autograd(
    "eager_ext::gathered_infonce", _gathered_infonce_backward, setup_context=_gathered_infonce_setup
)
