"""GPU kernel benchmarks (CUDA events, median of many runs after warm-up, random inputs).

    python benchmarks/bench_cuda.py --device cuda         # on a GPU: the sizes of BENCHMARKS.md
    python benchmarks/bench_cuda.py --device cpu --quick  # the same code paths, tiny, on the CPU

Sections: the machine's copy bandwidth and matmul rate; trie_beam_step at 64 to 8,192 rows with
the full 32,000-column vocabulary and the 1,024-column item slice, 12k to 20M items;
rq_encode at N = 1M and 10M, D = 768, K = 256, L = 3 against the torch reference and a tiled
torch version, as a fraction of the measured fp32 matmul rate; gathered_infonce at B = 64,
M = 2,048, E = 4,096 against the expanded form; and an end-to-end constrained decode of a tiny
model against HF generate with prefix_allowed_tokens_fn.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eager_ext  # noqa: E402
from bench_gathered_infonce import expanded_infonce  # noqa: E402
from bench_rq_encode import rq_encode_tiled_torch  # noqa: E402
from common import markdown_table  # noqa: E402
from eager_ext import reference  # noqa: E402

LEVELS, CODES = 4, 256


class Timer:
    """Median milliseconds of fn() over `repeats` runs after `warmup`, with CUDA events on a GPU."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, fn, repeats: int = 50, warmup: int = 5) -> float:
        for _ in range(warmup):
            fn()
        samples = []
        for _ in range(repeats):
            if self.device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                samples.append(start.elapsed_time(end))
            else:
                begin = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - begin) * 1e3)
        return statistics.median(samples)


def distinct_item_tokens(num_items: int, first_token: int) -> torch.Tensor:
    """num_items distinct 4-token codes without a unique(): multiplying by an odd constant is a
    bijection modulo 2**32, so the base-256 digits of (i * c) mod 2**32 are distinct for i < 2**32."""
    values = (torch.arange(num_items, dtype=torch.long) * 2654435761) % (1 << 32)
    digits = torch.stack([(values >> (8 * (LEVELS - 1 - d))) & 255 for d in range(LEVELS)], dim=1)
    return digits + first_token + torch.arange(LEVELS) * CODES


def machine(timer: Timer, device, quick: bool) -> str:
    n = (1 << 20) if quick else (1 << 28)
    source = torch.rand(n, device=device)
    target = torch.empty_like(source)
    copy_ms = timer(lambda: target.copy_(source), repeats=20)
    size = 512 if quick else 8192
    rows = []
    for dtype in [torch.float32, torch.bfloat16]:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        ms = timer(lambda: a @ b, repeats=10)
        rows.append([f"matmul {size}^3 {str(dtype).split('.')[-1]}", f"{2 * size ** 3 / ms / 1e9:.1f} TFLOP/s"])
    rows.insert(0, ["device-to-device copy", f"{2 * n * 4 / copy_ms / 1e6:.0f} GB/s"])
    return markdown_table(["measure", "rate"], rows)


def trie_steps(timer: Timer, device, quick: bool) -> str:
    vocab = 32_000
    first = vocab - LEVELS * CODES
    item_counts = [2_000] if quick else [12_101, 1_000_000, 20_000_000]
    row_counts = [64, 320] if quick else [64, 320, 1_024, 8_192]
    beams = 16 if quick else 64  # 64 beams keeps every row count a multiple
    rows = []
    for num_items in item_counts:
        trie = eager_ext.ItemTrie.from_codes(distinct_item_tokens(num_items, first)).to(device)
        for num_rows in row_counts:
            g = torch.Generator().manual_seed(num_rows)
            logits = (torch.randn(num_rows, vocab, generator=g) * 2).to(device)
            scores = (-torch.rand(num_rows, generator=g) * 3).to(device)
            # Beams on depth-1 nodes (node ids 1..256 in breadth-first order): the widest fan-out.
            nodes = torch.randint(1, 1 + int(trie.child_offsets[1].item()), (num_rows,), generator=g).to(device)
            width = min(beams, num_rows)
            full = timer(lambda: eager_ext.trie_beam_step(logits, scores, nodes, trie, width))
            item_slice = logits[:, first:]
            sliced = timer(lambda: eager_ext.trie_beam_step(item_slice, scores, nodes, trie, width, first))
            rows.append([f"{num_items:,}", str(num_rows), str(width), f"{full * 1e3:.1f}", f"{sliced * 1e3:.1f}",
                         f"{num_rows * vocab * 4 / full / 1e6:.0f}"])
    return markdown_table(["items", "rows", "beams", "full V=32,000 us", "item slice 1,024 us",
                           "full-V logits GB/s"], rows)


