"""The task mix: pools, responses, paraphrase draws, ratios and the fixed test instruction."""

import dataclasses
from collections import Counter

import pytest

from eager_llm.data import Dataset, ItemText, leave_one_out
from eager_llm.model.backbones import word_tokenizer
from eager_llm.tasks import (IGNORE, INSTRUCTIONS, TaskConfig, collate, evaluation_prompt_ids, evaluation_prompts,
                             fixed_texts, render, tokenize, training_samples)

SEQUENCES = [[1, 2, 3, 4, 5], [3, 1, 4, 2], [5, 4, 3]]
STRINGS = [f"<a_{i}><b_{i % 2}>" for i in range(1, 6)]
TITLES = ["Red Lipstick", "Blue Mascara", "", "Green Serum", "Pink Blush"]  # item 3 has no text
ALL = {task: 1.0 for task in INSTRUCTIONS}


def split():
    return leave_one_out(Dataset("hand", SEQUENCES, [ItemText(title=t) for t in TITLES]))


def matches_a_paraphrase(sample, task, **fields):
    return any(sample.prompt == render(p, **fields) for p in INSTRUCTIONS[task])


def test_every_task_builds_its_whole_pool_with_correct_responses():
    s = split()
    preferences = {1: "something red", 2: "a mascara"}
    samples = training_samples(s, STRINGS, TITLES, TaskConfig(ratios=ALL), preferences)
    counts = Counter(sample.task for sample in samples)
    with_title = sum(bool(t) for t in TITLES)
    assert counts == {
        "seqrec": len(s.train), "item2index": with_title, "index2item": with_title,
        "history_index_to_title": sum(bool(TITLES[x.target - 1]) for x in s.train),
        "history_title_to_index": len(s.train),
        "preference_search": sum(x.user in preferences for x in s.train),
    }
    for sample in samples:
        target = sample.target_item
        if sample.task in ("seqrec", "item2index", "history_title_to_index", "preference_search"):
            assert sample.response == STRINGS[target - 1]
        else:
            assert sample.response == TITLES[target - 1]
    train = {(x.history, x.target) for x in s.train}
    for sample in (x for x in samples if x.task == "seqrec"):
        # The prompt lists the sample's history in order, inside one of the paraphrases.
        assert any(t == sample.target_item and matches_a_paraphrase(
            sample, "seqrec", history=", ".join(STRINGS[i - 1] for i in h)) for h, t in train)


def test_ratios_draws_and_determinism():
    s = split()
    config = TaskConfig(ratios={"seqrec": 0.5, "index2item": 1.0}, seed=3)
    first = training_samples(s, STRINGS, TITLES, config)
    assert Counter(x.task for x in first) == {"seqrec": round(0.5 * len(s.train)), "index2item": 4}
    assert first == training_samples(s, STRINGS, TITLES, config)
    other = training_samples(s, STRINGS, TITLES, TaskConfig(ratios=config.ratios, seed=4))
    assert first != other
    assert not [x for x in training_samples(s, STRINGS, TITLES, TaskConfig(ratios=ALL)) if x.task == "preference_search"]


def test_paraphrases_are_drawn_across_samples():
    s = split()
    samples = [x for x in training_samples(s, STRINGS, TITLES, TaskConfig(ratios={"index2item": 1.0}))]
    used = {next(p for p in INSTRUCTIONS["index2item"] if x.prompt == render(p, item=STRINGS[x.target_item - 1]))
            for x in samples}
    assert len(used) >= 2


def test_evaluation_prompts_use_the_first_instruction():
    s = split()
    prompts = evaluation_prompts(s.test, STRINGS)
    assert prompts[0] == render(INSTRUCTIONS["seqrec"][0], history=", ".join(STRINGS[i - 1] for i in (1, 2, 3, 4)))
    assert len(prompts) == len(SEQUENCES)


def test_evaluation_prompt_ids_are_each_prompt_tokenised_alone():
    s = split()
    tokenizer = word_tokenizer(TITLES + fixed_texts())
    expected = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in evaluation_prompts(s.test, STRINGS)]
    assert evaluation_prompt_ids(s.test, STRINGS, tokenizer) == expected
    assert evaluation_prompt_ids([], STRINGS, tokenizer) == []


def test_bad_configuration():
    with pytest.raises(ValueError, match="unknown tasks \\['rating'\\]"):
        TaskConfig(ratios={"rating": 1.0})
    with pytest.raises(ValueError, match="must lie in \\[0, 1\\]"):
        TaskConfig(ratios={"seqrec": 1.5})
    with pytest.raises(ValueError, match="item_strings has 5 entries but item_titles 4"):
        training_samples(split(), STRINGS, TITLES[:4])


def bpe_tokenizer(texts):
    """A byte-level BPE like SmolLM2's, trained here on ``texts`` (nothing is downloaded)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<eos>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>")


@pytest.mark.parametrize("make_tokenizer", [word_tokenizer, bpe_tokenizer])
def test_history_targets_label_each_history_item_after_the_first(make_tokenizer):
    tokenizer = make_tokenizer(TITLES + fixed_texts())
    tokenizer.add_tokens(sorted({token for string in STRINGS for token in string.replace("><", "> <").split()}))
    s = split()
    samples = training_samples(s, STRINGS, TITLES, TaskConfig(ratios={"seqrec": 1.0, "index2item": 1.0},
                                                              history_targets=True))
    seqrec = [x for x in samples if x.task == "seqrec"]
    assert len(seqrec) == len(s.train)
    plain = training_samples(s, STRINGS, TITLES, TaskConfig(ratios={"seqrec": 1.0, "index2item": 1.0}))
    assert [dataclasses.replace(x, history_spans=()) for x in samples] == plain  # the same draws
    batch = collate(samples, tokenizer)

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    for row, sample in enumerate(samples):
        response = ids(sample.response) + [tokenizer.eos_token_id]
        labels, prompt_labels = batch.labels[row, -len(response):], batch.labels[row, :-len(response)]
        assert labels.tolist() == response
        labelled = prompt_labels != IGNORE
        assert prompt_labels[labelled].tolist() == batch.input_ids[row, :-len(response)][labelled].tolist()
        history = () if sample.task != "seqrec" else next(
            x.history for x in s.train
            if matches_a_paraphrase(sample, "seqrec", history=", ".join(STRINGS[i - 1] for i in x.history)))
        assert prompt_labels[labelled].tolist() == [t for item in history[1:] for t in ids(STRINGS[item - 1])]
    # Cut the longest prompt one token after its first history target: the labels go with it.
    row, longest = max(enumerate(tokenize(seqrec, tokenizer)), key=lambda pair: len(pair[1]))
    first = int((longest.prompt_labels != IGNORE).nonzero()[0])
    truncated = collate([seqrec[row]], tokenizer, max_length=len(longest) - first - 1)
    kept = truncated.labels[0] != IGNORE
    assert truncated.labels[0, kept].tolist() == truncated.input_ids[0, kept].tolist()
    assert truncated.labels[0, :-len(longest.response)].tolist() == longest.prompt_labels[first + 1:].tolist()


def test_history_targets_need_a_fast_tokenizer():
    class Slow:
        is_fast, eos_token_id = False, 0

    samples = training_samples(split(), STRINGS, TITLES, TaskConfig(ratios={"seqrec": 1.0}, history_targets=True))
    with pytest.raises(ValueError, match="history_targets needs a fast tokenizer.*Slow is not"):
        tokenize(samples, Slow())
