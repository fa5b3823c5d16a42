"""Benchmark: one training step of the full-Beauty quality model in fp32 against bf16 autocast.

    python benchmarks/bench_precision.py            # real Amazon Beauty task mix (../shared/data)
    python benchmarks/bench_precision.py --quick    # a smoke run (a subsample, or the demo data)

The model is ``benchmarks/quality/beauty.yaml``'s: a Llama of 4 layers x 128 (MLP 512) over the
~18k-word Beauty vocabulary plus 128 index tokens, GCT on, history targets scored among the index
tokens as the pipeline trains it. One AdamW step (forward, backward, update) on consecutive
length-grouped batches of 64 samples of the real stage-1 mix; bf16 wraps the forward pass in
``torch.autocast("cpu", torch.bfloat16)``, which is what ``stage1.mixed_precision: bf16`` does
through accelerate. The floor column counts the matmul FLOPs of a step (6 per weight per token
for the body, the head on response tokens, the index rows on the other targets, attention).
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_lm_head import BATCH, beauty_training, quick_mode  # noqa: E402
from common import interleaved_medians, markdown_table  # noqa: E402
from eager_llm.tasks import IGNORE  # noqa: E402

SHAPE = (128, 512, 4, 4)  # hidden size, MLP size, layers, heads: beauty.yaml's model


def step_gflop(batches, model, index_rows: int) -> float:
    """Matmul GFLOP of one training step (forward + backward = 3 x the forward's 2 per multiply-add)."""
    config = model.config
    hidden, vocab = config.hidden_size, model.get_output_embeddings().weight.shape[0]
    body_weights = config.num_hidden_layers * (4 * hidden * hidden + 3 * hidden * config.intermediate_size)
    total = 0.0
    for batch in batches:
        tokens = int(batch.attention_mask.sum())
        lengths = batch.attention_mask.sum(dim=1).double()
        responses = int(batch.response_lengths.sum())
        other_targets = int((batch.labels[:, 1:] != IGNORE).sum()) - responses
        attention = 2 * 2 * config.num_hidden_layers * hidden * float((lengths * lengths).sum()) / 2  # causal half
        total += 6 * (body_weights * tokens + vocab * hidden * responses + index_rows * hidden * other_targets) \
            + 3 * attention
    return total / len(batches) / 1e9


def main() -> None:
    quick = quick_mode(__doc__.splitlines()[0])
    eager, index_tokens, batches = beauty_training(2 if quick else 16, quick, SHAPE)
    batches = batches[True]  # history targets, as beauty.yaml trains
    eager.index_tokens = index_tokens
    optimizer = torch.optim.AdamW(eager.parameters(), lr=1e-4)
    precisions = {"fp32": contextlib.nullcontext, "bf16 autocast": lambda: torch.autocast("cpu", torch.bfloat16)}
    with torch.no_grad():  # the same untrained model and batch in both precisions
        losses = {}
        for name, context in precisions.items():
            with context():
                losses[name] = float(eager(batches[0], generator=torch.Generator().manual_seed(0))["loss"])

    def steps(name: str):
        def run():
            for batch in batches:
                optimizer.zero_grad(set_to_none=True)
                with precisions[name]():
                    loss = eager(batch, generator=torch.Generator().manual_seed(0))["loss"]
                loss.backward()
                optimizer.step()
        return run

    medians = interleaved_medians({name: steps(name) for name in precisions}, repeats=1 if quick else 3)
    count = len(batches)
    tokens = sum(int(batch.attention_mask.sum()) for batch in batches)
    gflop = step_gflop(batches, eager.lm, index_tokens[1] - index_tokens[0])
    base = medians["fp32"]
    rows = [[name, f"{losses[name]:.3f}", f"{1000 * medians[name] / count:.1f}", f"{tokens / medians[name]:.0f}",
             f"{gflop * count / medians[name]:.0f}", f"{base / medians[name]:.2f}x"] for name in precisions]
    print(f"{count} batches of {BATCH}, {tokens / count:.0f} real tokens and {gflop:.1f} matmul GFLOP per step; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(markdown_table(["precision", "loss, batch 1 untrained", "ms / step", "tokens/s", "GFLOP/s", "speed-up"], rows))


if __name__ == "__main__":
    main()
