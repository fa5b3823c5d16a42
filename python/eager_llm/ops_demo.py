"""A short tour of the kernels on random data (`eager-llm bench --kernels`): prints what each op
did and how it compares with the plain-torch reference."""

from __future__ import annotations

import time

import torch

import eager_ext
from eager_ext import reference


def _timed(fn, *args, repeats: int = 3):
    fn(*args)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


def _quantize(generator: torch.Generator) -> None:
    n, d, k, levels = 50_000, 64, 256, 3
    # Plant the codes: each vector is a sum of one centroid per level (shrinking scales) plus a
    # little noise, so the quantizer has a known answer to find.
    codebooks = torch.randn(levels, k, d, generator=generator) * torch.tensor([1.0, 0.5, 0.25]).view(-1, 1, 1)
    planted = torch.randint(0, k, (n, levels), generator=generator)
    x = codebooks[torch.arange(levels), planted].sum(1) + 0.02 * torch.randn(n, d, generator=generator)
    (codes, residual_norm), ours = _timed(eager_ext.rq_encode, x, codebooks)
    (expected, _), baseline = _timed(reference.rq_encode, x, codebooks)
    used = [int(torch.unique(codes[:, level]).numel()) for level in range(levels)]
    print(f"rq_encode: {n:,} vectors of dim {d} -> {levels} codes each from {k}-entry codebooks")
    print(f"  codes used per level: {used}; mean squared residual {residual_norm.mean():.3f} "
          f"(input {x.pow(2).sum(1).mean():.3f})")
    print(f"  recovered the planted codes of {(codes == planted).all(1).float().mean():.2%} of vectors")
    print(f"  agrees with cdist reference on {(codes == expected).all(1).float().mean():.2%} of rows; "
          f"{ours * 1e3:.1f} ms vs {baseline * 1e3:.1f} ms ({baseline / ours:.1f}x)")


def _contrast(generator: torch.Generator) -> None:
    batch, seq, hidden_size, items, negatives, dim = 16, 64, 256, 10_000, 2048, 256
    hidden = torch.randn(batch, seq, hidden_size, generator=generator, requires_grad=True)
    positions = torch.randint(0, seq, (batch,), generator=generator)
    projector = torch.nn.Linear(hidden_size, dim)
    table = torch.randn(items, dim, generator=generator)
    positive_ids = torch.randint(0, items, (batch,), generator=generator)
    negative_ids = torch.randint(0, items, (negatives,), generator=generator)
    valid = torch.arange(batch) % 4 != 0  # a quarter of the samples have no target item

    summary = eager_ext.summary_gather(hidden, positions)
    loss = eager_ext.gathered_infonce(projector(summary), table, positive_ids, negative_ids, 0.1, valid)
    loss.backward()
    expected = reference.gathered_infonce(
        projector(reference.summary_gather(hidden, positions)), table, positive_ids, negative_ids, 0.1, valid
    )
    touched = int((hidden.grad.abs().sum(-1) > 0).sum())
    print(f"summary_gather + gathered_infonce: {batch} sequences, {int(valid.sum())} with a target, "
          f"{negatives} shared negatives from a {items:,} x {dim} table")
    print(f"  loss {loss.item():.4f} (reference {expected.item():.4f}); gradient reached "
          f"{touched} summary positions of {batch * seq} hidden rows")


def _decode(generator: torch.Generator) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from .generate import constrained_beam_search

    levels, codes_per_level, vocab = 4, 256, 4096
    first_item_token = vocab - levels * codes_per_level
    codes = torch.unique(torch.randint(0, codes_per_level, (12_500, levels), generator=generator), dim=0)[:12_101]
    trie = eager_ext.ItemTrie.from_codes(codes + first_item_token + torch.arange(levels) * codes_per_level)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2)).eval()
    prompts = torch.randint(3, first_item_token, (8, 40), generator=generator)
    mask = torch.ones_like(prompts)
    constrained_beam_search(model, prompts, mask, trie, num_beams=20)  # warm-up
    start = time.perf_counter()
    items, scores = constrained_beam_search(model, prompts, mask, trie, num_beams=20)
    seconds = time.perf_counter() - start
    real = bool(((items >= 0) & (items < trie.num_items)).all())
    print(f"ItemTrie + constrained_beam_search: {trie.num_items:,} items of {levels} tokens "
          f"({trie.num_nodes:,} trie nodes), a random tiny Llama, 8 prompts x 20 beams")
    print(f"  {8 / seconds:.0f} prompts/s; every returned id is a real item: {real}; "
          f"prompt 0's top 3: items {items[0, :3].tolist()} (log-prob {scores[0, 0]:.2f}, {scores[0, 1]:.2f}, "
          f"{scores[0, 2]:.2f})")


def run(seed: int = 0) -> None:
    """Runs the tour and prints a few lines per op."""
    generator = torch.Generator().manual_seed(seed)
    print(f"eager_ext kernels (CUDA kernels built: {eager_ext.cuda_kernels_built()}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    _quantize(generator)
    _contrast(generator)
    _decode(generator)
