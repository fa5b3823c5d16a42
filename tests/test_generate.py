"""constrained_beam_search and TrieLogitsProcessor on tiny random HF models."""

import pytest
import torch

import eager_ext
from eager_llm.generate import TrieLogitsProcessor, check_generation_config, constrained_beam_search
from tiny_models import VOCAB, exhaustive_scores, left_pad, tiny_model, with_lora
from trie_helpers import random_codes

ITEM_FIRST = 40  # item tokens occupy 40..63, 8 codes per level, 3 levels
CODES, DEPTH = 8, 3
PROMPTS = [[0, 5, 9, 11, 3], [0, 7], [0, 12, 13, 14, 15, 16, 17, 4]]


def item_tokens(num_items, seed=0, codes=CODES, depth=DEPTH):
    rows = random_codes(num_items, depth, codes, seed)
    return rows + ITEM_FIRST + torch.arange(depth) * codes


def expected_ranking(model, tokens, columns, k):
    rankings = []
    for prompt in PROMPTS:
        scores = exhaustive_scores(model, prompt, tokens, columns)
        best = torch.sort(scores, descending=True, stable=True)
        rankings.append((best.indices[:k], best.values[:k]))
    return rankings


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gpt2"])
@pytest.mark.parametrize("score_space", ["vocab", "items"])
@pytest.mark.parametrize("lora", [False, True])
def test_enough_beams_finds_the_exhaustive_ranking(architecture, score_space, lora):
    model = tiny_model(architecture)
    if lora:
        model = with_lora(model)
    tokens = item_tokens(30)
    trie = eager_ext.ItemTrie.from_codes(tokens)
    input_ids, attention_mask = left_pad(PROMPTS)
    items, scores = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=30,
                                            score_space=score_space, item_tokens=(ITEM_FIRST, VOCAB))
    columns = (ITEM_FIRST, VOCAB) if score_space == "items" else None
    for row, (expected_items, expected_scores) in enumerate(expected_ranking(model, tokens, columns, 30)):
        assert torch.equal(items[row], expected_items), row
        torch.testing.assert_close(scores[row], expected_scores, rtol=0, atol=1e-4)


@pytest.mark.parametrize("score_space", ["vocab", "items"])
def test_models_with_soft_capped_logits_use_their_own_forward(score_space):
    model = tiny_model("gemma2")
    tokens = item_tokens(20, seed=4)
    trie = eager_ext.ItemTrie.from_codes(tokens)
    items, scores = constrained_beam_search(model, *left_pad(PROMPTS), trie, num_beams=20,
                                            score_space=score_space, item_tokens=(ITEM_FIRST, VOCAB))
    columns = (ITEM_FIRST, VOCAB) if score_space == "items" else None
    for row, (expected_items, expected_scores) in enumerate(expected_ranking(model, tokens, columns, 20)):
        assert torch.equal(items[row], expected_items), row
        torch.testing.assert_close(scores[row], expected_scores, rtol=0, atol=1e-4)


def test_fewer_beams_returns_valid_items_best_first():
    model = tiny_model("llama")
    tokens = item_tokens(60, seed=3)
    trie = eager_ext.ItemTrie.from_codes(tokens)
    input_ids, attention_mask = left_pad(PROMPTS)
    items, scores = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=5,
                                            num_return_sequences=3, item_tokens=(ITEM_FIRST, VOCAB))
    assert items.shape == scores.shape == (3, 3)
    assert bool((items >= 0).all()) and bool((scores[:, :-1] >= scores[:, 1:]).all())
    # Scores are the items' true summed log-probabilities (over the item tokens).
    for row, prompt in enumerate(PROMPTS):
        exact = exhaustive_scores(model, prompt, tokens, (ITEM_FIRST, VOCAB))
        torch.testing.assert_close(scores[row], exact[items[row]], rtol=0, atol=1e-4)


