"""A tiny end-to-end training problem: the demo dataset, a small index, a word-level tokenizer
and a tiny Llama with the index tokens."""

import torch

from eager_llm.data import demo_dataset, leave_one_out
from eager_llm.index import DualSourceIndex, IndexConfig, SourceConfig
from eager_llm.model import EagerConfig, EagerLLM, add_index_tokens, backbones
from eager_llm.tasks import TaskConfig, training_samples
from tiny_models import tiny_model

WORDS = ["[PAD]", "[UNK]", "[EOS]"] + "the user has interacted with these items in order recommend next item for , . ### Instruction: Response: which is described as follows describe".split()


def word_tokenizer():
    return backbones.word_tokenizer([" ".join(WORDS[3:])])


def problem(num_users=40, ratios=None, seed=0, with_index=False):
    """(eager, tokenizer, samples), plus (index, first_token_id) with ``with_index``: an index of
    2 + 2 codes of 8 over random embeddings."""
    dataset = demo_dataset(num_users=num_users, num_items=60)
    split = leave_one_out(dataset)
    g = torch.Generator().manual_seed(seed)
    semantic, behavior = torch.randn(60, 6, generator=g), torch.randn(60, 4, generator=g)
    source = SourceConfig(quantizer="rq_kmeans", levels=2, codebook_size=8)
    index = DualSourceIndex.build(semantic, behavior, IndexConfig(semantic=source, behavior=source, seed=seed))
    tokenizer = word_tokenizer()
    model = tiny_model("llama", vocab=len(WORDS), seed=seed)
    first_token_id = add_index_tokens(model, tokenizer, index.token_strings())
    strings = index.item_strings()
    titles = [text.title for text in dataset.item_text]
    samples = training_samples(split, strings, titles, TaskConfig(ratios=ratios or {"seqrec": 1.0, "index2item": 1.0}))
    torch.manual_seed(seed)
    eager = EagerLLM(model, {"semantic": semantic, "behavior": behavior}, EagerConfig(num_negatives=16))
    return (eager, tokenizer, samples, index, first_token_id) if with_index else (eager, tokenizer, samples)
