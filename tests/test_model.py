"""EagerLLM: index tokens, batches, and the LM + GCT loss against plain-torch references."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from eager_ext import reference
from eager_llm.model import EagerConfig, EagerLLM, add_index_tokens
from eager_llm.model.eager import response_window
from eager_llm.tasks import IGNORE, TaskSample, collate
from tiny_models import tiny_model

WORDS = ["[PAD]", "[UNK]", "[EOS]", "the", "user", "bought", "next", "item", "is", "red", "lipstick", "###",
         "Instruction:", "Response:", ","]
INDEX_TOKENS = [f"<{letter}_{code}>" for letter in "ab" for code in range(4)]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def setup_model(architecture="llama"):
    tokenizer = tiny_tokenizer()
    model = tiny_model(architecture, vocab=len(WORDS))
    old_embed = model.get_input_embeddings().weight.detach().clone()
    old_head = model.get_output_embeddings().weight.detach().clone()
    first = add_index_tokens(model, tokenizer, INDEX_TOKENS)
    return tokenizer, model, first, old_embed, old_head


def samples():
    return [
        TaskSample("seqrec", "the user bought <a_1><b_2> , <a_0><b_3> next item is", "<a_2><b_1>", 3),
        TaskSample("index2item", "the item <a_3><b_0> is", "red lipstick", 5),
        TaskSample("seqrec", "the user bought <a_1><b_1>", "<a_0><b_0>", None),
    ]


def test_index_tokens_are_one_block_initialised_to_the_mean():
    tokenizer, model, first, old_embed, old_head = setup_model()
    assert first == len(WORDS)
    assert tokenizer.convert_tokens_to_ids(INDEX_TOKENS) == list(range(first, first + len(INDEX_TOKENS)))
    assert tokenizer("<a_1><b_2>", add_special_tokens=False)["input_ids"] == [first + 1, first + 6]
    embed, head = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    torch.testing.assert_close(embed[first:], old_embed.mean(0, keepdim=True).expand(len(INDEX_TOKENS), -1))
    torch.testing.assert_close(head[first:], old_head.mean(0, keepdim=True).expand(len(INDEX_TOKENS), -1))
    torch.testing.assert_close(embed[:first], old_embed)
    with pytest.raises(ValueError, match="already has index tokens"):
        add_index_tokens(model, tokenizer, INDEX_TOKENS[:2])


def tokens(tokenizer, sample):
    prompt = tokenizer(sample.prompt, add_special_tokens=False)["input_ids"]
    return prompt, tokenizer(sample.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]


def test_collate_left_pads_masks_the_prompt_and_ends_at_the_summary_token():
    tokenizer, *_ = setup_model()
    batch = collate(samples(), tokenizer)
    width = batch.input_ids.shape[1]
    for row, sample in enumerate(samples()):
        prompt, response = tokens(tokenizer, sample)
        start = width - len(prompt) - len(response)
        assert batch.input_ids[row, start:].tolist() == prompt + response
        assert batch.input_ids[row, :start].eq(tokenizer.pad_token_id).all()
        assert batch.attention_mask[row].tolist() == [0] * start + [1] * (width - start)
        assert batch.labels[row].tolist() == [IGNORE] * (width - len(response)) + response
        assert batch.summary_positions[row] == width - 1 and batch.input_ids[row, -1] == tokenizer.eos_token_id
    assert batch.target_items.tolist() == [3, 5, 0]
    assert batch.response_lengths.tolist() == [len(tokens(tokenizer, sample)[1]) for sample in samples()]
    short = collate(samples()[:1], tokenizer, max_length=5)
    assert short.input_ids.shape[1] == 5 and short.labels[0, -3:].tolist() == short.input_ids[0, -3:].tolist()
    with pytest.raises(ValueError, match="a seqrec response of 3 tokens does not fit max_length 3"):
        collate(samples()[:1], tokenizer, max_length=3)
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="no eos token"):
        collate(samples(), tokenizer)


def alone(model, prompt, response):
    """Reference for one unpadded sample: mean response NLL (full logits) and last hidden state."""
    ids = torch.tensor([prompt + response])
    output = model(input_ids=ids, output_hidden_states=True)
    log_probs = torch.log_softmax(output.logits[0, :-1].float(), -1)
    targets = ids[0, 1:]
    picked = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)[len(prompt) - 1:]
    return -picked.mean(), output.hidden_states[-1][0, -1]


@pytest.mark.parametrize("architecture", ["llama", "phi3", "gpt2", "gemma2"])
def test_loss_terms_match_each_sample_run_alone(architecture):
    """The padded batch, its position ids and the LM head (on response tokens, or on a window)
    give what each sample gives unpadded with the full head; GCT matches the plain-torch
    InfoNCE at its eos."""
    tokenizer, model, *_ = setup_model(architecture)
    g = torch.Generator().manual_seed(0)
    tables = {"semantic": torch.randn(6, 5, generator=g), "behavior": torch.randn(6, 3, generator=g)}
    eager = EagerLLM(model, tables, EagerConfig(num_negatives=4))
    # Gemma 2 soft-caps its logits: its loss takes the response-window path, the others the
    # head on response tokens; both must match the unpadded full-head reference.
    assert eager.head_on_response_tokens == (architecture != "gemma2")
    batch = collate(samples(), tokenizer)
    terms = eager(batch, generator=torch.Generator().manual_seed(7))

    references = [alone(model, *tokens(tokenizer, sample)) for sample in samples()]
    expected_lm = torch.stack([nll for nll, _ in references]).mean()  # per sample, then over samples
    torch.testing.assert_close(terms["lm"], expected_lm, rtol=1e-4, atol=1e-5)

    hidden = torch.stack([state for _, state in references])
    draws = torch.Generator().manual_seed(7)  # the negatives of each source, in order
    total = expected_lm
    for source in ["semantic", "behavior"]:
        negatives = torch.randperm(6, generator=draws)[:4]
        query = eager.projectors[source](F.normalize(hidden, dim=-1))
        valid = batch.target_items > 0
        expected = reference.gathered_infonce(query, tables[source], batch.target_items - 1, negatives, 0.1, valid)
        expected = expected * valid.sum() / 3  # summed over samples with a target, divided by all
        torch.testing.assert_close(terms[f"gct_{source}"], expected, rtol=1e-4, atol=1e-5)
        total = total + 0.1 * expected
    torch.testing.assert_close(terms["loss"], total, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("architecture", ["llama", "gemma2"])
@pytest.mark.parametrize("among_index_tokens", [False, True])
def test_history_targets_add_their_prompt_tokens_to_the_loss(architecture, among_index_tokens):
    """A sample with history spans learns their tokens as well: its loss is the NLL summed over
    the span tokens and the response, divided by the response's length (so each history item
    weighs about as much as the response); with the index-token block given, span tokens are
    scored among those tokens only. Computed here unpadded with the full head."""
    tokenizer, model, first, *_ = setup_model(architecture)
    block = (first, first + len(INDEX_TOKENS))
    eager = EagerLLM(model, {"semantic": torch.randn(6, 8)}, EagerConfig(num_negatives=4),
                     index_tokens=block if among_index_tokens else None)
    prompt = "the user bought <a_1><b_2> , <a_0><b_3> next item is"
    start = prompt.index("<a_0>")
    plain, spanned = samples()[0], TaskSample("seqrec", prompt, "<a_2><b_1>", 3, ((start, start + 10),))
    lm = eager(collate([spanned, samples()[1]], tokenizer), gct=False)["lm"]

    prompt_ids, response_ids = tokens(tokenizer, plain)
    ids = torch.tensor([prompt_ids + response_ids])
    logits = model(input_ids=ids).logits[0, :-1].float()
    picked = torch.log_softmax(logits, -1).gather(1, ids[0, 1:].unsqueeze(1)).squeeze(1)
    span = [prompt_ids.index(tokenizer.convert_tokens_to_ids(token)) - 1 for token in ("<a_0>", "<b_3>")]
    if among_index_tokens:
        picked[span] = torch.log_softmax(logits[span, block[0]:block[1]], -1).gather(
            1, (ids[0, 1:][span] - first).unsqueeze(1)).squeeze(1)
    learnt = span + list(range(len(prompt_ids) - 1, ids.shape[1] - 1))
    expected = (-picked[learnt].sum() / len(response_ids) + alone(model, *tokens(tokenizer, samples()[1]))[0]) / 2
    torch.testing.assert_close(lm, expected, rtol=1e-4, atol=1e-5)


def test_history_targets_outside_the_index_tokens_are_an_error():
    tokenizer, model, first, *_ = setup_model()
    eager = EagerLLM(model, {}, index_tokens=(first, first + len(INDEX_TOKENS)))
    prompt = "the user bought <a_1><b_2> next item is"
    wrong = TaskSample("seqrec", prompt, "<a_2><b_1>", 3, ((4, 8),))  # "user" is no index token
    with pytest.raises(ValueError, match="a history target is not an index token"):
        eager(collate([wrong], tokenizer), gct=False)


def test_a_batch_without_response_lengths_takes_its_labelled_tokens_as_the_responses():
    """Hand-built batches (no response_lengths) keep the loss they had: every labelled token is
    part of a response."""
    tokenizer, model, *_ = setup_model()
    eager = EagerLLM(model, {})
    batch = collate(samples(), tokenizer)
    bare = dataclasses.replace(batch, response_lengths=None).to("cpu")
    assert bare.response_lengths is None
    torch.testing.assert_close(eager(bare, gct=False)["lm"], eager(batch, gct=False)["lm"])


def test_response_window_covers_the_earliest_labelled_token():
    labels = torch.full((2, 9), IGNORE)
    labels[0, 6:] = 1
    labels[1, 4:] = 1  # the longest response starts at 4: logits from position 3 on
    assert response_window(labels) == 6
    assert response_window(torch.full((1, 4), IGNORE)) == 1


def test_gct_gradient_reaches_the_backbone():
    tokenizer, model, *_ = setup_model()
    eager = EagerLLM(model, {"semantic": torch.randn(6, 5)}, EagerConfig(num_negatives=3))
    terms = eager(collate(samples(), tokenizer))
    terms["gct_semantic"].backward()
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_bad_configuration():
    with pytest.raises(ValueError, match="temperature"):
        EagerConfig(temperature=0)
    with pytest.raises(ValueError, match="unknown sources"):
        EagerLLM(tiny_model("llama"), {"visual": torch.randn(3, 2)})


def test_exogenous_initialisation_places_similar_codes_close():
    tokenizer = tiny_tokenizer()
    model = tiny_model("llama", vocab=len(WORDS))
    old = model.get_input_embeddings().weight.detach().clone()
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 16, generator=g)
    # Position a: codes 0 and 1 nearly the same item, 2 different, 3 unused; position b: no source.
    position_a = torch.stack([base[0], base[0] + 0.01, base[1], torch.zeros(16)])
    first = add_index_tokens(model, tokenizer, INDEX_TOKENS, token_embeddings=[position_a, torch.zeros(4, 1)])
    rows = model.get_input_embeddings().weight[first:].detach()
    mean = old.mean(0)
    assert torch.allclose(rows[3], mean) and torch.allclose(rows[4:], mean.expand(4, -1))
    offsets = rows[:3] - mean
    assert (offsets[0] - offsets[1]).norm() < 0.1 * (offsets[0] - offsets[2]).norm()
    spread = (old - mean).norm(dim=1).mean()
    torch.testing.assert_close(offsets.norm(dim=1).mean(), spread, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="token_embeddings has 3 rows for 8 index tokens"):
        add_index_tokens(tiny_model("llama", vocab=len(WORDS)), tiny_tokenizer(), INDEX_TOKENS,
                         token_embeddings=[torch.zeros(3, 2)])
