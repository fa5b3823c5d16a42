"""EagerLLM: a Hugging Face causal LM that speaks item-index tokens, with the GCT
("decompression") losses of METHOD.md section 4.

The LM gets one new token per (index position, code), initialised as the mean of the existing
embedding rows (and LM-head rows when they are not tied). Two decompression guidance
projectors map the L2-normalised final hidden state at the summary token to the semantic and to
the behavior embedding space, where an InfoNCE against the target item's embedding and shared
random negatives (cosine, temperature 0.1) asks it to reconstruct what the item is. The loss is
``LM + 0.1 * L_sem + 0.1 * L_beh``, with GCT only for samples that have a target item; both
terms are normalised per sample (see :func:`per_sample_lm_loss`).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import eager_ext

from ..generate.model_io import positions_from_mask, unwrap_peft
from ..tasks.collate import IGNORE, Batch

SOURCES = ("semantic", "behavior")


@dataclass
class EagerConfig:
    """Loss weights and GCT settings (the paper's defaults)."""

    semantic_weight: float = 0.1
    behavior_weight: float = 0.1
    temperature: float = 0.1
    num_negatives: int = 2048

    def __post_init__(self):
        if self.temperature <= 0:
            raise ValueError(f"EagerConfig.temperature must be > 0, got {self.temperature}")
        if self.num_negatives < 1:
            raise ValueError(f"EagerConfig.num_negatives must be >= 1, got {self.num_negatives}")
        if self.semantic_weight < 0 or self.behavior_weight < 0:
            raise ValueError("EagerConfig weights must be >= 0")


def add_index_tokens(model, tokenizer, token_strings: list[str],
                     token_embeddings: list[Tensor] | None = None, seed: int = 0) -> int:
    """Adds the index tokens to the tokenizer and the model as one contiguous id block and
    returns the first new id.

    New rows start as the mean of the existing rows. With ``token_embeddings`` (one
    ``[codebook_size, D]`` matrix per index position, in token order, e.g. from
    :meth:`eager_llm.index.DualSourceIndex.code_embeddings`), the rows of a position are that
    mean plus a seeded random projection of the codes' exogenous embeddings, centred and scaled
    to the spread of the existing rows, so codes of similar items start close together; codes
    with an all-zero embedding (unused) keep the mean.
    """
    if token_embeddings is not None and sum(e.shape[0] for e in token_embeddings) != len(token_strings):
        raise ValueError(f"token_embeddings has {sum(e.shape[0] for e in token_embeddings)} rows for "
                         f"{len(token_strings)} index tokens")
    existing = set(tokenizer.get_vocab())
    clashes = [t for t in token_strings if t in existing]
    if clashes:
        raise ValueError(f"the tokenizer already has index tokens {clashes[:5]}; add them once")
    first = len(tokenizer)
    added = tokenizer.add_tokens(token_strings, special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(token_strings)
    if added != len(token_strings) or ids != list(range(first, first + len(token_strings))):
        raise ValueError("the tokenizer did not give the index tokens one contiguous id block")
    old_rows = model.get_input_embeddings().weight.shape[0]
    # Our own initialisation follows; skip transformers' covariance-sampled rows.
    model.resize_token_embeddings(first + len(token_strings), mean_resizing=False)
    with torch.no_grad():
        for layer in {model.get_input_embeddings(), model.get_output_embeddings()}:
            if layer is None:
                continue
            weight = layer.weight
            old = weight[:min(old_rows, first)]
            weight[first:] = old.mean(0, keepdim=True)
            if token_embeddings is not None:
                weight[first:] += _projected_offsets(token_embeddings, old, len(token_strings), seed)
            bias = getattr(layer, "bias", None)
            if bias is not None and bias.shape[0] == weight.shape[0]:
                bias[first:] = bias[:min(old_rows, first)].mean()
    return first


def _projected_offsets(token_embeddings: list[Tensor], old_rows: Tensor, count: int, seed: int) -> Tensor:
    """Offsets from the mean row for every new token (zero for codes without an embedding)."""
    hidden = old_rows.shape[1]
    spread = (old_rows - old_rows.mean(0)).float().norm(dim=1).mean()
    offsets, start = torch.zeros(count, hidden), 0
    generator = torch.Generator().manual_seed(seed)
    for embeddings in token_embeddings:
        size = embeddings.shape[0]
        used = embeddings.abs().sum(1) > 0
        projection = torch.randn(embeddings.shape[1], hidden, generator=generator) / embeddings.shape[1] ** 0.5
        if used.any():
            projected = embeddings[used].float() @ projection
            projected -= projected.mean(0)
            scale = spread / projected.norm(dim=1).mean().clamp(min=1e-12)
            offsets[start:start + size][used] = projected * scale
        start += size
    return offsets.to(old_rows.dtype)


def per_sample_lm_loss(logits: Tensor, labels: Tensor, response_lengths: Tensor | None = None,
                       index_tokens: tuple[int, int] | None = None) -> Tensor:
    """Next-token cross-entropy on the labelled tokens, summed per sample, divided by the
    sample's response length, then averaged over samples: every response weighs the same, and
    equal micro-batches average exactly to the loss of their union (a token mean would weigh
    micro-batches by their token counts).

    Without ``response_lengths`` [B] a sample's labelled tokens are its response. With them,
    labelled tokens before the response are history targets (items of the prompt, learnt from
    the items before them): each weighs like a response token, and with ``index_tokens``
    (first id, end id) it is scored among the index tokens only, since it can only be an item.

    ``logits`` [B, K, V] may cover only the last K positions of ``labels`` [B, T] (see
    :func:`response_window`); they predict the labels of the last K - 1 positions.
    """
    targets = labels[:, labels.shape[1] - logits.shape[1] + 1:]
    mask = targets != IGNORE
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), targets.clamp(min=0), reduction="none")
    if index_tokens is not None and response_lengths is not None:
        in_prompt = _history_targets(labels, response_lengths)[:, labels.shape[1] - logits.shape[1]:]
        first, end = index_tokens
        block = logits[:, :-1][in_prompt][:, first:end]
        nll = nll.masked_scatter(in_prompt, _index_block_nll(block, targets[in_prompt], index_tokens))
    return _mean_per_sample((nll * mask).sum(1), mask, response_lengths)


