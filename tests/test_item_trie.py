"""ItemTrie against a dict-of-prefixes model: structure, lookup, item_of, save/load, insert."""

import os

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from eager_ext import ItemTrie
from trie_helpers import random_codes, walk


def prefixes(codes):
    return {tuple(row[:d]) for row in codes.tolist() for d in range(codes.shape[1] + 1)}


@settings(max_examples=60, deadline=None)
@given(
    num_items=st.integers(1, 60),
    depth=st.integers(1, 5),
    alphabet=st.integers(2, 6),
    offset=st.sampled_from([0, 1000]),
    seed=st.integers(0, 2**31 - 1),
)
def test_structure_matches_the_prefix_set(num_items, depth, alphabet, offset, seed):
    codes = random_codes(num_items, depth, alphabet, seed, offset)
    trie = ItemTrie.from_codes(codes)
    assert (trie.num_items, trie.depth) == (codes.shape[0], depth)
    assert trie.num_nodes == len(prefixes(codes))  # one node per distinct prefix, root included
    offsets = trie.child_offsets
    assert offsets[0] == 0 and offsets[-1] == trie.num_nodes - 1
    for node in range(trie.num_nodes):
        children = trie.child_tokens[offsets[node] : offsets[node + 1]]
        assert torch.all(children[1:] > children[:-1]), "child tokens must be sorted"
    assert trie.max_children == int((offsets[1:] - offsets[:-1]).max())
    assert (trie.min_token, trie.max_token) == (int(codes.min()), int(codes.max()))
    for item, row in enumerate(codes.tolist()):
        leaf = walk(trie, row)
        assert leaf is not None and trie.item_of(torch.tensor([leaf])).item() == item
    assert torch.equal(trie.lookup(codes), torch.arange(codes.shape[0]))
    assert torch.equal(trie.codes, codes)
    leaves = set(trie.leaf_items[trie.leaf_items >= 0].tolist())
    assert leaves == set(range(codes.shape[0]))


def test_breadth_first_numbering():
    trie = ItemTrie.from_codes([[5, 1], [3, 2], [3, 1]])
    # root 0; depth 1: token 3 -> 1, token 5 -> 2; depth 2: (3,1) -> 3, (3,2) -> 4, (5,1) -> 5
    assert trie.child_offsets.tolist() == [0, 2, 4, 5, 5, 5, 5]
    assert trie.child_tokens.tolist() == [3, 5, 1, 2, 1]
    assert trie.child_nodes.tolist() == [1, 2, 3, 4, 5]
    assert trie.leaf_items.tolist() == [-1, -1, -1, 2, 1, 0]


def test_lookup_of_missing_and_partial_sequences():
    trie = ItemTrie.from_codes([[1, 2, 3], [1, 2, 4], [7, 7, 7]])
    assert trie.lookup(torch.tensor([[1, 2, 4], [1, 2, 5], [9, 9, 9], [7, 7, 7]])).tolist() == [1, -1, -1, 2]
    assert trie.lookup(torch.tensor([[1, 2]])).tolist() == [-1]  # a prefix is not an item
    assert trie.lookup(torch.tensor([[1, 2, 3, 0]])).tolist() == [-1]


def test_item_of_internal_nodes_and_padding():
    trie = ItemTrie.from_codes([[1, 2], [1, 3]])
    assert trie.item_of(torch.tensor([0, 1, 2, 3, -1])).tolist() == [-1, -1, 0, 1, -1]
    with pytest.raises(IndexError, match="node 4 is out of range"):
        trie.item_of(torch.tensor([4]))
    with pytest.raises(IndexError, match="out of range"):
        trie.item_of(torch.tensor([-2]))


def test_save_load_round_trip(tmp_path):
    codes = random_codes(200, 4, 5, seed=1)
    trie = ItemTrie.from_codes(codes)
    path = tmp_path / "items.trie"
    trie.save(path)
    assert not os.path.exists(str(path) + ".tmp")
    loaded = ItemTrie.load(str(path))
    for name in ["child_offsets", "child_tokens", "child_nodes", "leaf_items", "codes"]:
        assert torch.equal(getattr(loaded, name), getattr(trie, name)), name


def test_load_rejects_missing_corrupt_and_truncated_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        ItemTrie.load(tmp_path / "missing.trie")
    path = tmp_path / "items.trie"
    ItemTrie.from_codes([[1, 2], [3, 4]]).save(path)
    data = bytearray(path.read_bytes())
    (tmp_path / "short.trie").write_bytes(data[:-3])
    with pytest.raises(RuntimeError, match="truncated"):
        ItemTrie.load(tmp_path / "short.trie")
    data[-1] ^= 1
    (tmp_path / "flipped.trie").write_bytes(data)
    with pytest.raises(RuntimeError, match="checksum"):
        ItemTrie.load(tmp_path / "flipped.trie")
    (tmp_path / "other.trie").write_bytes(b"not a trie at all, just some bytes")
    with pytest.raises(RuntimeError, match="not an ItemTrie file"):
        ItemTrie.load(tmp_path / "other.trie")


def test_insert_matches_a_fresh_build():
    codes = random_codes(120, 3, 6, seed=2)
    old, new = codes[:100], codes[100:]
    trie = ItemTrie.from_codes(old)
    ids = trie.insert(new)
    assert ids.tolist() == list(range(100, 120))
    fresh = ItemTrie.from_codes(codes)
    for name in ["child_offsets", "child_tokens", "child_nodes", "leaf_items", "codes"]:
        assert torch.equal(getattr(trie, name), getattr(fresh, name)), name
    assert torch.equal(trie.lookup(new), ids)


def test_insert_of_an_existing_item_fails_and_leaves_the_trie_unchanged():
    trie = ItemTrie.from_codes([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="items 1 3 share \\[3, 4\\]"):
        trie.insert([[5, 6], [3, 4]])
    assert trie.num_items == 2 and trie.lookup(torch.tensor([[5, 6]])).item() == -1


def test_copies_on_other_devices_keep_their_version():
    trie = ItemTrie.from_codes([[1, 2]])
    copy = trie.to("cpu")
    trie.insert([[1, 3]])
    assert (trie.num_items, copy.num_items) == (2, 1)


@pytest.mark.parametrize(
    "tokens, error, message",
    [
        ([[1, 2], [3]], ValueError, "ragged tokens: row 1 has 1 tokens but row 0 has 2"),
        ([], ValueError, "empty"),
        (torch.empty(0, 3, dtype=torch.long), ValueError, "at least one item"),
        (torch.empty(3, 0, dtype=torch.long), ValueError, "at least one item"),
        ([[1, 2], [3, 4], [1, 2], [1, 2]], ValueError, "items 0 2 3 share \\[1, 2\\]"),
        ([[1, -2]], ValueError, "negative token -2"),
        (torch.tensor([[1.0, 2.0]]), TypeError, "must be integers"),
        (torch.tensor([1, 2]), ValueError, "must have shape \\[N, L\\]"),
    ],
)
def test_bad_codes_raise(tokens, error, message):
    with pytest.raises(error, match=message):
        ItemTrie.from_codes(tokens)


def test_many_duplicates_are_summarised():
    codes = torch.tensor([[i % 3, 0] for i in range(40)])
    with pytest.raises(ValueError, match="items 0 3 6"):
        ItemTrie.from_codes(codes)


def test_cannot_be_pickled():
    import pickle

    with pytest.raises(TypeError):
        pickle.dumps(ItemTrie.from_codes([[1]]))
