"""Every op once on small CUDA inputs, including edge cases: the case compute-sanitizer checks."""

import torch

import eager_ext

device = torch.device("cuda")
g = torch.Generator().manual_seed(0)

x = torch.randn(1000, 70, generator=g).to(device)
for dtype in [torch.float32, torch.float16, torch.bfloat16]:
    eager_ext.rq_encode(x.to(dtype), torch.randn(3, 33, 70, generator=g).to(device, dtype))
eager_ext.rq_encode(torch.empty(0, 5, device=device), torch.randn(2, 3, 5, device=device))
eager_ext.rq_encode(torch.randn(7, 1, device=device), torch.randn(1, 1, 1, device=device))

hidden = torch.randn(5, 9, 17, device=device, requires_grad=True)
eager_ext.summary_gather(hidden, torch.tensor([0, 8, 4, 4, 1], device=device)).sum().backward()

query = torch.randn(6, 40, device=device, requires_grad=True)
table = torch.randn(100, 40, device=device)
loss = eager_ext.gathered_infonce(query, table, torch.tensor([0, 99, 5, 5, 1, 2], device=device),
                                  torch.randint(0, 100, (300,), device=device), 0.1,
                                  torch.tensor([True, False, True, True, False, True], device=device))
loss.backward()
eager_ext.gathered_infonce(query.detach(), table, torch.zeros(6, dtype=torch.long, device=device),
                           torch.empty(0, dtype=torch.long, device=device), 0.1)

codes = torch.randint(0, 6, (300, 3), generator=g).unique(dim=0) + 10
trie = eager_ext.ItemTrie.from_codes(codes).to(device)
rows, beams = 8, 4
logits = torch.randn(rows, 40, generator=g).to(device)
scores = torch.tensor([0.0, float("-inf")] * 4, device=device)
nodes = torch.tensor([0, -1, 1, 10**6, 2, -1, 3, 5], device=device)  # dead, live, out of range
for log_normalize in [True, False]:
    eager_ext.trie_beam_step(logits, scores, nodes, trie, beams, 0, log_normalize)
    eager_ext.trie_beam_step(logits[:, 10:30], scores, nodes, trie, beams, 10, log_normalize)
eager_ext.trie_mask_(logits, nodes.clamp(0, trie.num_nodes - 1), trie)
torch.cuda.synchronize()
print("cuda smoke: ok")
