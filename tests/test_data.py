"""Readers, bad input, the leave-one-out split, and the demo dataset's learnability."""

import gzip
import json
import os
from collections import Counter, defaultdict

import pytest

from eager_llm.data import (
    DataError,
    Dataset,
    ItemText,
    demo_dataset,
    five_core,
    leave_one_out,
    load_dataset,
    read_amazon_raw,
)

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
BEAUTY = os.path.join(SHARED, "amazon-beauty-2014-5core")
SPORTS = os.path.join(SHARED, "amazon-sports-2014-5core")


def write_folder(folder, sequences: str, items: str | bytes):
    folder.mkdir(exist_ok=True)
    (folder / "sequences.txt").write_text(sequences)
    (folder / "items.jsonl").write_bytes(items if isinstance(items, bytes) else items.encode())
    return str(folder)


ITEMS = "\n".join(json.dumps({"item_id": i, "title": f"item {i}"}) for i in range(1, 7)) + "\n"


@pytest.mark.skipif(not os.path.isdir(BEAUTY), reason="../shared/data is not present")
def test_real_beauty_statistics_and_split_sizes():
    dataset = load_dataset(BEAUTY)
    stats = dataset.statistics()
    assert (stats["users"], stats["items"], stats["interactions"]) == (22_363, 12_101, 198_502)
    assert dataset.report.items_without_text == 0 and dataset.report.removed_repeats == 0
    split = leave_one_out(dataset)
    assert split.sizes() == {"train": 198_502 - 3 * 22_363, "valid": 22_363, "test": 22_363}
    assert dataset.item_text[0].title.startswith("OPI Nail Lacquer")


@pytest.mark.skipif(not os.path.isdir(SPORTS), reason="../shared/data is not present")
def test_real_sports_has_text_from_attributes():
    dataset = load_dataset(SPORTS)
    assert (dataset.num_users, dataset.num_items, dataset.num_interactions) == (35_598, 18_357, 296_337)
    assert dataset.item_text[0].title == "" and "Hunting" in dataset.item_text[0].fields()["attributes"]


def test_leave_one_out_by_hand():
    dataset = Dataset("hand", [[1, 2, 3, 4, 5, 6], [6, 5, 4]], [ItemText(title=str(i)) for i in range(1, 7)])
    split = leave_one_out(dataset)
    assert [(s.history, s.target) for s in split.train] == [((1,), 2), ((1, 2), 3), ((1, 2, 3), 4)]
    assert [(s.user, s.history, s.target) for s in split.valid] == [(1, (1, 2, 3, 4), 5), (2, (6,), 5)]
    assert [(s.user, s.history, s.target) for s in split.test] == [(1, (1, 2, 3, 4, 5), 6), (2, (6, 5), 4)]
    assert split.train_sequences == [[1, 2, 3, 4], [6]]


def test_history_keeps_the_last_twenty_items():
    dataset = Dataset("long", [list(range(1, 31))], [ItemText(title="x")] * 30)
    split = leave_one_out(dataset)
    assert split.test[0].history == tuple(range(10, 30))
    assert split.train[-1].history == tuple(range(8, 28)) and split.train[-1].target == 28


def test_reports_repeats_short_users_and_items_without_text(tmp_path):
    items = "\n".join(json.dumps({"item_id": i, "title": f"t{i}"}) for i in (1, 2, 3, 4, 5)) + "\n"
    items += json.dumps({"item_id": 9, "title": "never used"}) + "\n"
    folder = write_folder(tmp_path / "d", "1 1 2 2 3 4\n2 5 1\n3 6 5 4 3\n", items)
    dataset = load_dataset(folder)
    assert dataset.report.removed_repeats == 1
    assert dataset.report.skipped_short_users == 1
    assert dataset.report.items_without_text == 1  # item 6 has no record
    assert dataset.report.ignored_item_records == 1
    assert dataset.sequences == [[1, 2, 3, 4], [6, 5, 4, 3]]


