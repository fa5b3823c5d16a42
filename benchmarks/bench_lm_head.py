"""Benchmark: the LM head on response tokens only against a window as long as the longest response,
and what history targets add to it.

    python benchmarks/bench_lm_head.py            # real Amazon Beauty task mix (../shared/data)
    python benchmarks/bench_lm_head.py --quick    # a smoke run (the demo data without ../shared/data)

One AdamW training step (forward, backward, update) of the full-Beauty quality config's small
model (a 2 x 128 Llama over an ~18k-word vocabulary plus 128 index tokens, GCT on) on batches
of 64 samples of the real stage-1 task mix, length-grouped as the trainer groups them. Item
indices are random 2 + 2 codes of 32: only their token counts matter here. The two variants
compute the same loss (tests/test_model.py checks both against a full-head reference); they
differ in how many positions go through the [hidden x vocabulary] head and its log-softmax.
The history-target rows train on the same samples with ``history_targets`` (every history item
of a seqrec sample is a target too), scored over the whole vocabulary or, as EagerLLM does when
it knows the index-token block, among the 128 index tokens only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import interleaved_medians, markdown_table  # noqa: E402
from eager_llm.data import demo_dataset, leave_one_out, load_dataset  # noqa: E402
from eager_llm.model import EagerLLM, add_index_tokens  # noqa: E402
from eager_llm.model.backbones import tiny_llama, word_tokenizer  # noqa: E402
from eager_llm.model.eager import response_window  # noqa: E402
from eager_llm.tasks import (IGNORE, TaskConfig, collate_tokenized, fixed_texts, tokenize,  # noqa: E402
                              training_samples)
from eager_llm.train.trainer import _epoch_order  # noqa: E402

BEAUTY = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "amazon-beauty-2014-5core")
BATCH, CODES, LEVELS = 64, 32, ("a", "b", "c", "d")
TASKS = TaskConfig(ratios={"seqrec": 1.0, "item2index": 1.0, "index2item": 1.0, "history_index_to_title": 0.1,
                           "history_title_to_index": 0.1})


def quick_mode(description: str) -> bool:
    """Parses ``--quick``; without it the real Beauty data is needed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    if not quick and not os.path.isdir(BEAUTY):
        raise SystemExit(f"{BEAUTY}: the Beauty data folder is needed")
    return quick


def beauty_training(count: int, quick: bool, shape: tuple[int, int, int, int] = (128, 256, 2, 4)):
    """An EagerLLM over a tiny Llama of ``shape`` (hidden size, MLP size, layers, heads) with GCT
    against random embedding tables, its index-token block, and ``count`` consecutive
    length-grouped batches of the Beauty stage-1 mix without and with history targets (the same
    samples)."""
    torch.manual_seed(0)
    if quick:
        dataset = load_dataset(BEAUTY).subsample(300) if os.path.isdir(BEAUTY) else demo_dataset()
    else:
        dataset = load_dataset(BEAUTY)
    split = leave_one_out(dataset)
    titles = [text.name() for text in dataset.item_text]
    draw = random.Random(0)
    codes = [[draw.randrange(CODES) for _ in LEVELS] for _ in titles]
    item_strings = ["".join(f"<{level}_{code}>" for level, code in zip(LEVELS, row)) for row in codes]
    token_strings = [f"<{level}_{code}>" for level in LEVELS for code in range(CODES)]
    tokenizer = word_tokenizer(titles + fixed_texts())
    model = tiny_llama(tokenizer, *shape)
    first = add_index_tokens(model, tokenizer, token_strings, None)
    batches = {}
    for history_targets in (False, True):
        samples = training_samples(split, item_strings, titles, dataclasses.replace(TASKS, history_targets=history_targets))
        tokenized = tokenize(samples, tokenizer)
        order = _epoch_order(len(tokenized), 0, 0, torch.tensor([len(sample) for sample in tokenized]), BATCH)
        batches[history_targets] = [
            collate_tokenized([tokenized[i] for i in order[start:start + BATCH]], tokenizer.pad_token_id, 192)
            for start in range(0, count * BATCH, BATCH)]
    g = torch.Generator().manual_seed(1)
    tables = {"semantic": torch.randn(dataset.num_items, 384, generator=g),
              "behavior": torch.randn(dataset.num_items, 64, generator=g)}
    return EagerLLM(model, tables), (first, first + len(token_strings)), batches


def head_positions(batches, on_tokens: bool, among_index_tokens: bool) -> str:
    """Positions per batch that go through the whole [hidden x vocabulary] head (and those that
    go through its index-token rows only)."""
    if not on_tokens:
        return f"{sum(response_window(b.labels) * len(b.labels) for b in batches) / len(batches):.0f}"
    labelled = sum(int((b.labels[:, 1:] != IGNORE).sum()) for b in batches) / len(batches)
    if not among_index_tokens:
        return f"{labelled:.0f}"
    responses = sum(int(b.response_lengths.sum()) for b in batches) / len(batches)
    return f"{responses:.0f} (+ {labelled - responses:.0f} on the index rows)"


def main() -> None:
    quick = quick_mode(__doc__.splitlines()[0])
    eager, index_tokens, batches = beauty_training(4 if quick else 24, quick)
    optimizer = torch.optim.AdamW(eager.parameters(), lr=1e-4)
    # name: (head on response tokens, history targets, their scores among the index tokens only)
    variants = {"window (longest response)": (False, False, False), "response tokens only": (True, False, False),
                "+ history targets, whole vocabulary": (True, True, False),
                "+ history targets, among index tokens": (True, True, True)}

    def steps(on_tokens: bool, history_targets: bool, among_index_tokens: bool):
        def run():
            eager.head_on_response_tokens = on_tokens
            eager.index_tokens = index_tokens if among_index_tokens else None
            for batch in batches[history_targets]:
                optimizer.zero_grad(set_to_none=True)
                eager(batch, generator=torch.Generator().manual_seed(0))["loss"].backward()
                optimizer.step()
        return run

    medians = interleaved_medians({name: steps(*how) for name, how in variants.items()}, repeats=1 if quick else 3)
    count = len(batches[False])
    tokens = sum(int(batch.attention_mask.sum()) for batch in batches[False])
    base = medians["window (longest response)"]
    rows = [[name, head_positions(batches[history], on, among), f"{1000 * medians[name] / count:.1f}",
             f"{tokens / medians[name]:.0f}", f"{base / medians[name]:.2f}x"]
            for name, (on, history, among) in variants.items()]
    print(f"{count} batches of {BATCH}, {tokens / count:.0f} real tokens per batch; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(markdown_table(["LM head on", "head positions / batch", "ms / step", "tokens/s", "speed-up"], rows))


if __name__ == "__main__":
    main()
