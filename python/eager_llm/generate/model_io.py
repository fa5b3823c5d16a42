"""How the beam search talks to a Hugging Face causal LM: the backbone, the LM head rows it
needs, and the KV cache, across transformers versions and PEFT wrappers."""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from torch import Tensor


def unwrap_peft(model):
    """The transformers model inside a PEFT wrapper (LoRA layers stay injected), or `model`."""
    get_base_model = getattr(model, "get_base_model", None)
    return get_base_model() if callable(get_base_model) and hasattr(model, "peft_config") else model


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids that count only real tokens, so a left-padded sequence is positioned as if it
    were alone."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def reorder_beams(cache, beam_idx: Tensor, prompt_length: int) -> None:
    """Reorders a KV cache's rows by `beam_idx`, where every beam stays within its prompt.

    Beams of one prompt hold identical copies of the prompt's keys and values, so only the
    positions generated after `prompt_length` need to move: a copy of a few positions instead of
    the whole cache. Caches of any other layout (sliding windows, quantized, older
    transformers) fall back to their own reorder_cache.
    """
    layers = getattr(cache, "layers", None)
    plain = layers and all(
        type(layer).__name__ == "DynamicLayer"
        and isinstance(getattr(layer, "keys", None), Tensor)
        and isinstance(getattr(layer, "values", None), Tensor)
        and layer.keys.dim() == 4
        for layer in layers
    )
    if not plain:
        cache.reorder_cache(beam_idx)
        return
    for layer in layers:
        for tensor in (layer.keys, layer.values):
            if tensor.shape[2] > prompt_length:
                tensor[:, :, prompt_length:] = tensor[beam_idx, :, prompt_length:]


def _cache_argument(module) -> str:
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _returned_cache(output):
    cache = output.get("cache") if "cache" in output else None
    return cache if cache is not None else output.get("past_key_values")


class CausalLMRunner:
    """Runs a causal LM with a KV cache and returns last-position logits for a contiguous range
    of vocabulary rows only: items mode multiplies by those rows of the LM head and never
    touches the rest.

    Models whose logits are not a plain linear map of the last hidden state (final logit
    soft-capping, a logit scale) run their own forward over the full vocabulary and are sliced
    afterwards: slower, but the numbers the model itself gives.
    """

    def __init__(self, model):
        self.hf_model = unwrap_peft(model)
        self.backbone = self.hf_model.base_model
        self.head = self.hf_model.get_output_embeddings()
        config = self.hf_model.config
        rescaled = any(getattr(config, name, None) for name in ("final_logit_softcapping", "logit_scale"))
        self.sliceable_head = getattr(self.head, "weight", None) is not None and not rescaled
        self.module = self.backbone if self.sliceable_head else self.hf_model
        self.cache_argument = _cache_argument(self.module)
        self.takes_position_ids = "position_ids" in inspect.signature(self.module.forward).parameters
        self.vocab_size = self.head.weight.shape[0] if self.sliceable_head else config.vocab_size

    @property
    def device(self) -> torch.device:
        return self.hf_model.device

    def step(self, input_ids: Tensor, attention_mask: Tensor, position_ids: Tensor, cache,
             first: int, last: int) -> tuple[Tensor, object]:
        """One forward pass over `input_ids` (after what `cache` holds). Returns float32 logits
        of the last position for vocabulary rows [first, last) and the updated cache."""
        kwargs = dict(input_ids=input_ids, attention_mask=attention_mask, use_cache=True)
        kwargs[self.cache_argument] = cache
        if self.takes_position_ids:
            kwargs["position_ids"] = position_ids
        if self.sliceable_head:
            output = self.backbone(**kwargs)
            bias = getattr(self.head, "bias", None)
            logits = F.linear(
                output["last_hidden_state"][:, -1],
                self.head.weight[first:last],
                None if bias is None else bias[first:last],
            )
        else:
            output = self.hf_model(**kwargs, logits_to_keep=1)
            logits = output["logits"][:, -1, first:last]
        return logits.float(), _returned_cache(output)
