"""Benchmark: what the GCT losses add to a training step, fused ops against the released way.

    python benchmarks/bench_gct_overhead.py                   # a 4-layer, 256-wide Llama
    python benchmarks/bench_gct_overhead.py --size smollm2    # SmolLM2-135M's shape (random weights)
    python benchmarks/bench_gct_overhead.py --quick           # a smoke run

One AdamW step (forward, backward, update) of a Llama on 16 sequences of 128 tokens, in
three variants: the LM loss alone; LM + GCT with eager_ext's summary_gather and
gathered_infonce (2,048 shared negatives from a 12,101-item semantic table of width 384 and a
behavior table of width 64); and LM + GCT the way the released code does it (a Python loop
gathering the summary states, the negatives expanded to [B, M, E]). Peak memory is what a step
adds on top of its inputs, measured in a fresh process per variant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gathered_infonce import expanded_infonce  # noqa: E402
from common import interleaved_medians, markdown_table, measure_in_subprocess, peak_extra_mib  # noqa: E402
from eager_llm.model import EagerConfig, EagerLLM  # noqa: E402
from eager_llm.model.eager import response_token_loss  # noqa: E402
from eager_llm.tasks import Batch  # noqa: E402

ITEMS, BATCH, LENGTH = 12_101, 16, 128


# hidden, intermediate, layers, heads, kv heads, vocab. "smollm2" is SmolLM2-135M's shape plus
# 1,024 index tokens; its weights do not matter for time and memory, so they stay random.
SIZES = {"quick": (64, 128, 1, 4, 4, 512), "small": (256, 512, 4, 4, 4, 4_096),
         "smollm2": (576, 1_536, 30, 9, 3, 49_152 + 1_024)}


def build(size: str, variant: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    hidden, intermediate, layers, heads, kv_heads, vocab = SIZES[size]
    quick = size == "quick"
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate,
                                         num_hidden_layers=layers, num_attention_heads=heads,
                                         num_key_value_heads=kv_heads, tie_word_embeddings=size == "smollm2"))
    g = torch.Generator().manual_seed(1)
    tables = {} if variant == "LM only" else {"semantic": torch.randn(ITEMS, 384, generator=g),
                                               "behavior": torch.randn(ITEMS, 64, generator=g)}
    eager = EagerLLM(model, tables, EagerConfig())
    length = 32 if quick else LENGTH
    ids = torch.randint(3, vocab, (BATCH, length), generator=g)
    labels = ids.clone()
    labels[:, : length // 2] = -100
    batch = Batch(ids, torch.ones_like(ids), labels, torch.full((BATCH,), length - 1),
                  torch.randint(1, ITEMS + 1, (BATCH,), generator=g))
    optimizer = torch.optim.AdamW([p for p in eager.parameters() if p.requires_grad], lr=1e-4)
    return eager, batch, optimizer


def released_way_loss(eager: EagerLLM, batch: Batch) -> torch.Tensor:
    # The LM loss as EagerLLM computes it, so that the variants differ in their GCT alone.
    output = eager.lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, output_hidden_states=True,
                      logits_to_keep=1)
    hidden = output.hidden_states[-1]
    loss = response_token_loss(eager.lm.get_output_embeddings(), hidden, batch.labels, batch.response_lengths)
    summary = torch.stack([hidden[row, batch.summary_positions[row]] for row in range(hidden.shape[0])])
    negatives = torch.randint(0, ITEMS, (eager.config.num_negatives,))
    for source, projector in eager.projectors.items():
        query = projector(F.normalize(summary, dim=-1))
        loss = loss + 0.1 * expanded_infonce(query, eager.table(source), batch.target_items - 1, negatives, 0.1)
    return loss


def step_function(eager, batch, optimizer, variant):
    def step():
        if variant == "LM + GCT, released way":
            loss = released_way_loss(eager, batch)
        else:
            loss = eager(batch)["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return step


VARIANTS = ["LM only", "LM + GCT, fused ops", "LM + GCT, released way"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--quick", action="store_true", help="same as --size quick, one repeat")
    parser.add_argument("--memory-probe", nargs=2, metavar=("VARIANT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        variant, size = args.memory_probe
        eager, batch, optimizer = build(size, variant)
        print(json.dumps({"peak_mib": peak_extra_mib(step_function(eager, batch, optimizer, variant))}))
        return
    size = "quick" if args.quick else args.size
    repeats = 1 if args.quick else (5 if size == "smollm2" else 7)
    steps = {variant: step_function(*build(size, variant), variant) for variant in VARIANTS}
    times = interleaved_medians(steps, repeats)
    steps.clear()  # free the three models before the fresh-process memory probes
    memory = {v: measure_in_subprocess(__file__, [v, size]) for v in VARIANTS}
    tokens = BATCH * (32 if args.quick else LENGTH)
    base = times["LM only"]
    rows = [[variant, f"{times[variant] * 1e3:.0f}", f"{tokens / times[variant]:.0f}",
             f"{(times[variant] / base - 1) * 100:+.1f} %", f"{memory[variant]:.0f}",
             f"{memory[variant] - memory['LM only']:+.0f}"] for variant in VARIANTS]
    print(f"{size} Llama, one AdamW step, {BATCH} x {tokens // BATCH} tokens, {torch.get_num_threads()} threads, "
          f"median of {repeats}")
    print()
    print(markdown_table(["variant", "step ms", "tokens/s", "time vs LM only", "peak MiB", "MiB vs LM only"], rows))


if __name__ == "__main__":
    main()
