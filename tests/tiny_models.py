"""Tiny random causal LMs built from configs (nothing is downloaded)."""

import torch
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

VOCAB = 64


def tiny_model(architecture: str, seed: int = 0, vocab: int = VOCAB):
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, bos_token_id=0, eos_token_id=1, pad_token_id=2)
    if architecture == "llama":
        config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, **common)
        model = LlamaForCausalLM(config)
    elif architecture == "phi3":  # a Llama with dropout (model.dropout > 0); eval() turns it off
        config = Phi3Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, max_position_embeddings=128, resid_pdrop=0.1,
                            attention_dropout=0.1, **common)
        model = Phi3ForCausalLM(config)
    elif architecture == "qwen2":
        config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                             num_key_value_heads=2, max_position_embeddings=128, **common)
        model = Qwen2ForCausalLM(config)
    elif architecture == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=128, **common)
        model = GPT2LMHeadModel(config)
    elif architecture == "gemma2":  # soft-capped logits: the head cannot be sliced
        config = Gemma2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=8, max_position_embeddings=128,
                              final_logit_softcapping=30.0, **common)
        model = Gemma2ForCausalLM(config)
    else:
        raise ValueError(architecture)
    # Random weights give nearly uniform logits; sharpen them so rankings are well separated.
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(8.0)
    return model.eval()


def with_lora(model, seed: int = 1):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    return get_peft_model(model, config).eval()


def left_pad(prompts, pad_id=2):
    length = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros(len(prompts), length, dtype=torch.long)
    for row, prompt in enumerate(prompts):
        input_ids[row, length - len(prompt):] = torch.tensor(prompt)
        attention_mask[row, length - len(prompt):] = 1
    return input_ids, attention_mask


@torch.no_grad()
def exhaustive_scores(model, prompt, item_tokens, columns=None):
    """Summed log-probability of every item after `prompt`, by teacher forcing each item
    (normalised over `columns` = (first, last) token range, or the full vocabulary)."""
    n, depth = item_tokens.shape
    sequences = torch.cat([torch.tensor(prompt).expand(n, -1), item_tokens], dim=1)
    logits = model(input_ids=sequences).logits[:, len(prompt) - 1 : -1].float()
    first = 0
    if columns is not None:
        first, last = columns
        logits = logits[..., first:last]
    log_probs = torch.log_softmax(logits, dim=-1)
    return log_probs.gather(2, (item_tokens - first).unsqueeze(-1)).squeeze(-1).sum(1)
