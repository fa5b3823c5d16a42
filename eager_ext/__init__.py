"""eager_ext: the C++/CUDA kernels of EAGER-LLM, usable from any PyTorch training code.

Depends on torch only. Every op is also registered as ``torch.ops.eager_ext.<name>``, has a
fake (meta) kernel so that it traces under ``torch.compile``, and a plain-torch twin in
:mod:`eager_ext.reference`.
"""

import torch  # noqa: F401  (loads libtorch before the extension that links against it)

try:
    from . import _C
except ImportError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "eager_ext's compiled kernels (eager_ext._C) are missing or were built against another "
        "torch. Build them with `pip install --no-build-isolation -e .` in the source tree. "
        "The plain-torch reference, eager_ext.reference, works without them."
    ) from error

from ._C import ItemTrie
from .ops import gathered_infonce, rq_encode, summary_gather, trie_beam_step, trie_mask_


def cuda_kernels_built() -> bool:
    """Whether this build of the extension contains the CUDA kernels."""
    return _C.cuda_kernels_built()


__all__ = [
    "ItemTrie",
    "cuda_kernels_built",
    "gathered_infonce",
    "rq_encode",
    "summary_gather",
    "trie_beam_step",
    "trie_mask_",
]
