import pytest
import torch

import eager_ext

HAS_CUDA_KERNELS = torch.cuda.is_available() and eager_ext.cuda_kernels_built()
requires_cuda = pytest.mark.skipif(
    not HAS_CUDA_KERNELS, reason="needs a CUDA device and an extension built with CUDA kernels"
)

FLOAT_DTYPES = [torch.float32, torch.float16, torch.bfloat16]
