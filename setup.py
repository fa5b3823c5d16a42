"""Builds eager_ext._C: the CPU kernels always, the CUDA kernels when they can be built.

EAGER_EXT_CUDA=1 forces the CUDA kernels (and fails if they cannot be built), EAGER_EXT_CUDA=0
leaves them out; unset, they are built when torch has CUDA and nvcc is found. Build with
`pip install --no-build-isolation -e .` so that the extension links against the torch you run.
"""

import glob
import os
import shutil

from setuptools import setup
from torch.utils import cpp_extension

# -fopenmp makes at::parallel_for (an inline OpenMP loop) actually parallel in our code; the
# libgomp.so.1 it links to is the one torch has already loaded.
CXX_FLAGS = ["-O3", "-g0", "-std=c++17", "-fopenmp"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "-std=c++17", "--expt-relaxed-constexpr"]


def want_cuda() -> bool:
    forced = os.environ.get("EAGER_EXT_CUDA")
    if forced not in (None, "", "0", "1"):
        raise SystemExit(f"EAGER_EXT_CUDA must be 0 or 1, got {forced!r}")
    import torch

    available = torch.version.cuda is not None and find_cuda_home() is not None
    if forced == "1" and not available:
        raise SystemExit(
            "EAGER_EXT_CUDA=1 but the CUDA kernels cannot be built: "
            f"torch.version.cuda={torch.version.cuda}, nvcc found: {find_cuda_home() is not None}"
        )
    return available if forced is None or forced == "" else forced == "1"


def find_cuda_home():
    # The nvcc on PATH may be a wrapper script, from which torch would guess a CUDA_HOME
    # without headers; prefer an explicit CUDA_HOME, then the standard location.
    for candidate in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if candidate and os.path.exists(os.path.join(candidate, "bin", "nvcc")):
            return candidate
    nvcc = shutil.which("nvcc")
    return os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None


def extension():
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    include_dirs = [os.path.abspath("csrc")]
    if not want_cuda():
        return cpp_extension.CppExtension(
            "eager_ext._C",
            sources,
            include_dirs=include_dirs,
            extra_compile_args={"cxx": CXX_FLAGS},
            extra_link_args=LINK_FLAGS,
        )
    os.environ.setdefault("CUDA_HOME", find_cuda_home())
    import torch

    if not torch.cuda.is_available():
        # Without a visible GPU torch cannot detect the architecture; build for Hopper.
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0")
    sources += sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
    return cpp_extension.CUDAExtension(
        "eager_ext._C",
        sources,
        include_dirs=include_dirs,
        define_macros=[("EAGER_EXT_WITH_CUDA", None)],
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
        extra_link_args=LINK_FLAGS,
    )


class BuildExtension(cpp_extension.BuildExtension):
    """Keeps object files in build/ between builds, so a no-change editable reinstall is quick."""

    def finalize_options(self):
        super().finalize_options()
        self.build_temp = os.path.join("build", "temp")


setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