@pytest.mark.parametrize(
    "sequences, items, message",
    [
        ("1 1 2 3\n2 4 x 6\n", ITEMS, r"sequences.txt:2: item id 'x' is not an integer"),
        ("1 1 2 3\n1 4 5 6\n", ITEMS, r"sequences.txt:2: user 1 appears a second time"),
        ("1 1 2 3\n2 4 5 0\n", ITEMS, r"sequences.txt:2: item id 0 must be >= 1"),
        ("1 1 2 3\n2 4 5 9\n", ITEMS, r"contiguous from 1"),
        ("1 1 2 3\n2 4 5 6\n", ITEMS + "{not json\n", r"items.jsonl:7: not valid JSON"),
        ("1 1 2 3\n2 4 5 6\n", ITEMS + '{"title": "no id"}\n', r"items.jsonl:7: every record needs an item_id"),
        ("1 1 2 3\n2 4 5 6\n", ITEMS.encode() + b'{"item_id": 7, "title": "caf\xe9"}\n', r"items.jsonl:7: not valid UTF-8"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, sequences, items, message):
    folder = write_folder(tmp_path / "d", sequences, items)
    with pytest.raises(DataError, match=message):
        load_dataset(folder)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such dataset folder"):
        load_dataset(str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="found no dataset"):
        load_dataset(str(tmp_path / "empty"))
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "sequences.txt").write_text("1 1 2 3\n")
    with pytest.raises(FileNotFoundError, match="items.jsonl: no such file"):
        load_dataset(str(tmp_path / "half"))


def test_five_core_is_iterative():
    # Six users buy items a..e. User u6 buys a, b, c, d and the rare r: dropping r (1 buyer)
    # leaves u6 with 4 items, so a second round must drop u6 as well.
    rows = [(f"u{u}", item, 0) for u in range(6) for item in "abcde"]
    rows += [("u6", item, 0) for item in "abcdr"]
    kept = five_core(rows, k=5)
    assert sorted({u for u, _, _ in kept}) == [f"u{u}" for u in range(6)]
    assert sorted({i for _, i, _ in kept}) == list("abcde")


def test_raw_amazon_with_python_literal_metadata(tmp_path):
    reviews, meta = tmp_path / "reviews_Toy_5.json.gz", tmp_path / "meta_Toy.json.gz"
    rows = [{"reviewerID": f"U{u}", "asin": f"A{(u + i) % 6}", "unixReviewTime": 100 * i + u}
            for u in range(6) for i in range(5)]
    rows.append({"reviewerID": "U0", "asin": "A0", "unixReviewTime": 999})  # a repeat, removed
    with gzip.open(reviews, "wt") as out:
        out.writelines(json.dumps(r) + "\n" for r in rows)
    with gzip.open(meta, "wt") as out:
        for a in range(6):
            out.write(repr({"asin": f"A{a}", "title": f"Toy {a}", "categories": [["Toys", "Blocks"]]}) + "\n")
    dataset = read_amazon_raw(str(reviews), str(meta))
    assert dataset.num_users == 6 and dataset.num_items == 6 and dataset.num_interactions == 30
    assert dataset.report.removed_repeats == 1
    assert dataset.item_text[0].title.startswith("Toy") and dataset.item_text[0].categories == ["Toys > Blocks"]
    with gzip.open(meta, "wt") as out:
        out.write("__import__('os').system('echo pwned')\n")
    with pytest.raises(DataError, match=r"meta_Toy.json.gz:1: neither JSON nor a Python literal"):
        read_amazon_raw(str(reviews), str(meta))


def test_recbole_atomic_files(tmp_path):
    folder = tmp_path / "rb"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"u{u}\ti{(u * 3 + k) % 7}\t{k}" for u in range(4) for k in range(4)]
    (folder / "toy.inter").write_text("\n".join(lines) + "\n")
    (folder / "toy.item").write_text("item_id:token\ttitle:token_seq\n" + "\n".join(f"i{i}\tthing {i}" for i in range(7)))
    dataset = load_dataset(str(folder))
    assert dataset.num_users == 4 and dataset.num_interactions == 16
    assert all(text.title.startswith("thing") for text in dataset.item_text)


def test_fingerprint_tracks_content():
    a, b = demo_dataset(seed=0, num_users=50), demo_dataset(seed=0, num_users=50)
    assert a.fingerprint() == b.fingerprint()
    b.sequences[0] = b.sequences[0][:-1]
    assert a.fingerprint() != b.fingerprint()


def test_demo_is_deterministic_sized_and_learnable():
    dataset = demo_dataset()
    assert dataset.fingerprint() == demo_dataset().fingerprint()
    stats = dataset.statistics()
    assert stats["users"] == 1_500 and stats["items"] == 600 and 6 <= stats["mean_length"] <= 12
    assert all(not t.is_empty() for t in dataset.item_text)
    split = leave_one_out(dataset)
    counts = Counter(item for sequence in split.train_sequences for item in sequence)
    popular = [item for item, _ in counts.most_common(10)]
    transitions = defaultdict(Counter)
    for sequence in split.train_sequences:
        for a, b in zip(sequence, sequence[1:]):
            transitions[a][b] += 1
    popularity_hits = markov_hits = 0
    for sample in split.test:
        popularity_hits += sample.target in popular
        following = [item for item, _ in transitions[sample.history[-1]].most_common(10)]
        following += [item for item in popular if item not in following][: 10 - len(following)]
        markov_hits += sample.target in following
    # A first-order Markov model (a weak sequential model) must clearly beat popularity.
    assert markov_hits >= 3 * popularity_hits, (markov_hits, popularity_hits)


def test_preferences_file(tmp_path):
    from eager_llm.data import read_preferences

    path = tmp_path / "preferences.jsonl"
    path.write_text('{"user": 1, "preference": "a long-lasting red lipstick"}\n\n{"user": 3, "preference": "unscented"}\n')
    assert read_preferences(str(path)) == {1: "a long-lasting red lipstick", 3: "unscented"}
    path.write_text('{"user": 1, "preference": "x"}\n{"user": 1, "preference": "y"}\n')
    with pytest.raises(DataError, match="preferences.jsonl:2: user 1 appears a second time"):
        read_preferences(str(path))
    path.write_text('{"user": 2}\n')
    with pytest.raises(DataError, match="preferences.jsonl:1: every record needs a user and a non-empty preference"):
        read_preferences(str(path))