def test_more_beams_than_items_pads_with_minus_one():
    model = tiny_model("gpt2")
    tokens = item_tokens(4, seed=5)
    trie = eager_ext.ItemTrie.from_codes(tokens)
    input_ids, attention_mask = left_pad(PROMPTS[:2])
    items, scores = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=7)
    assert sorted(items[0, :4].tolist()) == [0, 1, 2, 3]
    assert items[:, 4:].eq(-1).all() and scores[:, 4:].eq(float("-inf")).all()


def test_batched_prompts_equal_single_prompts():
    model = tiny_model("qwen2")
    trie = eager_ext.ItemTrie.from_codes(item_tokens(40, seed=7))
    batched = constrained_beam_search(model, *left_pad(PROMPTS), trie, num_beams=6)
    for row, prompt in enumerate(PROMPTS):
        single = constrained_beam_search(model, *left_pad([prompt]), trie, num_beams=6)
        assert torch.equal(batched[0][row], single[0][0])
        torch.testing.assert_close(batched[1][row], single[1][0], rtol=0, atol=1e-4)


def test_single_child_chains():
    model = tiny_model("llama")
    tokens = torch.tensor([[40, 48, 56], [41, 49, 57]])  # each first token has one continuation
    trie = eager_ext.ItemTrie.from_codes(tokens)
    items, _ = constrained_beam_search(model, *left_pad(PROMPTS), trie, num_beams=2)
    assert sorted(items[0].tolist()) == [0, 1]


class _CountingSyncs:
    """Counts Python-visible host syncs (tensor -> Python value conversions)."""

    NAMES = ["item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy"]

    def __enter__(self):
        self.count, self.saved = 0, {}
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            self.saved[name] = original

            def counted(tensor, *args, _original=original, **kwargs):
                self.count += 1
                return _original(tensor, *args, **kwargs)

            setattr(torch.Tensor, name, counted)
        return self

    def __exit__(self, *exc):
        for name, original in self.saved.items():
            setattr(torch.Tensor, name, original)


class _FakeCache:
    def batch_repeat_interleave(self, repeats):
        pass

    def reorder_cache(self, beam_idx):
        pass


class _FakeLM(torch.nn.Module):
    """A 'model' whose forward is random logits and does no syncs of its own."""

    def __init__(self, vocab):
        super().__init__()
        self.head = torch.nn.Linear(4, vocab, bias=False)
        self.base_model = self._Backbone()
        self.config = type("Config", (), {"vocab_size": vocab})()

    class _Backbone(torch.nn.Module):
        def forward(self, input_ids=None, attention_mask=None, position_ids=None, cache=None, use_cache=True):
            hidden = torch.randn(input_ids.shape[0], input_ids.shape[1], 4)
            return {"last_hidden_state": hidden, "cache": cache or _FakeCache()}

    def get_output_embeddings(self):
        return self.head

    @property
    def device(self):
        return torch.device("cpu")


def test_no_host_sync_inside_the_step_loop():
    counts = []
    for depth in (2, 6):
        tokens = random_codes(50, depth, 4, seed=depth) + torch.arange(depth) * 4
        trie = eager_ext.ItemTrie.from_codes(tokens)
        model = _FakeLM(vocab=4 * depth)
        with _CountingSyncs() as syncs:
            constrained_beam_search(model, *left_pad([[0, 1, 2]]), trie, num_beams=4, score_space="vocab")
        counts.append(syncs.count)
    assert counts[0] == counts[1], f"syncs grow with the number of steps: {counts}"


def dict_trie_fn(tokens, prompt_length, eos):
    children = {}
    for row in tokens.tolist():
        for d in range(len(row)):
            children.setdefault(tuple(row[:d]), set()).add(row[d])
    children = {k: sorted(v) for k, v in children.items()}

    def allowed(batch_id, sequence):
        return children.get(tuple(sequence[prompt_length:].tolist()), [eos])

    return allowed


