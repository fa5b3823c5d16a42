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


def trie_allowed(nodes: Tensor, trie, num_columns: int, vocab_offset: int = 0) -> Tensor:
    """``[rows, V]`` bool: True where the column's token is a child of the row's node.
    Rows whose node is -1 allow nothing."""
    offsets = trie.child_offsets.to(nodes.device)
    tokens = trie.child_tokens.to(nodes.device)
    allowed = torch.zeros(nodes.shape[0], num_columns, dtype=torch.bool, device=nodes.device)
    for row, node in enumerate(nodes.tolist()):
        if node >= 0:
            allowed[row, tokens[offsets[node] : offsets[node + 1]] - vocab_offset] = True
    return allowed


def trie_mask_(logits: Tensor, nodes: Tensor, trie, vocab_offset: int = 0) -> Tensor:
    """``masked_fill_`` of every column outside the row's allowed children."""
    allowed = trie_allowed(nodes, trie, logits.shape[1], vocab_offset)
    return logits.masked_fill_(~allowed, float("-inf"))


def trie_beam_step(logits, beam_scores, nodes, trie, num_beams, vocab_offset=0, log_normalize=True):
    """Dense beam step: a [rows, V] allowed mask, scores for every column, a stable sort of each
    batch element's W x V scores (the stable sort gives ties to the lower beam, then token)."""
    rows, num_columns = logits.shape
    batch = rows // num_beams
    live = beam_scores > float("-inf")
    allowed = trie_allowed(torch.where(live, nodes, -1), trie, num_columns, vocab_offset)
    token_scores = logits.float()
    if log_normalize:
        token_scores = token_scores - torch.logsumexp(token_scores, dim=1, keepdim=True)
    scores = beam_scores[:, None] + token_scores
    scores = scores.masked_fill(~allowed | scores.isnan(), float("-inf"))
    flat = scores.view(batch, num_beams * num_columns)
    best, index = torch.sort(flat, dim=1, descending=True, stable=True)
    best, index = best[:, :num_beams], index[:, :num_beams]
    parents = index // num_columns
    columns = index % num_columns
    found = best > float("-inf")
    tokens = torch.where(found, columns + vocab_offset, -1)
    edge_nodes = nodes.view(batch, num_beams).gather(1, parents)
    next_nodes = torch.full_like(tokens, -1)
    child_tokens, child_nodes, offsets = trie.child_tokens, trie.child_nodes, trie.child_offsets
    for b, w in found.nonzero().tolist():
        node = int(edge_nodes[b, w])
        children = child_tokens[offsets[node] : offsets[node + 1]]
        edge = int(offsets[node]) + int(torch.searchsorted(children, tokens[b, w]))
        next_nodes[b, w] = child_nodes[edge]
    parents = torch.where(found, parents, 0)
    best = torch.where(found, best, float("-inf"))
    return best, parents, tokens, next_nodes
