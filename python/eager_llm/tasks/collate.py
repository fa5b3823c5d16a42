"""Tokenisation of task samples into training batches.

Each sequence is ``prompt + response + eos``; the LM loss covers the response and the eos, and
of the prompt only the tokens of a sample's ``history_spans``; the eos is the summary token
whose hidden state the GCT loss decompresses.
Batches are left-padded, as prompts are at generation time, so every response ends at the last
position and the LM head needs to run only over the last few positions (the response window).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .samples import TaskSample

IGNORE = -100


@dataclass
class Batch:
    input_ids: Tensor  # [B, T], left-padded
    attention_mask: Tensor
    labels: Tensor  # IGNORE on padding and on the prompt outside its history spans
    summary_positions: Tensor  # [B] position of each sequence's eos
    target_items: Tensor  # [B] 1-based target item, 0 for none
    # [B] tokens of each response (with its eos), the LM loss's divisor; None: every labelled
    # token is part of the response.
    response_lengths: Tensor | None = None

    def to(self, device) -> "Batch":
        return Batch(*(None if value is None else value.to(device)
                       for value in (getattr(self, name) for name in self.__dataclass_fields__)))


@dataclass(frozen=True)
class TokenizedSample:
    task: str
    prompt: Tensor  # token ids
    response: Tensor  # token ids, ending with eos
    target_item: int  # 1-based, 0 for none
    prompt_labels: Tensor | None = None  # IGNORE but on the tokens of history_spans

    def __len__(self) -> int:
        return len(self.prompt) + len(self.response)


def tokenize(samples: list[TaskSample], tokenizer) -> list[TokenizedSample]:
    """Tokenises every sample once (one batched tokenizer call per side), for
    :func:`collate_tokenized`: a training loop tokenises its samples before the first epoch."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token, which GCT uses as the summary token")
    any_spans = any(sample.history_spans for sample in samples)
    if any_spans and not tokenizer.is_fast:
        raise ValueError("history_targets needs a fast tokenizer (one that maps tokens to characters); "
                         f"{type(tokenizer).__name__} is not")
    prompts = tokenizer([sample.prompt for sample in samples], add_special_tokens=False, return_offsets_mapping=any_spans)
    responses = tokenizer([sample.response for sample in samples], add_special_tokens=False)["input_ids"]
    out = []
    for row, (sample, prompt, response) in enumerate(zip(samples, prompts["input_ids"], responses)):
        prompt = torch.tensor(prompt, dtype=torch.long)
        labels = _span_labels(prompt, prompts["offset_mapping"][row], sample.history_spans) if sample.history_spans else None
        out.append(TokenizedSample(sample.task, prompt, torch.tensor(response + [tokenizer.eos_token_id], dtype=torch.long),
                                   sample.target_item or 0, labels))
    return out


def _span_labels(prompt: Tensor, offsets: list[tuple[int, int]], spans: tuple[tuple[int, int], ...]) -> Tensor:
    """The prompt's labels: its own ids on the tokens that start inside a span, IGNORE elsewhere."""
    starts = torch.tensor([start for start, _ in offsets], dtype=torch.long)
    inside = torch.zeros(len(prompt), dtype=torch.bool)
    for begin, end in spans:
        inside |= (starts >= begin) & (starts < end)
    return torch.where(inside, prompt, IGNORE)


def pad_token_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def collate(samples: list[TaskSample], tokenizer, max_length: int = 512) -> Batch:
    """Tokenises and left-pads samples (see :func:`collate_tokenized`)."""
    return collate_tokenized(tokenize(samples, tokenizer), pad_token_id(tokenizer), max_length)


def collate_tokenized(samples: list[TokenizedSample], pad_token_id: int, max_length: int = 512) -> Batch:
    """Left-pads tokenised samples into a batch. A sequence longer than ``max_length`` loses the
    start of its prompt (the history's oldest items), never its response or summary token."""
    for sample in samples:
        if len(sample.response) >= max_length:
            raise ValueError(f"a {sample.task} response of {len(sample.response)} tokens does not fit "
                             f"max_length {max_length}")
    length = max(min(len(sample), max_length) for sample in samples)
    batch = len(samples)
    input_ids = torch.full((batch, length), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros(batch, length, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE, dtype=torch.long)
    for row, sample in enumerate(samples):
        cut = max(0, len(sample) - max_length)
        prompt = sample.prompt[cut:]
        start = length - len(prompt) - len(sample.response)
        input_ids[row, start:] = torch.cat([prompt, sample.response])
        attention_mask[row, start:] = 1
        labels[row, length - len(sample.response):] = sample.response
        if sample.prompt_labels is not None:
            labels[row, start:start + len(prompt)] = sample.prompt_labels[cut:]
    positions = torch.full((batch,), length - 1, dtype=torch.long)
    targets = torch.tensor([sample.target_item for sample in samples], dtype=torch.long)
    response_lengths = torch.tensor([len(sample.response) for sample in samples], dtype=torch.long)
    return Batch(input_ids, attention_mask, labels, positions, targets, response_lengths)
