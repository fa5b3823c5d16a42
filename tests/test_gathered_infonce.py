"""gathered_infonce against the plain-torch reference (loss and gradient), gradcheck, bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eager_ext
from eager_ext import reference
from conftest import FLOAT_DTYPES

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-3, torch.bfloat16: 2e-3}


def loss_and_grad(fn, query, *args, **kwargs):
    query = query.detach().clone().requires_grad_(True)
    loss = fn(query, *args, **kwargs)
    loss.backward()
    return loss.detach(), query.grad


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(1, 12),
    e=st.integers(1, 70),
    n=st.integers(1, 50),
    m=st.integers(0, 40),
    temperature=st.sampled_from([0.05, 0.1, 1.0]),
    dtype=st.sampled_from(FLOAT_DTYPES),
    mask=st.sampled_from(["none", "random", "all-false"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference(b, e, n, m, temperature, dtype, mask, seed):
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(b, e, generator=g).to(dtype)
    table = torch.randn(n, e, generator=g).to(dtype)
    positive_ids = torch.randint(0, n, (b,), generator=g)
    # Drawn with replacement from a small table: duplicates and positives among the negatives.
    negative_ids = torch.randint(0, n, (m,), generator=g)
    valid = {
        "none": None,
        "random": torch.rand(b, generator=g) < 0.6,
        "all-false": torch.zeros(b, dtype=torch.bool),
    }[mask]
    args = (table, positive_ids, negative_ids, temperature, valid)
    loss, grad = loss_and_grad(eager_ext.gathered_infonce, query, *args)
    expected_loss, expected_grad = loss_and_grad(reference.gathered_infonce, query, *args)
    assert loss.dtype == torch.float32 and loss.shape == ()
    assert grad.dtype == dtype
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(loss, expected_loss, rtol=tol, atol=tol)
    torch.testing.assert_close(grad.float(), expected_grad.float(), rtol=10 * tol, atol=10 * tol / temperature)
    if mask == "all-false":
        assert loss.item() == 0.0 and torch.count_nonzero(grad) == 0


def test_positive_among_negatives_and_duplicates_counted_as_given():
    table = torch.eye(4)
    query = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # logits / t: positive 1, negatives [1 (itself), 0, 0 (duplicate)]; t = 1.
    loss = eager_ext.gathered_infonce(query, table, torch.tensor([0]), torch.tensor([0, 1, 1]), 1.0)
    e = torch.e
    torch.testing.assert_close(loss, torch.tensor(-1.0 + torch.log(torch.tensor(2 * e + 2.0)).item()))


@pytest.mark.filterwarnings("ignore:Input #0 requires gradient and is not a double")
def test_gradcheck():
    g = torch.Generator().manual_seed(3)
    query = torch.randn(3, 6, generator=g, requires_grad=True)
    table = torch.randn(10, 6, generator=g)
    positive_ids = torch.tensor([1, 4, 4])
    negative_ids = torch.tensor([0, 2, 4, 9, 9])
    valid = torch.tensor([True, False, True])
    assert torch.autograd.gradcheck(
        lambda q: eager_ext.gathered_infonce(q, table, positive_ids, negative_ids, 0.5, valid),
        (query,),
        eps=1e-2,
        atol=5e-3,
        rtol=5e-3,
    )


def test_opcheck_and_compile():
    query = torch.randn(3, 6, requires_grad=True)
    table = torch.randn(10, 6)
    args = (table, torch.tensor([1, 4, 4]), torch.tensor([0, 2, 9]), 0.1, None)
    torch.library.opcheck(torch.ops.eager_ext.gathered_infonce.default, (query, *args))
    compiled = torch.compile(eager_ext.gathered_infonce, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(query, *args), eager_ext.gathered_infonce(query, *args))


def test_strided_table_rows_are_read_in_place():
    wide = torch.randn(20, 16)
    table = wide[:, :8]  # row stride 16, unit column stride
    query = torch.randn(4, 8)
    args = (torch.tensor([0, 1, 2, 19]), torch.arange(20), 0.1)
    ours, grad = loss_and_grad(eager_ext.gathered_infonce, query, table, *args)
    expected, expected_grad = loss_and_grad(reference.gathered_infonce, query, table, *args)
    torch.testing.assert_close(ours, expected)
    torch.testing.assert_close(grad, expected_grad)


Q, T = torch.randn(2, 4), torch.randn(5, 4)
POS, NEG = torch.tensor([0, 1]), torch.tensor([2, 3])


@pytest.mark.parametrize(
    "args, error, message",
    [
        ((Q, T, torch.tensor([0, 5]), NEG, 0.1), IndexError, r"positive_ids\[1\] = 5 is out of range"),
        ((Q, T, POS, torch.tensor([2, -3]), 0.1), IndexError, r"negative_ids\[1\] = -3"),
        ((Q, T.half(), POS, NEG, 0.1), TypeError, "table must have the dtype of query"),
        ((Q, T[:, :3], POS, NEG, 0.1), ValueError, "E = 3"),
        ((Q, T, POS.int(), NEG, 0.1), TypeError, "positive_ids must be int64"),
        ((Q, T, POS[:1], NEG, 0.1), ValueError, "positive_ids has 1 entries"),
        ((Q, T, POS, NEG, 0.0), ValueError, "temperature must be a positive"),
        ((Q, T, POS, NEG, float("nan")), ValueError, "temperature must be a positive"),
        ((Q.double(), T.double(), POS, NEG, 0.1), TypeError, "query must be float32"),
        ((Q, T, POS, NEG, 0.1, torch.tensor([1, 0])), TypeError, "valid must be bool"),
        ((Q, T, POS, NEG, 0.1, torch.tensor([True])), ValueError, "valid has 1 entries"),
        ((Q, torch.randn(5, 4, requires_grad=True), POS, NEG, 0.1), ValueError, "table is treated as frozen"),
    ],
)
def test_bad_input_raises_naming_the_argument(args, error, message):
    with pytest.raises(error, match=message):
        eager_ext.gathered_infonce(*args)