def response_token_loss(head: nn.Module, hidden: Tensor, labels: Tensor, response_lengths: Tensor | None = None,
                        index_tokens: tuple[int, int] | None = None) -> Tensor:
    """:func:`per_sample_lm_loss` with the LM head run only at the positions that predict a
    labelled token: ``hidden`` [B, T, H] is the final hidden state, ``head`` the output
    embedding. A batch's responses differ in length, so this is several times less head work
    than a window as long as the longest one; history targets scored among the index tokens
    cost [positions x index tokens] instead of [positions x vocabulary]."""
    targets = labels[:, 1:]
    mask = targets != IGNORE
    rows, columns = mask.nonzero(as_tuple=True)
    states, picked = hidden[rows, columns], targets[rows, columns]
    if index_tokens is None or response_lengths is None:
        nll = F.cross_entropy(head(states).float(), picked, reduction="none")
    else:
        in_prompt = _history_targets(labels, response_lengths)[rows, columns]
        first, end = index_tokens
        bias = None if head.bias is None else head.bias[first:end]
        block = F.linear(states[in_prompt], head.weight[first:end], bias)
        nll = torch.empty(len(picked), device=hidden.device)
        nll[in_prompt] = _index_block_nll(block, picked[in_prompt], index_tokens)
        nll[~in_prompt] = F.cross_entropy(head(states[~in_prompt]).float(), picked[~in_prompt], reduction="none")
    sums = torch.zeros(len(labels), device=nll.device).index_add(0, rows, nll)
    return _mean_per_sample(sums, mask, response_lengths)


def _history_targets(labels: Tensor, response_lengths: Tensor) -> Tensor:
    """[B, T - 1] over ``labels[:, 1:]``: the labelled tokens before each sample's response."""
    targets = labels[:, 1:]
    columns = torch.arange(targets.shape[1], device=labels.device)
    return (targets != IGNORE) & (columns < targets.shape[1] - response_lengths.to(labels.device)[:, None])


def _index_block_nll(block_logits: Tensor, targets: Tensor, index_tokens: tuple[int, int]) -> Tensor:
    """Cross-entropy of history targets among the index tokens (``block_logits`` [N, end - first])."""
    first, end = index_tokens
    if bool(((targets < first) | (targets >= end)).any()):
        raise ValueError(f"a history target is not an index token (ids {first}..{end - 1}): history spans must "
                         "cover item index strings only")
    return F.cross_entropy(block_logits.float(), targets - first, reduction="none")


def _mean_per_sample(nll_sums: Tensor, mask: Tensor, response_lengths: Tensor | None) -> Tensor:
    counts = mask.sum(1) if response_lengths is None else response_lengths.to(nll_sums.device)
    return (nll_sums / counts.clamp(min=1)).mean()


def response_window(labels: Tensor) -> int:
    """The number of final positions whose logits the LM loss needs: from the position before
    the earliest labelled token to the end. With left-padded batches this is about the longest
    response, so the LM head skips the prompts, which dominate the sequence."""
    labelled = (labels != IGNORE).any(0)
    if not bool(labelled.any()):
        return 1
    first = int(labelled.to(torch.uint8).argmax())
    return labels.shape[1] - max(first - 1, 0)


