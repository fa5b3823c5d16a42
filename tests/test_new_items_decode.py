"""Items added after the index was built get codes from the frozen quantizers, join the trie,
and come out of constrained decoding."""

import torch

from eager_llm.generate import constrained_beam_search
from eager_llm.index import DualSourceIndex, IndexConfig, SourceConfig
from tiny_models import left_pad, tiny_model

FIRST_TOKEN = 40


def test_new_items_are_decoded():
    g = torch.Generator().manual_seed(0)
    semantic, behavior = torch.randn(30, 8, generator=g), torch.randn(30, 6, generator=g)
    source = SourceConfig(quantizer="rq_kmeans", levels=2, codebook_size=4)
    config = IndexConfig(semantic=source, behavior=source, extra_level_size=8, seed=0)
    index = DualSourceIndex.build(semantic[:24], behavior[:24], config)
    trie = index.trie(FIRST_TOKEN)
    rows = index.add_items_to_trie(trie, FIRST_TOKEN, semantic=semantic[24:], behavior=behavior[24:])
    assert rows.tolist() == list(range(24, 30)) and trie.num_items == 30
    vocab = FIRST_TOKEN + index.num_tokens
    model = tiny_model("llama", vocab=vocab)
    items, scores = constrained_beam_search(model, *left_pad([[0, 5, 9], [0, 7]]), trie, num_beams=30,
                                            item_tokens=(FIRST_TOKEN, vocab))
    # With as many beams as items the search is exhaustive: every item, old and new, comes out.
    for row in range(2):
        assert sorted(items[row].tolist()) == list(range(30))
    assert torch.equal(trie.lookup(index.item_token_ids(FIRST_TOKEN)), torch.arange(30))
