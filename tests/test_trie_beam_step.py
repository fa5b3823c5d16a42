"""trie_beam_step and trie_mask_ against the dense reference and against brute force."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eager_ext
from eager_ext import ItemTrie, reference
from conftest import FLOAT_DTYPES
from trie_helpers import random_codes, walk

NEG_INF = float("-inf")


def random_beams(trie, codes, batch, num_beams, g, dead_fraction=0.3):
    """Beam scores and nodes: each live beam sits on the node of a random item prefix of random
    length (every depth, leaves included); some beams are dead (-inf) with node -1."""
    scores = -torch.rand(batch * num_beams, generator=g) * 5
    nodes = torch.empty(batch * num_beams, dtype=torch.long)
    for row in range(batch * num_beams):
        item = int(torch.randint(0, codes.shape[0], (1,), generator=g))
        depth = int(torch.randint(0, codes.shape[1] + 1, (1,), generator=g))
        nodes[row] = walk(trie, codes[item, :depth].tolist())
    dead = torch.rand(batch * num_beams, generator=g) < dead_fraction
    return scores.masked_fill(dead, NEG_INF), nodes.masked_fill(dead, -1)


def assert_steps_equal(ours, expected, exact):
    scores, parents, tokens, next_nodes = ours
    e_scores, e_parents, e_tokens, e_nodes = expected
    if exact:
        assert torch.equal(scores, e_scores)
        assert torch.equal(parents, e_parents) and torch.equal(tokens, e_tokens)
        assert torch.equal(next_nodes, e_nodes)
        return
    torch.testing.assert_close(scores, e_scores, rtol=0, atol=1e-5)
    # Where two candidates are within rounding of each other the order may differ; elsewhere the
    # choice must be the same.
    gap = torch.full_like(scores, math.inf)
    gap[:, 1:] = (e_scores[:, :-1] - e_scores[:, 1:]).nan_to_num(nan=math.inf)
    gap[:, :-1] = torch.minimum(gap[:, :-1], (e_scores[:, :-1] - e_scores[:, 1:]).nan_to_num(nan=math.inf))
    clear = gap > 1e-4
    for a, b in [(parents, e_parents), (tokens, e_tokens), (next_nodes, e_nodes)]:
        assert torch.equal(a[clear], b[clear])


@settings(max_examples=80, deadline=None)
@given(
    num_items=st.integers(1, 40),
    depth=st.integers(1, 4),
    alphabet=st.integers(1, 5),
    batch=st.integers(1, 4),
    num_beams=st.integers(1, 8),
    vocab_offset=st.sampled_from([0, 7]),
    extra_columns=st.integers(0, 5),
    log_normalize=st.booleans(),
    dtype=st.sampled_from(FLOAT_DTYPES),
    strided=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference(num_items, depth, alphabet, batch, num_beams, vocab_offset,
                           extra_columns, log_normalize, dtype, strided, seed):
    g = torch.Generator().manual_seed(seed)
    codes = random_codes(num_items, depth, max(alphabet, 2) if num_items > 1 else alphabet, seed, vocab_offset)
    trie = ItemTrie.from_codes(codes)
    columns = trie.max_token - vocab_offset + 1 + extra_columns
    rows = batch * num_beams
    if strided:  # a column slice of a wider tensor, read in place
        logits = (torch.randn(rows, columns + 9, generator=g) * 3).to(dtype)[:, 4 : 4 + columns]
    else:
        logits = (torch.randn(rows, columns, generator=g) * 3).to(dtype)
    beam_scores, nodes = random_beams(trie, codes, batch, num_beams, g)
    args = (logits, beam_scores, nodes, trie, num_beams, vocab_offset, log_normalize)
    ours = eager_ext.trie_beam_step(*args)
    expected = reference.trie_beam_step(*args)
    assert [t.shape for t in ours] == [(batch, num_beams)] * 4
    # Without the normaliser both sides add the same two floats: bit-exact, ties included
    # (half-precision logits tie often).
    assert_steps_equal(ours, expected, exact=not log_normalize)


def test_first_step_expands_one_beam_per_batch_element():
    trie = ItemTrie.from_codes([[0, 0], [0, 1], [1, 0], [2, 2]])
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]] * 6))
    beam_scores = torch.tensor([0.0, NEG_INF, NEG_INF] * 2)
    nodes = torch.tensor([0, -1, -1] * 2)
    scores, parents, tokens, next_nodes = eager_ext.trie_beam_step(logits, beam_scores, nodes, trie, 3)
    assert tokens.tolist() == [[0, 1, 2]] * 2
    assert parents.tolist() == [[0, 0, 0]] * 2
    torch.testing.assert_close(scores, torch.log(torch.tensor([[0.5, 0.3, 0.2]] * 2)))
    assert next_nodes.tolist() == [[1, 2, 3]] * 2


def test_more_beams_than_items_pads_with_dead_slots():
    trie = ItemTrie.from_codes([[3]])
    logits = torch.randn(5, 4)
    beam_scores = torch.tensor([0.0] + [NEG_INF] * 4)
    nodes = torch.tensor([0] + [-1] * 4)
    scores, parents, tokens, next_nodes = eager_ext.trie_beam_step(logits, beam_scores, nodes, trie, 5)
    assert tokens.tolist() == [[3, -1, -1, -1, -1]]
    assert next_nodes.tolist() == [[1, -1, -1, -1, -1]]
    assert parents.tolist() == [[0, 0, 0, 0, 0]]
    assert scores[0, 1:].eq(NEG_INF).all() and scores[0, 0].isfinite()


def test_masked_logits_are_not_candidates():
    trie = ItemTrie.from_codes([[0], [1]])
    logits = torch.tensor([[NEG_INF, 0.0], [0.0, 0.0]])
    scores, _, tokens, _ = eager_ext.trie_beam_step(
        logits, torch.tensor([0.0, NEG_INF]), torch.tensor([0, -1]), trie, 2, log_normalize=False
    )
    assert tokens.tolist() == [[1, -1]]


def brute_force_ranking(codes, prefix_logits):
    """Every item's summed log-probability under prefix-dependent logits, best first."""
    totals = []
    for item, row in enumerate(codes.tolist()):
        total = 0.0
        for d, token in enumerate(row):
            logits = prefix_logits(tuple(row[:d]))
            total += (logits[token] - torch.logsumexp(logits, 0)).item()
        totals.append((total, item))
    return sorted(totals, key=lambda pair: -pair[0])


