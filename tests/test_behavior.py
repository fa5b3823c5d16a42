"""Behavior models (DIN, SASRec): learning, determinism, no leakage, config errors, and the
pieces checked against direct reference computations."""

import dataclasses
import math
import random
from collections import Counter

import pytest
import torch

from eager_llm.data import Dataset, ItemText, Sample, Split, demo_dataset, leave_one_out
from eager_llm.embed import behavior
from eager_llm.embed.behavior import (
    DIN,
    BehaviorConfig,
    SASRec,
    build_model,
    popularity_metrics,
    train_behavior_model,
    training_windows,
)

# Small models, so that the whole file runs in well under a minute on two shared cores.
TINY = {"dim": 32, "max_length": 10, "lr": 5e-3, "device": "cpu"}
TINY_DIN = {**TINY, "attention_hidden": 16, "mlp_hidden": (64,), "num_negatives": 20, "batch_size": 64}
TINY_MODEL = {"sasrec": TINY, "din": TINY_DIN}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Two OpenMP threads on two cores that other jobs share run small ops many times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def demo_subset(users: int) -> Dataset:
    dataset = demo_dataset(seed=0)
    return Dataset(dataset.name, dataset.sequences[:users], dataset.item_text)


def config(model: str, **overrides) -> BehaviorConfig:
    return BehaviorConfig(model=model, **{**TINY_MODEL[model], **overrides})


@pytest.fixture(scope="module")
def small_split():
    return leave_one_out(demo_subset(300))


# --- learning -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["sasrec", "din"])
def test_beats_popularity_on_demo(model):
    dataset = demo_subset(800)
    split = leave_one_out(dataset)
    result = train_behavior_model(split, dataset.num_items, config(model, max_epochs=8, eval_every=8), progress=False)
    popular = popularity_metrics(split, dataset.num_items)
    assert result.item_embeddings.shape == (dataset.num_items, 32)
    assert result.item_embeddings.dtype == torch.float32
    assert result.epochs == result.best_epoch == 8
    # Popularity reaches about 0.06 here; the planted chains let a sequential model reach about 0.3.
    assert result.test_metrics["recall@10"] > 2.5 * popular["recall@10"]
    assert set(result.test_metrics) == {f"{m}@{k}" for m in ("recall", "ndcg") for k in (1, 5, 10, 20)}


# --- determinism and no leakage ---------------------------------------------------------------


@pytest.mark.parametrize("model", ["sasrec", "din"])
def test_same_seed_same_result_and_caller_rng_untouched(model, small_split):
    cfg = config(model, max_epochs=2)
    torch.manual_seed(123)
    first = train_behavior_model(small_split, 600, cfg, progress=False)
    after_run = torch.rand(3)
    torch.manual_seed(123)
    assert torch.equal(after_run, torch.rand(3))
    second = train_behavior_model(small_split, 600, cfg, progress=False)
    assert torch.equal(first.item_embeddings, second.item_embeddings)
    assert first.test_metrics == second.test_metrics
    other_seed = train_behavior_model(small_split, 600, dataclasses.replace(cfg, seed=1), progress=False)
    assert not torch.equal(first.item_embeddings, other_seed.item_embeddings)


@pytest.mark.parametrize("model", ["sasrec", "din"])
def test_test_samples_do_not_influence_training(model, small_split):
    """Same training and validation data, different test targets: identical weights."""
    cfg = config(model, max_epochs=2)
    shifted = [Sample(s.user, s.history, s.target % 600 + 1) for s in small_split.test]
    original = train_behavior_model(small_split, 600, cfg, progress=False)
    changed = train_behavior_model(dataclasses.replace(small_split, test=shifted), 600, cfg, progress=False)
    assert torch.equal(original.item_embeddings, changed.item_embeddings)
    assert original.valid_metrics == changed.valid_metrics
    assert original.test_metrics != changed.test_metrics  # the change was seen, by the test metrics only


