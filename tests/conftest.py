import os

import pytest
import torch

import eager_ext

HAS_CUDA_KERNELS = torch.cuda.is_available() and eager_ext.cuda_kernels_built()
requires_cuda = pytest.mark.skipif(
    not HAS_CUDA_KERNELS, reason="needs a CUDA device and an extension built with CUDA kernels"
)

FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture
def umask_022():
    """The common umask for the test, so that a private (0600/0700) result can never pass for
    the mode a plain open() or mkdir() gives."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)
