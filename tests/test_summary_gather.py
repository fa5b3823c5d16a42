"""summary_gather against advanced indexing, with gradcheck and bad input."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import eager_ext
from eager_ext import reference
from conftest import FLOAT_DTYPES


@settings(max_examples=40, deadline=None)
@given(
    b=st.integers(0, 9),
    t=st.integers(1, 12),
    h=st.integers(1, 33),
    dtype=st.sampled_from(FLOAT_DTYPES),
    layout=st.sampled_from(["contiguous", "time-strided", "column-strided", "batch-major-view"]),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_reference(b, t, h, dtype, layout, seed):
    g = torch.Generator().manual_seed(seed)
    if layout == "contiguous":
        hidden = torch.randn(b, t, h, generator=g)
    elif layout == "time-strided":
        hidden = torch.randn(b, 2 * t, h, generator=g)[:, ::2]
    elif layout == "column-strided":
        hidden = torch.randn(b, t, 2 * h, generator=g)[:, :, ::2]
    else:
        hidden = torch.randn(t, b, h, generator=g).transpose(0, 1)
    hidden = hidden.to(dtype)
    positions = torch.randint(0, t, (b,), generator=g)
    if b:
        positions[0] = t - 1
        positions[-1] = 0
    assert torch.equal(eager_ext.summary_gather(hidden, positions), reference.summary_gather(hidden, positions))


@pytest.mark.filterwarnings("ignore:Input #0 requires gradient and is not a double")
def test_gradcheck():
    hidden = torch.randn(3, 5, 4, dtype=torch.float32, requires_grad=True)
    positions = torch.tensor([4, 0, 2])
    assert torch.autograd.gradcheck(
        lambda h: eager_ext.summary_gather(h, positions), (hidden,), eps=1e-2, atol=1e-3
    )


def test_backward_scatters_and_accumulates_like_indexing():
    hidden = torch.randn(4, 6, 3, requires_grad=True)
    positions = torch.tensor([5, 5, 0, 2])
    weight = torch.randn(4, 3)
    (eager_ext.summary_gather(hidden, positions) * weight).sum().backward()
    ours = hidden.grad.clone()
    hidden.grad = None
    (reference.summary_gather(hidden, positions) * weight).sum().backward()
    assert torch.equal(ours, hidden.grad)


def test_opcheck_and_compile():
    hidden = torch.randn(3, 5, 4, requires_grad=True)
    positions = torch.tensor([4, 0, 2])
    torch.library.opcheck(torch.ops.eager_ext.summary_gather.default, (hidden, positions))
    compiled = torch.compile(eager_ext.summary_gather, backend="aot_eager", fullgraph=True)
    assert torch.equal(compiled(hidden, positions), eager_ext.summary_gather(hidden, positions))


@pytest.mark.parametrize(
    "hidden, positions, error, message",
    [
        (torch.randn(2, 5, 3), torch.tensor([0, 5]), IndexError, r"positions\[1\] = 5 is out of range"),
        (torch.randn(2, 5, 3), torch.tensor([-1, 0]), IndexError, r"positions\[0\] = -1"),
        (torch.randn(2, 5, 3), torch.tensor([0, 1], dtype=torch.int32), TypeError, "positions must be int64"),
        (torch.randn(2, 5, 3), torch.tensor([0, 1, 2]), ValueError, "positions has 3 entries"),
        (torch.randn(2, 5), torch.tensor([0, 1]), ValueError, "hidden must have shape"),
        (torch.randn(2, 0, 3), torch.tensor([0, 0]), IndexError, "out of range"),
    ],
)
def test_bad_input_raises_naming_the_argument(hidden, positions, error, message):
    with pytest.raises(error, match=message):
        eager_ext.summary_gather(hidden, positions)