FRESH = 10  # items 601..610 occur only as validation and test targets


@pytest.fixture(scope="module")
def fresh_target_data():
    """The demo users, each with its last two items replaced by two of 10 fresh items that no
    training sequence contains; plus a leaky split that trains on the full sequences."""
    base = demo_subset(300)
    rng = random.Random(0)
    sequences = [s[:-2] + rng.sample(range(601, 601 + FRESH), 2) for s in base.sequences]
    dataset = Dataset("fresh", sequences, base.item_text + [ItemText() for _ in range(FRESH)])
    honest = leave_one_out(dataset)
    assert not {i for s in honest.train_sequences for i in s} & set(range(601, 611))
    return dataset, honest, dataclasses.replace(honest, train_sequences=sequences)


def test_sasrec_cannot_rank_items_it_never_trained_on(fresh_target_data):
    dataset, honest, leaky = fresh_target_data
    cfg = config("sasrec", max_epochs=6, eval_every=6)
    clean = train_behavior_model(honest, dataset.num_items, cfg, progress=False)
    leaked = train_behavior_model(leaky, dataset.num_items, cfg, progress=False)
    # Every test target is one of 10 fresh items: a model that saw them as targets (the control)
    # ranks them high; trained on train_sequences only, the full softmax pushes them to the bottom.
    assert leaked.test_metrics["recall@10"] > 0.5
    assert clean.test_metrics["recall@10"] == 0.0


def test_din_never_updates_items_it_never_trained_on(fresh_target_data):
    dataset, honest, leaky = fresh_target_data
    cfg = config("din", max_epochs=2)
    torch.manual_seed(cfg.seed)  # train_behavior_model builds the model right after this seeding
    initial = build_model(dataset.num_items, cfg, honest.train_sequences).item_embedding.weight[1:].detach()
    clean = train_behavior_model(honest, dataset.num_items, cfg, progress=False)
    leaked = train_behavior_model(leaky, dataset.num_items, cfg, progress=False)
    fresh = slice(600, 600 + FRESH)
    # Never a target and, with popularity sampling, never a negative: no gradient ever reaches them.
    assert torch.equal(clean.item_embeddings[fresh], initial[fresh])
    assert not torch.equal(clean.item_embeddings[:600], initial[:600])
    assert not torch.allclose(leaked.item_embeddings[fresh], initial[fresh])


def test_early_stopping_keeps_the_best_validation_epoch(fresh_target_data):
    dataset, honest, _ = fresh_target_data
    result = train_behavior_model(honest, dataset.num_items, config("sasrec", max_epochs=50, patience=2),
                                  progress=False)
    # Fresh validation targets are never recalled, so the first validation stays the best.
    assert result.valid_metrics["recall@10"] == 0.0
    assert (result.best_epoch, result.epochs) == (1, 3)


# --- pieces against direct references --------------------------------------------------------


def test_training_windows_cover_every_target_once_or_every_prefix():
    sequences = [[1, 2, 3, 4, 5, 6], [7, 8], [9]]
    tiles = training_windows(sequences, max_length=2, every_prefix=False)
    assert tiles.tolist() == [[4, 5, 6], [2, 3, 4], [1, 2, 0], [7, 8, 0]]
    prefixes = training_windows(sequences, max_length=2, every_prefix=True)
    assert prefixes.tolist() == [[4, 5, 6], [3, 4, 5], [2, 3, 4], [1, 2, 3], [1, 2, 0], [7, 8, 0]]


