"""A tiny evaluation problem shared by the evaluator tests and the distributed worker."""

import torch

import eager_ext
from tiny_models import tiny_model

ITEM_FIRST, CODES, DEPTH = 40, 8, 3


def problem(num_users=11, num_items=25, seed=0):
    """(model, prompts, targets, trie): random prompts of varying length, random targets."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.unique(torch.randint(0, CODES, (num_items * 3, DEPTH), generator=g), dim=0)
    codes = codes[torch.randperm(codes.shape[0], generator=g)][:num_items]
    tokens = codes + ITEM_FIRST + torch.arange(DEPTH) * CODES
    prompts = [[0] + torch.randint(3, ITEM_FIRST, (int(torch.randint(1, 9, (1,), generator=g)),), generator=g).tolist()
               for _ in range(num_users)]
    targets = torch.randint(0, num_items, (num_users,), generator=g).tolist()
    return tiny_model("llama", seed=seed), prompts, targets, eager_ext.ItemTrie.from_codes(tokens)