@settings(max_examples=25, deadline=None)
@given(
    num_items=st.integers(1, 30),
    depth=st.integers(1, 4),
    alphabet=st.integers(2, 5),
    extra_beams=st.integers(0, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_full_search_with_enough_beams_equals_brute_force(num_items, depth, alphabet, extra_beams, seed):
    codes = random_codes(num_items, depth, alphabet, seed)
    trie = ItemTrie.from_codes(codes)
    vocab = alphabet + 2
    cache = {}

    def prefix_logits(prefix):
        if prefix not in cache:
            g = torch.Generator().manual_seed(hash((seed, prefix)) % 2**31)
            cache[prefix] = torch.randn(vocab, generator=g) * 2
        return cache[prefix]

    num_beams = codes.shape[0] + extra_beams
    beam_scores = torch.full((num_beams,), NEG_INF)
    beam_scores[0] = 0.0
    nodes = torch.full((num_beams,), -1, dtype=torch.long)
    nodes[0] = 0
    prefixes = [()] * num_beams
    for _ in range(depth):
        logits = torch.stack([prefix_logits(p) for p in prefixes])
        scores, parents, tokens, next_nodes = eager_ext.trie_beam_step(logits, beam_scores, nodes, trie, num_beams)
        prefixes = [prefixes[p] + (t,) for p, t in zip(parents[0].tolist(), tokens[0].tolist())]
        beam_scores, nodes = scores[0], next_nodes[0]
    items = trie.item_of(nodes)
    expected = brute_force_ranking(codes, prefix_logits)
    found = int((items >= 0).sum())
    assert found == codes.shape[0]
    assert items[found:].eq(-1).all() and beam_scores[found:].eq(NEG_INF).all()
    torch.testing.assert_close(beam_scores[:found], torch.tensor([s for s, _ in expected]), rtol=0, atol=1e-5)
    assert set(items[:found].tolist()) == set(range(codes.shape[0]))


@settings(max_examples=40, deadline=None)
@given(
    num_items=st.integers(1, 30),
    depth=st.integers(1, 4),
    rows=st.integers(1, 10),
    vocab_offset=st.sampled_from([0, 3]),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_mask_matches_reference(num_items, depth, rows, vocab_offset, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    codes = random_codes(num_items, depth, 4, seed, vocab_offset)
    trie = ItemTrie.from_codes(codes)
    logits = torch.randn(rows, trie.max_token - vocab_offset + 3, generator=g).to(dtype)
    _, nodes = random_beams(trie, codes, rows, 1, g, dead_fraction=0.0)
    expected = reference.trie_mask_(logits.clone(), nodes, trie, vocab_offset)
    out = eager_ext.trie_mask_(logits, nodes, trie, vocab_offset)
    assert out.data_ptr() == logits.data_ptr()
    assert torch.equal(logits, expected)


def test_opcheck_and_compile():
    codes = random_codes(20, 3, 4, seed=0)
    trie = ItemTrie.from_codes(codes)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 4, generator=g)
    beam_scores, nodes = random_beams(trie, codes, 2, 4, g)
    arrays = (trie.child_offsets, trie.child_tokens, trie.child_nodes)
    meta = (trie.min_token, trie.max_token, trie.max_children)
    torch.library.opcheck(
        torch.ops.eager_ext.trie_beam_step.default, (logits, beam_scores, nodes, *arrays, 4, 0, True, *meta)
    )
    torch.library.opcheck(
        torch.ops.eager_ext.trie_mask_.default, (logits.clone(), nodes.clamp(min=0), *arrays, 0, *meta)
    )
    step = torch.compile(
        lambda l, s, n: eager_ext.trie_beam_step(l, s, n, trie, 4), backend="aot_eager", fullgraph=True
    )
    for a, b in zip(step(logits, beam_scores, nodes), eager_ext.trie_beam_step(logits, beam_scores, nodes, trie, 4)):
        assert torch.equal(a, b)


TRIE = ItemTrie.from_codes([[5, 6], [5, 7], [8, 6]])


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(logits=torch.randn(2, 8)), IndexError, "tokens span 5 to 8 but the logits' columns hold tokens 0 to 7"),
        (dict(vocab_offset=6), IndexError, "tokens span 5 to 8"),
        (dict(num_beams=3), ValueError, "not batch x num_beams"),
        (dict(num_beams=0), ValueError, "num_beams must be >= 1"),
        (dict(beam_scores=torch.zeros(2, dtype=torch.float64)), TypeError, "beam_scores must be float32"),
        (dict(nodes=torch.tensor([0, 0], dtype=torch.int32)), TypeError, "nodes must be int64"),
        (dict(nodes=torch.tensor([0, 99])), IndexError, r"nodes\[1\] = 99 is out of range"),
        (dict(nodes=torch.tensor([0])), ValueError, "one entry per logits row"),
        (dict(logits=torch.randn(2, 9).double()), TypeError, "logits must be float32"),
        (dict(logits=torch.randn(2, 9, 1)), ValueError, "logits must have shape"),
    ],
)
def test_bad_beam_step_input_raises(kwargs, error, message):
    args = dict(logits=torch.randn(2, 9), beam_scores=torch.zeros(2), nodes=torch.tensor([0, 1]),
                trie=TRIE, num_beams=2, vocab_offset=0)
    args.update(kwargs)
    with pytest.raises(error, match=message):
        eager_ext.trie_beam_step(**args)


def test_bad_mask_input_raises():
    with pytest.raises(IndexError, match=r"nodes\[0\] = 7 is out of range"):
        eager_ext.trie_mask_(torch.randn(1, 9), torch.tensor([7]), TRIE)
    with pytest.raises(ValueError, match="unit stride"):
        eager_ext.trie_mask_(torch.randn(9, 2).T, torch.tensor([0, 0]), TRIE)
    with pytest.raises(IndexError, match="tokens span"):
        eager_ext.trie_mask_(torch.randn(1, 4), torch.tensor([0]), TRIE)
