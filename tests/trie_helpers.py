"""Shared builders for the trie tests: random item codes and a walk over the flat arrays."""

import torch


def random_codes(num_items, depth, alphabet, seed, offset=0):
    """Distinct random rows from a small alphabet, so prefixes are shared often."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.unique(torch.randint(0, alphabet, (num_items * 2 + 4, depth), generator=g), dim=0)
    rows = rows[torch.randperm(rows.shape[0], generator=g)][:num_items]
    return rows + offset


def walk(trie, tokens):
    """Node reached by following tokens from the root with the flat arrays, or None."""
    node = 0
    for token in tokens:
        begin, end = trie.child_offsets[node], trie.child_offsets[node + 1]
        children = trie.child_tokens[begin:end].tolist()
        if token not in children:
            return None
        node = int(trie.child_nodes[begin + children.index(token)])
    return node