def test_din_score_matches_the_activation_unit_on_concatenated_features():
    torch.manual_seed(0)
    model = DIN(30, BehaviorConfig(model="din", dim=8, attention_hidden=5, mlp_hidden=(7, 3)), torch.ones(30))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(std=0.5)
    history = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8]])
    candidates = torch.tensor([[1, 2, 3], [9, 10, 30]])
    expected = torch.zeros(2, 3)
    for b in range(2):
        for c in range(3):
            t = model.item_embedding.weight[candidates[b, c]]
            interest = torch.zeros(8)
            for item in history[b][history[b] > 0]:
                h = model.item_embedding.weight[item]
                interest += model.attention(torch.cat([h, t, h - t, h * t])) * h
            expected[b, c] = model.mlp(torch.cat([interest, t, interest * t]))[0]
    torch.testing.assert_close(model.score(history, candidates), expected, rtol=1e-5, atol=1e-5)


def test_din_full_ranking_in_chunks_equals_one_pass(monkeypatch):
    torch.manual_seed(0)
    model = DIN(50, BehaviorConfig(model="din", dim=8, attention_hidden=4), torch.ones(50)).eval()
    history = torch.tensor([[3, 4, 0], [5, 6, 7]])
    whole = model.score(history, torch.arange(1, 51).expand(2, -1))
    monkeypatch.setattr(behavior, "DIN_CHUNK_ELEMENTS", 2 * 3 * 4 * 7)  # chunks of 7 items
    torch.testing.assert_close(model.score_items(history), whole)


def test_sasrec_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    model = SASRec(20, BehaviorConfig(model="sasrec", dim=16, max_length=6)).eval()
    a = torch.tensor([[1, 2, 3, 4, 5, 6]])
    b = torch.tensor([[1, 2, 3, 9, 0, 0]])
    torch.testing.assert_close(model.encode(a)[:, :3], model.encode(b)[:, :3])
    padded = model.score_items(torch.tensor([[1, 2, 3, 0, 0, 0]]))
    unpadded = model.encode(torch.tensor([[1, 2, 3]]))[:, -1] @ model.item_embedding.weight[1:].T
    torch.testing.assert_close(padded, unpadded)


def test_popularity_metrics_match_counting_by_hand():
    split = Split(
        train_sequences=[[1, 2, 3], [3, 2], [3, 4]],
        train=[],
        valid=[Sample(1, (1,), 2)] * 3,
        test=[Sample(1, (1,), 3), Sample(2, (2,), 2), Sample(3, (4,), 1), Sample(3, (4,), 5)],
    )
    counts = Counter(i for s in split.train_sequences for i in s)
    order = sorted(range(1, 6), key=lambda i: (-counts[i], i))
    assert [order.index(s.target) + 1 for s in split.test] == [1, 2, 3, 5]  # the ranks used below
    metrics = popularity_metrics(split, 5, ks=(1, 2, 5))
    assert metrics["recall@1"] == 1 / 4
    assert metrics["recall@2"] == 2 / 4
    assert metrics["recall@5"] == 1.0
    assert metrics["ndcg@2"] == pytest.approx((1 + 1 / math.log2(3)) / 4)


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [
    ("model", "bert4rec"), ("device", "tpu"), ("dim", 0), ("layers", 0), ("heads", 3), ("heads", 0),
    ("dropout", 1.0), ("dropout", -0.1), ("max_length", 0), ("batch_size", 2.5), ("lr", 0.0), ("lr", float("nan")),
    ("weight_decay", -1e-4), ("max_epochs", 0), ("patience", 0), ("eval_every", 0), ("num_negatives", 0),
    ("attention_hidden", 0), ("mlp_hidden", ()), ("mlp_hidden", (8, 0)), ("seed", -1), ("dim", True),
])
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"BehaviorConfig.{field} "):
        BehaviorConfig(**{field: value})


def test_bad_arguments_name_them(small_split):
    with pytest.raises(ValueError, match="num_items"):
        train_behavior_model(small_split, 500, config("sasrec"), progress=False)
    nothing_to_learn = dataclasses.replace(small_split, train_sequences=[[1]] * len(small_split.train_sequences))
    with pytest.raises(ValueError, match="train_sequences"):
        train_behavior_model(nothing_to_learn, 600, config("sasrec"), progress=False)