def rq_encode_section(timer: Timer, device, quick: bool) -> str:
    d, k, levels = (64, 32, 3) if quick else (768, 256, 3)
    sizes = [10_000] if quick else [1_000_000, 10_000_000]
    a = torch.randn(8192, d, device=device)
    b = torch.randn(d, k * levels, device=device)
    ceiling = 2 * 8192 * d * k * levels / timer(lambda: a @ b, repeats=20) / 1e9  # TFLOP/s per ms -> GFLOP/s
    rows = []
    for n in sizes:
        x = torch.randn(n, d, device=device)
        codebooks = torch.randn(levels, k, d, device=device)
        ours = timer(lambda: eager_ext.rq_encode(x, codebooks), repeats=5, warmup=1)
        tiled = timer(lambda: rq_encode_tiled_torch(x, codebooks, tile=65_536), repeats=3, warmup=1)
        ref = timer(lambda: reference.rq_encode(x, codebooks), repeats=3, warmup=1) if n <= 1_000_000 else float("nan")
        flops = 2 * n * k * d * levels
        rows.append([f"{n:,}", f"{ours:.1f}", f"{tiled:.1f}", f"{ref:.1f}", f"{tiled / ours:.2f}x",
                     f"{flops / ours / 1e9:.1f} TFLOP/s ({flops / ours / 1e9 / ceiling:.0%} of fp32 matmul "
                     f"{ceiling:.1f})"])
        del x
    return markdown_table(["N", "ours ms", "tiled torch ms", "cdist reference ms", "vs tiled", "ours rate"], rows)


def infonce_section(timer: Timer, device, quick: bool) -> str:
    b, m, e = (8, 64, 32) if quick else (64, 2048, 4096)
    query = torch.randn(b, e, device=device, requires_grad=True)
    table = torch.randn(50_000 if not quick else 500, e, device=device)
    positive = torch.randint(0, table.shape[0], (b,), device=device)
    negative = torch.randint(0, table.shape[0], (m,), device=device)

    def run(fn):
        loss = fn(query, table, positive, negative, 0.1)
        loss.backward()
        query.grad = None

    ours = timer(lambda: run(eager_ext.gathered_infonce))
    expanded = timer(lambda: run(expanded_infonce))
    gathered = timer(lambda: run(reference.gathered_infonce))
    return markdown_table(["B x M x E", "ours ms", "gathered+matmul ms", "expanded ms", "vs expanded"],
                          [[f"{b} x {m} x {e}", f"{ours:.3f}", f"{gathered:.3f}", f"{expanded:.3f}",
                            f"{expanded / ours:.1f}x"]])


def decode_section(timer: Timer, device, quick: bool) -> str:
    from bench_decode import allowed_functions, hf_generate, prompts, tiny_llama
    from eager_llm.generate import constrained_beam_search

    vocab = 4_096 if quick else 32_000
    model = tiny_llama(vocab=vocab).to(device)
    tokens = distinct_item_tokens(2_000 if quick else 12_101, vocab - LEVELS * CODES)
    trie = eager_ext.ItemTrie.from_codes(tokens).to(device)
    rows = []
    for batch in ([2] if quick else [8, 32]):
        input_ids, attention_mask = prompts(batch, vocab)
        input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
        by_trie, _ = allowed_functions(tokens, input_ids.shape[1])
        with torch.inference_mode():
            ours = timer(lambda: constrained_beam_search(model, input_ids, attention_mask, trie, 20), repeats=10)
            hf = timer(lambda: hf_generate(model, input_ids, attention_mask, by_trie), repeats=3, warmup=1)
        rows.append([str(batch), f"{ours:.1f}", f"{hf:.1f}", f"{batch / ours * 1e3:.0f}", f"{hf / ours:.1f}x"])
    return markdown_table(["batch", "ours (items) ms", "HF dict trie ms", "ours users/s", "speed-up"], rows)


SECTIONS = {
    "machine": machine,
    "trie_beam_step": trie_steps,
    "rq_encode": rq_encode_section,
    "gathered_infonce": infonce_section,
    "decode": decode_section,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="cuda, cpu, or auto (cuda when available)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sections", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    args = parser.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda":
        if not torch.cuda.is_available() or not eager_ext.cuda_kernels_built():
            raise SystemExit("bench_cuda.py needs a GPU and an extension built with CUDA kernels (EAGER_EXT_CUDA=1)")
        print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    timer = Timer(device)
    for name in args.sections:
        started = time.time()
        print(f"\n## {name}\n")
        print(SECTIONS[name](timer, device, args.quick), flush=True)
        print(f"\n({time.time() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
