"""Experiment: stage 1 and stage 2 on the embedded demo dataset against popularity.

    python benchmarks/bench_demo_stages.py [--epochs1 2] [--epochs2 1]
    python benchmarks/bench_demo_stages.py --quick     # a smoke run (200 users, short training)

A tiny Llama trained from scratch with a word-level tokenizer of the demo vocabulary; SASRec
behavior and hashed-word semantic embeddings; a sub-clustered balanced-tree index with 2 x 16
codes per source. Prints test Recall/NDCG@10 for popularity, stage 1 and stage 1 + stage 2.
"""

from __future__ import annotations

import argparse
import atexit
import os
import re
import shutil
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import markdown_table  # noqa: E402
from eager_llm.data import demo_dataset, leave_one_out  # noqa: E402
from eager_llm.embed import BehaviorConfig, TextEncoderConfig, build_item_embeddings, popularity_metrics  # noqa: E402
from eager_llm.evaluate import EvaluationConfig, evaluate  # noqa: E402
from eager_llm.index import DualSourceIndex, IndexConfig, SourceConfig  # noqa: E402
from eager_llm.model import EagerConfig, EagerLLM, add_index_tokens  # noqa: E402
from eager_llm.tasks import INSTRUCTIONS, PROMPT_TEMPLATE, TaskConfig, evaluation_prompts, training_samples  # noqa: E402
from eager_llm.train import StageConfig, stage2, train_stage  # noqa: E402


def word_tokenizer(texts):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in texts for w in re.findall(r"\S+", text)})
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[EOS]"] + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]")


def test_metrics(eager, tokenizer, index, first, split):
    prompts = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in evaluation_prompts(split.test, index.item_strings())]
    config = EvaluationConfig(num_beams=20, ks=(10,), batch_size=32, pad_token_id=tokenizer.pad_token_id,
                              item_tokens=(first, first + index.num_tokens))
    return evaluate(eager.lm, prompts, [s.target - 1 for s in split.test], index.trie(first), config,
                    progress=False).metrics


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs1", type=int, default=2)
    parser.add_argument("--epochs2", type=int, default=1)
    parser.add_argument("--out", default=None, help="folder for the stage checkpoints (default: a temporary one)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.epochs1 = args.epochs2 = 1
    started = time.time()
    dataset = demo_dataset(num_users=200 if args.quick else 1_500)
    split = leave_one_out(dataset)
    behavior = BehaviorConfig(model="sasrec", dim=32, max_epochs=2 if args.quick else 20, device="cpu")
    embeddings = build_item_embeddings(dataset, split, behavior, TextEncoderConfig(model="hashed-bow"), progress=False)
    source = SourceConfig(quantizer="balanced_tree_sub", levels=2, codebook_size=16)
    index = DualSourceIndex.build(embeddings.semantic, embeddings.behavior, IndexConfig(semantic=source, behavior=source))
    titles = [text.title for text in dataset.item_text]
    texts = titles + [PROMPT_TEMPLATE] + [i for options in INSTRUCTIONS.values() for i in options]
    tokenizer = word_tokenizer(texts)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=128, intermediate_size=256,
                                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
                                         bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                                         pad_token_id=tokenizer.pad_token_id))
    first = add_index_tokens(model, tokenizer, index.token_strings())
    out = args.out
    if out is None:
        out = tempfile.mkdtemp(prefix="demo-stages-")
        atexit.register(shutil.rmtree, out, ignore_errors=True)
    eager = EagerLLM(model, {"semantic": embeddings.semantic, "behavior": embeddings.behavior}, EagerConfig())
    samples = training_samples(split, index.item_strings(), titles, TaskConfig())
    one = train_stage(eager, tokenizer, samples, StageConfig(epochs=args.epochs1, lr=2e-3, batch_size=32, max_length=256,
                                                             checkpoint_every=10_000, mixed_precision="no"),
                      os.path.join(out, "stage1"), progress=False)
    after_one = test_metrics(eager, tokenizer, index, first, split)
    seqrec = training_samples(split, index.item_strings(), titles, TaskConfig(ratios={"seqrec": 1.0}))
    train_stage(eager, tokenizer, seqrec, stage2(epochs=args.epochs2, lr=1e-3, batch_size=32, max_length=256,
                                                 checkpoint_every=10_000, mixed_precision="no"),
                os.path.join(out, "stage2"), progress=False)
    after_two = test_metrics(eager, tokenizer, index, first, split)
    popularity = popularity_metrics(split, dataset.num_items, ks=(10,))
    rows = [["popularity", f"{popularity['recall@10']:.4f}", f"{popularity['ndcg@10']:.4f}"],
            ["SASRec (behavior encoder)", f"{embeddings.behavior_result.test_metrics['recall@10']:.4f}",
             f"{embeddings.behavior_result.test_metrics['ndcg@10']:.4f}"],
            ["EAGER-LLM stage 1", f"{after_one['recall@10']:.4f}", f"{after_one['ndcg@10']:.4f}"],
            ["EAGER-LLM stage 1 + 2", f"{after_two['recall@10']:.4f}", f"{after_two['ndcg@10']:.4f}"]]
    print(f"demo dataset {dataset.statistics()}, {len(samples)} stage-1 samples, "
          f"final stage-1 loss {one.history[-1]['loss']:.3f}, {time.time() - started:.0f} s")
    print()
    print(markdown_table(["test split", "Recall@10", "NDCG@10"], rows))


if __name__ == "__main__":
    main()
