"""Trie-constrained beam search over any Hugging Face causal LM.

Each prompt is prefilled once; its KV cache is then repeated for the beams, and every step
feeds one token per beam, scores only the trie children of each beam's node with
`eager_ext.trie_beam_step`, and reorders the cache by the parents it returns. Exactly
`trie.depth` steps, no host synchronisation inside the loop, and every returned id is a real
item.
"""

from __future__ import annotations

import torch
from torch import Tensor

import eager_ext

from .automaton import PositionAutomaton
from .model_io import CausalLMRunner, positions_from_mask, reorder_beams

SCORE_SPACES = ("items", "vocab")


def left_pad(prompts, pad_token_id: int) -> tuple[Tensor, Tensor]:
    """Token-id lists as left-padded ``input_ids`` and ``attention_mask`` [B, longest]."""
    length = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), length, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt):] = torch.as_tensor(prompt, dtype=torch.long)
        attention_mask[row, length - len(prompt):] = 1
    return input_ids, attention_mask


def _item_token_range(trie, item_tokens) -> tuple[int, int]:
    """[first, last) of the LM-head rows that items mode scores and normalises over: the given
    range, which must hold every trie token, or by default the trie's own token range."""
    if item_tokens is None:
        return trie.min_token, trie.max_token + 1
    first, last = item_tokens
    if not (first <= trie.min_token and trie.max_token < last):
        raise ValueError(
            f"item_tokens=({first}, {last}) must contain every token of the trie, which uses "
            f"{trie.min_token}..{trie.max_token}"
        )
    return first, last


def _check_inputs(input_ids, attention_mask, trie, num_beams, num_return_sequences, score_space):
    if score_space not in SCORE_SPACES:
        raise ValueError(f"score_space must be one of {SCORE_SPACES}, got {score_space!r}")
    if not isinstance(trie, eager_ext.ItemTrie):
        raise TypeError(f"trie must be an eager_ext.ItemTrie, got {type(trie).__name__}")
    if input_ids.dim() != 2 or input_ids.dtype != torch.long:
        raise ValueError(f"input_ids must be int64 [batch, length], got {input_ids.dtype} {tuple(input_ids.shape)}")
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask {tuple(attention_mask.shape)} must match input_ids {tuple(input_ids.shape)}")
    if input_ids.shape[0] == 0 or input_ids.shape[1] == 0:
        raise ValueError(f"input_ids must hold at least one prompt of one token, got {tuple(input_ids.shape)}")
    if not bool(attention_mask[:, -1].all()):
        raise ValueError(
            "attention_mask has padding at the end of a prompt: constrained_beam_search needs left "
            "padding (tokenizer.padding_side = 'left')"
        )
    if num_beams < 1:
        raise ValueError(f"num_beams must be >= 1, got {num_beams}")
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_return_sequences must be between 1 and num_beams ({num_beams}), got {num_return_sequences}")