def logits_are_head_of_last_hidden(model) -> bool:
    """Whether ``model``'s logits are its output embedding applied to its last hidden state, as
    in most causal LMs (not in those that soft-cap or scale their logits, like Gemma 2), checked
    on a three-token probe. Then the LM loss may run the head itself, on response tokens only."""
    head = model.get_output_embeddings()
    if head is None:
        return False
    probe = torch.arange(3, device=model.get_input_embeddings().weight.device).unsqueeze(0)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            output = model(input_ids=probe, output_hidden_states=True)
            ours = head(output.hidden_states[-1])
    finally:
        model.train(training)
    return ours.shape == output.logits.shape and torch.allclose(ours.float(), output.logits.float(), rtol=1e-4, atol=1e-4)


class EagerLLM(nn.Module):
    """The recommender's trainable part: an HF causal LM (optionally PEFT-wrapped) plus the
    decompression projectors, with the exogenous tables as frozen buffers.

    Args:
        model: a transformers causal LM whose vocabulary already holds the index tokens.
        tables: ``{"semantic": [num_items, D_s], "behavior": [num_items, D_b]}`` (either may be
            missing, e.g. for a single-source index); row i - 1 is item i.
        config: :class:`EagerConfig`.
        index_tokens: (first id, end id) of the index-token block; history targets (items of a
            prompt that the LM loss learns as well) are then scored among these tokens only.
    """

    def __init__(self, model, tables: dict[str, Tensor], config: EagerConfig | None = None,
                 index_tokens: tuple[int, int] | None = None):
        super().__init__()
        self.index_tokens = index_tokens
        unknown = set(tables) - set(SOURCES)
        if unknown:
            raise ValueError(f"tables has unknown sources {sorted(unknown)}; known: {SOURCES}")
        self.lm = model
        self.config = config or EagerConfig()
        hidden = model.config.get_text_config().hidden_size if hasattr(model.config, "get_text_config") \
            else model.config.hidden_size
        self.projectors = nn.ModuleDict({name: nn.Linear(hidden, table.shape[1]) for name, table in tables.items()})
        for name, table in tables.items():
            self.register_buffer(f"{name}_table", table.detach().float().contiguous(), persistent=False)
        accepted = inspect.signature(unwrap_peft(model).forward).parameters
        self._takes_position_ids = "position_ids" in accepted
        self._takes_logits_to_keep = "logits_to_keep" in accepted
        # The head on response tokens alone, when the model can skip its own (logits_to_keep=1)
        # and its logits are plainly the head of its last hidden state; else a response window.
        self.head_on_response_tokens = self._takes_logits_to_keep and logits_are_head_of_last_hidden(model)

    def table(self, source: str) -> Tensor:
        return getattr(self, f"{source}_table")

    def forward(self, batch: Batch, generator: torch.Generator | None = None, gct: bool = True) -> dict[str, Tensor]:
        """Loss terms for one batch: ``loss`` (the weighted sum), ``lm``, and ``gct_<source>``
        unless ``gct`` is False (stage 2 trains on the LM loss alone)."""
        use_gct = gct and len(self.projectors) > 0
        arguments = dict(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                         output_hidden_states=use_gct or self.head_on_response_tokens)
        if self._takes_position_ids:
            arguments["position_ids"] = positions_from_mask(batch.attention_mask)
        if self.head_on_response_tokens:
            arguments["logits_to_keep"] = 1
        elif self._takes_logits_to_keep:
            arguments["logits_to_keep"] = response_window(batch.labels)
        output = self.lm(**arguments)
        if self.head_on_response_tokens:
            lm = response_token_loss(self.lm.get_output_embeddings(), output.hidden_states[-1], batch.labels,
                                     batch.response_lengths, self.index_tokens)
        else:
            lm = per_sample_lm_loss(output.logits, batch.labels, batch.response_lengths, self.index_tokens)
        terms = {"lm": lm}
        loss = lm
        if use_gct:
            summary = eager_ext.summary_gather(output.hidden_states[-1], batch.summary_positions)
            query_input = F.normalize(summary.float(), dim=-1)
            valid = batch.target_items > 0
            positives = (batch.target_items - 1).clamp(min=0)
            for source, projector in self.projectors.items():
                table = self.table(source)
                negatives = self._negatives(table.shape[0], table.device, generator)
                query = projector(query_input.to(projector.weight.dtype)).float()
                term = eager_ext.gathered_infonce(query, table, positives, negatives, self.config.temperature, valid)
                # Summed over the samples with a target and divided by all samples, so that equal
                # micro-batches (gradient accumulation, data parallelism) average to the loss of
                # the whole batch.
                term = term * valid.sum() / valid.numel()
                terms[f"gct_{source}"] = term
                loss = loss + getattr(self.config, f"{source}_weight") * term
        terms["loss"] = loss
        return terms

    def _negatives(self, num_items: int, device, generator) -> Tensor:
        """The shared negatives: random items, without repeats when the catalog is large enough."""
        count = self.config.num_negatives
        if count <= num_items:
            return torch.randperm(num_items, generator=generator)[:count].to(device)
        return torch.randint(0, num_items, (count,), generator=generator).to(device)