@pytest.mark.parametrize("architecture,num_items,num_beams", [("llama", 30, 4), ("gpt2", 3, 6), ("qwen2", 50, 8)])
def test_processor_matches_prefix_allowed_tokens_fn(architecture, num_items, num_beams):
    model = tiny_model(architecture)
    tokens = item_tokens(num_items, seed=11)
    trie = eager_ext.ItemTrie.from_codes(tokens)
    input_ids, attention_mask = left_pad(PROMPTS)
    common = dict(input_ids=input_ids, attention_mask=attention_mask, num_beams=num_beams, do_sample=False,
                  num_return_sequences=num_beams, max_new_tokens=DEPTH, return_dict_in_generate=True,
                  output_scores=True, length_penalty=0.0, early_stopping=True, pad_token_id=2, eos_token_id=1)
    ours = model.generate(logits_processor=[TrieLogitsProcessor(trie, input_ids.shape[1], eos_token_id=1)], **common)
    theirs = model.generate(prefix_allowed_tokens_fn=dict_trie_fn(tokens, input_ids.shape[1], 1), **common)
    assert torch.equal(ours.sequences, theirs.sequences)
    torch.testing.assert_close(ours.sequences_scores, theirs.sequences_scores)


def test_processor_agrees_with_constrained_beam_search_in_vocab_space():
    model = tiny_model("llama")
    tokens = item_tokens(30, seed=2)
    trie = eager_ext.ItemTrie.from_codes(tokens)
    input_ids, attention_mask = left_pad(PROMPTS)
    out = model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=30, do_sample=False,
                         num_return_sequences=30, max_new_tokens=DEPTH, return_dict_in_generate=True,
                         output_scores=True, length_penalty=0.0, pad_token_id=2,
                         logits_processor=[TrieLogitsProcessor(trie, input_ids.shape[1])])
    hf_items = trie.lookup(out.sequences[:, input_ids.shape[1]:]).view(3, 30)
    items, scores = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=30, score_space="vocab")
    assert torch.equal(hf_items, items)
    torch.testing.assert_close(out.sequences_scores.view(3, 30), scores, rtol=0, atol=1e-4)


def test_errors():
    model = tiny_model("llama")
    trie = eager_ext.ItemTrie.from_codes(item_tokens(10))
    input_ids, attention_mask = left_pad(PROMPTS)
    with pytest.raises(ValueError, match="left padding"):
        constrained_beam_search(model, input_ids, attention_mask.flip(1), trie)
    with pytest.raises(ValueError, match="score_space"):
        constrained_beam_search(model, input_ids, attention_mask, trie, score_space="logits")
    with pytest.raises(ValueError, match="num_return_sequences"):
        constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=2, num_return_sequences=3)
    with pytest.raises(ValueError, match="must contain every token of the trie"):
        constrained_beam_search(model, input_ids, attention_mask, trie, item_tokens=(41, 64))
    with pytest.raises(TypeError, match="ItemTrie"):
        constrained_beam_search(model, input_ids, attention_mask, {"not": "a trie"})
    model.generation_config.do_sample = True
    with pytest.raises(ValueError, match="do_sample=True"):
        TrieLogitsProcessor(trie, model=model)
    with pytest.raises(ValueError, match="do_sample"):
        check_generation_config(model.generation_config)


def test_processor_without_eos_refuses_to_go_past_the_item():
    model = tiny_model("gpt2")
    trie = eager_ext.ItemTrie.from_codes(item_tokens(10))
    input_ids, attention_mask = left_pad(PROMPTS)
    with pytest.raises(ValueError, match="max_new_tokens=3"):
        model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=2, do_sample=False,
                       max_new_tokens=DEPTH + 1, min_new_tokens=DEPTH + 1, pad_token_id=2,
                       logits_processor=[TrieLogitsProcessor(trie, input_ids.shape[1])])
