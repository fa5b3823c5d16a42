"""Timing and memory helpers shared by the benchmark scripts.

Our machines are shared and noisy, so implementations are timed interleaved (A, B, C, A, B, C,
...) and reported as medians, and every ratio compares numbers taken in the same run. Peak
memory is measured in a fresh process per case: its resident-set high-water mark (VmHWM) is
reset just before the call, so the number is what the call itself added on top of its inputs.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from typing import Callable


def interleaved_medians(candidates: dict[str, Callable[[], object]], repeats: int, warmup: int = 1):
    """Median wall time in seconds of each candidate, run in turn `repeats` times."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    samples = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def peak_extra_mib(fn: Callable[[], object]) -> float:
    """Peak resident memory that `fn()` adds, in MiB (Linux only). Call in a fresh process.

    One warm-up call first, so that thread pools and lazily loaded code are not counted."""
    fn()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM to the current resident size
    before = _status_kib("VmRSS")
    fn()
    return (_status_kib("VmHWM") - before) / 1024


def measure_in_subprocess(script: str, args: list[str]) -> float:
    """Runs `python script --memory-probe ARGS...` and returns the MiB it prints as JSON."""
    out = subprocess.run(
        [sys.executable, script, "--memory-probe", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_mib"]


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
