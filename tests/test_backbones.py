"""The tiny from-scratch backbone: with dropout it must be the same decoder as the Llama it
replaces (checked against Hugging Face's Llama holding the same weights), with dropout active
only in training."""

import pytest
import torch

from eager_llm.model.backbones import tiny_llama, word_tokenizer

SIZES = dict(hidden_size=32, intermediate_size=48, layers=2, heads=4)


def tokenizer():
    return word_tokenizer(["the user bought a red lipstick and a blue brush"])


def llama_with_weights_of(phi3):
    """A Hugging Face Llama of the same sizes holding ``phi3``'s weights, unfused."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = phi3.config
    llama = LlamaForCausalLM(LlamaConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size,
                                         intermediate_size=config.intermediate_size,
                                         num_hidden_layers=config.num_hidden_layers,
                                         num_attention_heads=config.num_attention_heads,
                                         num_key_value_heads=config.num_key_value_heads,
                                         max_position_embeddings=config.max_position_embeddings))
    weights = {}
    for name, tensor in phi3.state_dict().items():
        if name.endswith("self_attn.qkv_proj.weight"):
            prefix = name[:-len("qkv_proj.weight")]
            q, k, v = tensor.split([config.hidden_size] * 3)
            weights.update({prefix + "q_proj.weight": q, prefix + "k_proj.weight": k, prefix + "v_proj.weight": v})
        elif name.endswith("mlp.gate_up_proj.weight"):
            prefix = name[:-len("gate_up_proj.weight")]
            gate, up = tensor.chunk(2)
            weights.update({prefix + "gate_proj.weight": gate, prefix + "up_proj.weight": up})
        else:
            weights[name] = tensor
    llama.load_state_dict(weights)
    return llama.eval()


def test_without_dropout_the_tiny_model_is_a_llama():
    from transformers import LlamaForCausalLM

    assert type(tiny_llama(tokenizer(), **SIZES)) is LlamaForCausalLM


def test_with_dropout_it_is_the_llama_decoder_and_drops_only_in_training():
    model = tiny_llama(tokenizer(), **SIZES, dropout=0.3)
    ids = torch.randint(3, len(tokenizer()), (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding, as the trainer batches
    model.eval()
    with torch.no_grad():
        expected = llama_with_weights_of(model)(input_ids=ids, attention_mask=mask).logits
        torch.testing.assert_close(model(input_ids=ids, attention_mask=mask).logits, expected, rtol=1e-5, atol=1e-5)
        model.train()
        first, second = (model(input_ids=ids, attention_mask=mask).logits for _ in range(2))
    assert not torch.allclose(first, second)
    assert not torch.allclose(first, expected)
    assert model.config.resid_pdrop == 0.3 and model.config.attention_dropout == 0.3


@pytest.mark.parametrize("dropout", [-0.1, 1.0])
def test_a_dropout_outside_zero_to_one_is_an_error(dropout):
    with pytest.raises(ValueError, match="dropout must lie in"):
        tiny_llama(tokenizer(), **SIZES, dropout=dropout)
