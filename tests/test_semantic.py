"""Semantic text embeddings (hashed and a tiny local HF encoder) and the embedding cache."""

import torch


from eager_llm.data import ItemText
from eager_llm.embed.cache import cached_embeddings
from eager_llm.embed.semantic import TextEncoderConfig, encode_items, hashed_bag_of_words


def test_hashed_bag_of_words_is_stable_and_meaningful():
    vectors = hashed_bag_of_words(["red nail polish", "Red Nail Polish!", "polish for nails, red", "hair dryer", ""], 256)
    assert torch.equal(vectors[0], vectors[1])
    cosine = vectors @ vectors.T
    assert cosine[0, 2] > cosine[0, 3] + 0.3
    assert vectors[4].abs().sum() == 0
    assert torch.allclose(vectors[:4].norm(dim=1), torch.ones(4))


def test_fields_are_encoded_separately_and_averaged():
    items = [ItemText(title="red lipstick"), ItemText(title="red lipstick", brand="Acme Beauty"), ItemText()]
    config = TextEncoderConfig(model="hashed-bow", hashed_dim=64)
    out = encode_items(items, config, progress=False)
    title, brand = hashed_bag_of_words(["red lipstick", "Acme Beauty"], 64)
    torch.testing.assert_close(out[0], title)
    torch.testing.assert_close(out[1], (title + brand) / 2)
    assert out[2].abs().sum() == 0


def tiny_bert_folder(path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "red", "lipstick", "acme", "beauty", "gloss", "serum", "face"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]")
    fast.save_pretrained(path)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(path)
    return fast


def test_hf_encoder_mean_pools_over_real_tokens(tmp_path):
    from transformers import AutoModel

    tokenizer = tiny_bert_folder(tmp_path)
    items = [ItemText(title="red lipstick gloss", brand="acme"), ItemText(title="face serum"), ItemText(title="red")]
    out = encode_items(items, TextEncoderConfig(model=str(tmp_path), batch_size=2), progress=False)
    model = AutoModel.from_pretrained(tmp_path).eval()

    def alone(text):  # one text at a time: no padding at all
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            return model(**ids).last_hidden_state[0].mean(0)

    torch.testing.assert_close(out[0], (alone("red lipstick gloss") + alone("acme")) / 2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[1], alone("face serum"), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out[2], alone("red"), rtol=1e-4, atol=1e-5)


def test_cache_reuses_and_invalidates(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return torch.randn(5, 3)

    key = {"encoder": "hashed-bow", "fields": ["title"], "data": "abc"}
    first, hit = cached_embeddings(str(tmp_path), "semantic", key, compute)
    again, hit_again = cached_embeddings(str(tmp_path), "semantic", key, compute)
    assert (hit, hit_again, len(calls)) == (False, True, 1) and torch.equal(first, again)
    _, hit_changed = cached_embeddings(str(tmp_path), "semantic", {**key, "data": "abd"}, compute)
    assert not hit_changed and len(calls) == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_config():
    import pytest

    with pytest.raises(ValueError, match="fields must be"):
        TextEncoderConfig(fields=("title", "price"))