def constrained_beam_search(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    trie,
    num_beams: int = 20,
    num_return_sequences: int | None = None,
    score_space: str = "items",
    item_tokens: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Returns the best items for each prompt under an exact trie constraint.

    Args:
        model: any transformers causal LM (optionally wrapped by PEFT). Its generation config
            is ignored: this is plain beam search, never sampling.
        input_ids: ``[B, T]`` int64 prompts, left-padded.
        attention_mask: ``[B, T]``, 0 on padding.
        trie: :class:`eager_ext.ItemTrie` over the items' token ids (moved to the model's device).
        num_beams: beams per prompt.
        num_return_sequences: items returned per prompt (default: num_beams).
        score_space: ``"items"`` computes and normalises over one contiguous range of LM-head
            rows only, the item tokens; ``"vocab"`` uses the full vocabulary, the scores HF
            beam search gives.
        item_tokens: ``(first, last)``, the item-token rows for items mode (default: from the
            trie's smallest to its largest token). Item tokens should be added to the
            vocabulary as one block, as :mod:`eager_llm` does.

    Returns:
        ``items [B, k]`` int64 item ids and ``scores [B, k]`` float32 summed log-probabilities,
        best first; where fewer than k items can be reached, the rest are -1 and -inf.
    """
    num_return_sequences = num_return_sequences or num_beams
    _check_inputs(input_ids, attention_mask, trie, num_beams, num_return_sequences, score_space)
    nodes, _, scores = _run_search(model, input_ids, attention_mask, trie, num_beams, score_space, item_tokens)
    items = trie.item_of(nodes)
    return items[:, :num_return_sequences], scores[:, :num_return_sequences]


def _search(model, input_ids, attention_mask, trie, num_beams, score_space, item_tokens):
    """The search loop over any trie-shaped automaton (ItemTrie or PositionAutomaton).
    Returns the final nodes [B, W], the token sequences [B, W, depth] and the scores [B, W]."""
    runner = CausalLMRunner(model)
    device = runner.device
    if trie.device != device:
        trie = trie.to(device)
    first, last = _item_token_range(trie, item_tokens) if score_space == "items" else (0, runner.vocab_size)

    batch, width = input_ids.shape[0], num_beams
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    positions = positions_from_mask(attention_mask)
    logits, cache = runner.step(input_ids, attention_mask, positions, None, first, last)

    # One live beam per prompt at the root; the other W - 1 slots start dead.
    logits = logits.repeat_interleave(width, dim=0)
    beam_scores = torch.full((batch, width), float("-inf"), device=device)
    beam_scores[:, 0] = 0.0
    beam_scores = beam_scores.view(-1)
    nodes = torch.zeros(batch * width, dtype=torch.long, device=device)
    sequences = torch.empty(batch, width, 0, dtype=torch.long, device=device)
    cache.batch_repeat_interleave(width)
    attention_mask = attention_mask.repeat_interleave(width, dim=0)
    next_position = positions[:, -1:].repeat_interleave(width, dim=0) + 1
    batch_base = (torch.arange(batch, device=device) * width)[:, None]
    prompt_length = input_ids.shape[1]

    for step in range(trie.depth):
        scores, parents, tokens, next_nodes = eager_ext.trie_beam_step(
            logits, beam_scores, nodes, trie, width, vocab_offset=first, log_normalize=True
        )
        beam_scores, nodes = scores.view(-1), next_nodes.view(-1)
        sequences = torch.cat([sequences.gather(1, parents[..., None].expand(-1, -1, step)), tokens[..., None]], dim=2)
        if step == trie.depth - 1:
            break
        reorder_beams(cache, (parents + batch_base).view(-1), prompt_length)
        # Dead slots feed a real token (their scores stay -inf); the embedding needs an id.
        step_tokens = tokens.clamp(min=0).view(-1, 1)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(batch * width, 1)], dim=1)
        logits, cache = runner.step(step_tokens, attention_mask, next_position, cache, first, last)
        next_position = next_position + 1
    return nodes.view(batch, width), sequences, beam_scores.view(batch, width)


def _run_search(model, input_ids, attention_mask, trie, num_beams, score_space, item_tokens):
    was_training = model.training
    model.eval()  # dropout would make the search random
    try:
        with torch.inference_mode():
            return _search(model, input_ids, attention_mask, trie, num_beams, score_space, item_tokens)
    finally:
        model.train(was_training)


def position_constrained_beam_search(
    model,
    input_ids: Tensor,
    attention_mask: Tensor,
    trie,
    num_beams: int = 20,
    num_return_sequences: int | None = None,
    score_space: str = "items",
    item_tokens: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The released EAGER-LLM constraint, for comparison: each position may take any token seen
    at that position among the items, so beams can spell sequences that are no item; those are
    filtered afterwards. Same arguments as :func:`constrained_beam_search`.

    Returns:
        ``items [B, k]`` (-1 where the sequence is no item, or where no sequence was found),
        ``scores [B, k]``, and ``valid [B, k]`` bool: the sequence is a real item.
    """
    num_return_sequences = num_return_sequences or num_beams
    _check_inputs(input_ids, attention_mask, trie, num_beams, num_return_sequences, score_space)
    automaton = PositionAutomaton.from_trie(trie)
    _, sequences, scores = _run_search(model, input_ids, attention_mask, automaton, num_beams, score_space,
                                       item_tokens)
    found = scores > float("-inf")
    items = trie.lookup(sequences.reshape(-1, trie.depth).cpu()).view(scores.shape).to(scores.device)
    items = torch.where(found, items, -1)
    k = num_return_sequences
    return items[:, :k], scores[:, :k], (items >= 0)[:, :k]
