"""Tokenisation of task samples into training batches.

Each sequence is ``prompt + response + eos``; the LM loss covers the response and the eos,
never the prompt; the eos is the summary token whose hidden state the GCT loss decompresses.
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
    labels: Tensor  # IGNORE on prompt and padding
    summary_positions: Tensor  # [B] position of each sequence's eos
    target_items: Tensor  # [B] 1-based target item, 0 for none

    def to(self, device) -> "Batch":
        return Batch(*(getattr(self, name).to(device) for name in self.__dataclass_fields__))


def collate(samples: list[TaskSample], tokenizer, max_length: int = 512) -> Batch:
    """Tokenises and left-pads samples. A sequence longer than ``max_length`` loses the start
    of its prompt (the history's oldest items), never its response or summary token."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token, which GCT uses as the summary token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []
    for sample in samples:
        prompt = tokenizer(sample.prompt, add_special_tokens=False)["input_ids"]
        response = tokenizer(sample.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        if len(response) >= max_length:
            raise ValueError(f"a {sample.task} response of {len(response)} tokens does not fit max_length {max_length}")
        prompt = prompt[max(0, len(prompt) + len(response) - max_length):]
        rows.append((prompt, response, sample.target_item or 0))
    length = max(len(p) + len(r) for p, r, _ in rows)
    batch = len(rows)
    input_ids = torch.full((batch, length), pad, dtype=torch.long)
    attention_mask = torch.zeros(batch, length, dtype=torch.long)
    labels = torch.full((batch, length), IGNORE, dtype=torch.long)
    for row, (prompt, response, _) in enumerate(rows):
        start = length - len(prompt) - len(response)
        input_ids[row, start:] = torch.tensor(prompt + response)
        attention_mask[row, start:] = 1
        labels[row, length - len(response):] = torch.tensor(response)
    positions = torch.full((batch,), length - 1, dtype=torch.long)
    targets = torch.tensor([target for _, _, target in rows], dtype=torch.long)
    return Batch(input_ids, attention_mask, labels, positions, targets)
