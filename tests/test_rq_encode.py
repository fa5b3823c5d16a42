"""rq_encode against the cdist reference, a float64 replay, and brute-force edge cases."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eager_ext
from eager_ext import reference
from conftest import FLOAT_DTYPES


def replay_check(x, codebooks, codes, residual_norm, rtol=1e-4):
    """Checks in float64 that every chosen code is (within rounding) the nearest centroid of the
    residual the kernel's own earlier choices leave, and that the residual norm is right."""
    residual = x.double()
    for level, centroids in enumerate(codebooks.double()):
        distances = torch.cdist(residual, centroids).pow(2)
        chosen = distances.gather(1, codes[:, level : level + 1]).squeeze(1)
        best = distances.min(dim=1).values
        scale = residual.pow(2).sum(1) + centroids.pow(2).sum(1).max()
        assert torch.all(chosen <= best + rtol * scale + 1e-6), f"level {level} not nearest"
        residual = residual - centroids[codes[:, level]]
    expected = residual.pow(2).sum(1)
    torch.testing.assert_close(residual_norm.double(), expected, rtol=1e-3, atol=1e-3 * scale.max().item())


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 700),
    d=st.integers(1, 48),
    k=st.integers(1, 40),
    levels=st.integers(1, 4),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference_exactly_on_integer_data(n, d, k, levels, dtype, seed):
    # Small integers make every distance exact in float32, so codes (ties included: centroids
    # repeat often at this range) must equal the reference's bit for bit.
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, (n, d), generator=g).to(dtype)
    codebooks = torch.randint(-2, 3, (levels, k, d), generator=g).to(dtype)
    codes, norm = eager_ext.rq_encode(x, codebooks)
    expected_codes, expected_norm = reference.rq_encode(x, codebooks)
    assert codes.dtype == torch.long and codes.shape == (n, levels)
    assert norm.dtype == torch.float32 and norm.shape == (n,)
    assert torch.equal(codes, expected_codes)
    assert torch.equal(norm, expected_norm)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 600),
    d=st.integers(1, 96),
    k=st.integers(1, 64),
    levels=st.integers(1, 3),
    dtype=st.sampled_from(FLOAT_DTYPES),
    seed=st.integers(0, 2**31 - 1),
)
def test_random_data_is_nearest_at_every_level(n, d, k, levels, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g).to(dtype)
    codebooks = (torch.randn(levels, k, d, generator=g) * 0.7).to(dtype)
    codes, norm = eager_ext.rq_encode(x, codebooks)
    replay_check(x, codebooks, codes, norm)
    expected_codes, _ = reference.rq_encode(x, codebooks)
    # Only near-ties may differ from the cdist reference (different rounding).
    assert (codes == expected_codes).all(dim=1).float().mean() > 0.97


def test_exact_ties_go_to_the_smaller_index():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0]])
    # Centroids 1 and 2 are identical; 0 and 3 are equidistant from x[2].
    codebooks = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])
    codes, norm = eager_ext.rq_encode(x, codebooks)
    assert codes[:, 0].tolist() == [0, 1, 0]
    torch.testing.assert_close(norm, torch.tensor([0.0, 0.0, 0.25]))


def test_single_centroid_and_single_dimension():
    x = torch.randn(33, 1)
    codebooks = torch.randn(2, 1, 1)
    codes, norm = eager_ext.rq_encode(x, codebooks)
    assert torch.equal(codes, torch.zeros(33, 2, dtype=torch.long))
    torch.testing.assert_close(norm, (x[:, 0] - codebooks.sum()).pow(2))


def test_empty_input():
    codes, norm = eager_ext.rq_encode(torch.empty(0, 8), torch.randn(3, 4, 8))
    assert codes.shape == (0, 3) and norm.shape == (0,)


def test_non_contiguous_input():
    x = torch.randn(300, 6)[::3, ::2]  # strided rows and columns, [100, 3]
    codebooks = torch.randn(4, 3, 20).transpose(1, 2)  # [4, 20, 3], not contiguous
    codes, norm = eager_ext.rq_encode(x, codebooks)
    expected = eager_ext.rq_encode(x.contiguous(), codebooks.contiguous())
    assert torch.equal(codes, expected[0]) and torch.equal(norm, expected[1])
    replay_check(x, codebooks, codes, norm)


def test_same_result_for_any_thread_count():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 32, generator=g)
    codebooks = torch.randn(3, 64, 32, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = eager_ext.rq_encode(x, codebooks)
        torch.set_num_threads(max(2, threads))
        many = eager_ext.rq_encode(x, codebooks)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


@pytest.mark.parametrize(
    "x, codebooks, error, message",
    [
        (torch.randn(4, 8).double(), torch.randn(2, 3, 8).double(), TypeError, "x must be float32"),
        (torch.randn(4, 8), torch.randn(2, 3, 8).half(), TypeError, "codebooks must have the dtype"),
        (torch.randn(4, 8), torch.randn(2, 3, 7), ValueError, "D = 7"),
        (torch.randn(4, 8, 1), torch.randn(2, 3, 8), ValueError, "x must have shape"),
        (torch.randn(4, 8), torch.randn(3, 8), ValueError, "codebooks must have shape"),
        (torch.randn(4, 8), torch.randn(2, 0, 8), ValueError, "K >= 1"),
        (torch.randint(0, 3, (4, 8)), torch.randn(2, 3, 8), TypeError, "x must be float32"),
    ],
)
def test_bad_input_raises_naming_the_argument(x, codebooks, error, message):
    with pytest.raises(error, match=message):
        eager_ext.rq_encode(x, codebooks)


def test_registered_op_traces_and_passes_opcheck():
    x, codebooks = torch.randn(50, 8), torch.randn(2, 5, 8)
    torch.library.opcheck(torch.ops.eager_ext.rq_encode.default, (x, codebooks))
    compiled = torch.compile(eager_ext.rq_encode, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(x, codebooks)[0], eager_ext.rq_encode(x, codebooks)[0])
