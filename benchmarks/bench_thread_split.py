"""Benchmark: how to spend a small CPU on the quality benchmark's training, one run on all cores
or one run per core side by side.

    python benchmarks/bench_thread_split.py            # real Amazon Beauty task mix (../shared/data)
    python benchmarks/bench_thread_split.py --quick    # a smoke run (the demo data without ../shared/data)

Times stage-1 training steps (forward, backward, AdamW update) of the full-Beauty quality
config's small model (a 4 x 128 Llama, MLP 512, over an ~18k-word vocabulary plus 128 index
tokens, GCT on, history targets scored among the index tokens) on length-grouped batches of 64
samples of the real stage-1 task mix. Three ways, interleaved over rounds, medians reported:
this process alone with every core's thread, this process alone with one thread, and one
single-threaded worker process per core all stepping at once (each on the same batches). The
table gives training steps per second of the whole machine for each, so the last row's ratio
says whether running seeds side by side finishes the benchmark sooner than running them one
after another.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lm_head import BATCH, beauty_training, quick_mode  # noqa: E402
from common import markdown_table  # noqa: E402

SHAPE = (128, 512, 4, 4)  # hidden, MLP, layers, heads: benchmarks/quality/beauty.yaml's model


def training_steps(quick: bool):
    """A function that runs one pass of AdamW steps over a fixed list of batches, and their count."""
    eager, index_tokens, batches = beauty_training(3 if quick else 12, quick, SHAPE)
    eager.index_tokens = index_tokens
    batches = batches[True]
    optimizer = torch.optim.AdamW(eager.parameters(), lr=1e-4)

    def run() -> None:
        for batch in batches:
            optimizer.zero_grad(set_to_none=True)
            eager(batch, generator=torch.Generator().manual_seed(0))["loss"].backward()
            optimizer.step()

    return run, len(batches)


def worker(quick: bool, rounds: int, start, seconds) -> None:
    torch.set_num_threads(1)
    run, _ = training_steps(quick)
    for _ in range(rounds):
        start.wait()
        began = time.perf_counter()
        run()
        seconds.put(time.perf_counter() - began)


def timed(run) -> float:
    began = time.perf_counter()
    run()
    return time.perf_counter() - began


def main() -> None:
    quick = quick_mode(__doc__.splitlines()[0])
    cores, rounds = os.cpu_count() or 1, 2 if quick else 4  # the first round is a warm-up
    context = multiprocessing.get_context("spawn")
    start, seconds = context.Barrier(cores + 1), context.Queue()
    workers = [context.Process(target=worker, args=(quick, rounds, start, seconds)) for _ in range(cores)]
    for process in workers:
        process.start()
    run, steps = training_steps(quick)
    samples: dict[str, list[float]] = {"all": [], "one": [], "side by side": []}
    for _ in range(rounds):
        torch.set_num_threads(cores)
        samples["all"].append(timed(run))
        torch.set_num_threads(1)
        samples["one"].append(timed(run))
        start.wait()  # the workers step together; this process waits for their times
        samples["side by side"].append(max(seconds.get() for _ in workers))
    for process in workers:
        process.join()
    median = {name: statistics.median(times[1:]) for name, times in samples.items()}
    throughput = {"all": steps / median["all"], "one": steps / median["one"],
                  "side by side": cores * steps / median["side by side"]}
    labels = {"all": f"one run, {cores} threads", "one": "one run, 1 thread",
              "side by side": f"{cores} runs side by side, 1 thread each"}
    rows = [[labels[name], f"{1000 * median[name] / steps:.0f}", f"{throughput[name]:.2f}",
             f"{throughput[name] / throughput['all']:.2f}x"] for name in labels]
    print(f"{steps} steps of {BATCH} samples per pass, {rounds - 1} timed rounds after a warm-up; "
          f"torch {torch.__version__}, {cores} cores")
    print(markdown_table(["how", "ms / step of one run", "steps/s of the machine", "vs one run on all cores"], rows))


if __name__ == "__main__":
    main()
