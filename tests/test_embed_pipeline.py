"""build_item_embeddings: both tables, and a cache that a changed input invalidates."""

import torch

from eager_llm.data import demo_dataset, leave_one_out
from eager_llm.embed import BehaviorConfig, TextEncoderConfig, build_item_embeddings

BEHAVIOR = BehaviorConfig(model="sasrec", dim=16, layers=1, heads=1, max_epochs=1, batch_size=256, device="cpu")
TEXT = TextEncoderConfig(model="hashed-bow", hashed_dim=32)


def test_tables_and_cache(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        dataset = demo_dataset(num_users=200)
        split = leave_one_out(dataset)
        first = build_item_embeddings(dataset, split, BEHAVIOR, TEXT, cache_dir=str(tmp_path), progress=False)
        assert first.semantic.shape == (600, 32) and first.behavior.shape == (600, 16)
        assert not first.semantic_cached and not first.behavior_cached and first.behavior_result is not None
        again = build_item_embeddings(dataset, split, BEHAVIOR, TEXT, cache_dir=str(tmp_path), progress=False)
        assert again.semantic_cached and again.behavior_cached
        assert torch.equal(again.behavior, first.behavior) and torch.equal(again.semantic, first.semantic)
        changed = demo_dataset(num_users=201)
        other = build_item_embeddings(changed, leave_one_out(changed), BEHAVIOR, TEXT, cache_dir=str(tmp_path),
                                      progress=False)
        assert not other.semantic_cached and not other.behavior_cached
    finally:
        torch.set_num_threads(threads)
