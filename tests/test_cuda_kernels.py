"""CUDA kernels against the CPU kernels (and the reference) on random inputs and the edge cases
of the CPU tests. Skipped without a GPU and an extension built with CUDA."""

import subprocess
import sys

import pytest
import torch

import eager_ext
from eager_ext import ItemTrie, reference
from conftest import FLOAT_DTYPES, requires_cuda
from trie_helpers import random_codes, walk

pytestmark = [requires_cuda, pytest.mark.cuda]
CUDA = torch.device("cuda")


def replay_nearest(x, codebooks, codes, rtol=1e-4):
    residual = x.double()
    for level, centroids in enumerate(codebooks.double()):
        distances = torch.cdist(residual, centroids).pow(2)
        chosen = distances.gather(1, codes[:, level:level + 1]).squeeze(1)
        scale = residual.pow(2).sum(1) + centroids.pow(2).sum(1).max()
        assert torch.all(chosen <= distances.min(1).values + rtol * scale + 1e-6)
        residual = residual - centroids[codes[:, level]]


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("n,d,k,levels", [(0, 8, 4, 2), (1, 1, 1, 1), (1000, 64, 256, 3), (777, 768, 256, 3),
                                          (50, 4096, 16, 2), (3000, 13, 7, 4)])
def test_rq_encode_cuda_matches_cpu(n, d, k, levels, dtype):
    g = torch.Generator().manual_seed(n + d)
    x = torch.randn(n, d, generator=g).to(dtype)
    codebooks = torch.randn(levels, k, d, generator=g).to(dtype)
    codes, norm = eager_ext.rq_encode(x.to(CUDA), codebooks.to(CUDA))
    cpu_codes, cpu_norm = eager_ext.rq_encode(x, codebooks)
    assert (codes.cpu() == cpu_codes).all(1).float().mean() > 0.97 if n else codes.shape == (0, levels)
    if n:
        replay_nearest(x, codebooks, codes.cpu())
        torch.testing.assert_close(norm.cpu(), cpu_norm, rtol=1e-2, atol=1e-2 * d)


def test_rq_encode_cuda_exact_on_integers_and_ties():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 4, (5000, 24), generator=g).float()
    codebooks = torch.randint(-2, 3, (3, 40, 24), generator=g).float()
    codes, norm = eager_ext.rq_encode(x.to(CUDA), codebooks.to(CUDA))
    expected, expected_norm = reference.rq_encode(x, codebooks)
    assert torch.equal(codes.cpu(), expected) and torch.equal(norm.cpu(), expected_norm)


def test_rq_encode_cuda_is_deterministic():
    x = torch.randn(20000, 128, device=CUDA)
    codebooks = torch.randn(3, 256, 128, device=CUDA)
    first = eager_ext.rq_encode(x, codebooks)
    second = eager_ext.rq_encode(x, codebooks)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_summary_gather_cuda(dtype):
    hidden = torch.randn(7, 2 * 9, 33).to(dtype)[:, ::2]
    positions = torch.tensor([0, 8, 3, 3, 1, 8, 0])
    out = eager_ext.summary_gather(hidden.to(CUDA), positions.to(CUDA))
    assert torch.equal(out.cpu(), reference.summary_gather(hidden, positions))


# Each call must raise the named error with the given words. They run in a child process each, so
# that a crash (the first GPU run segfaulted on the summary_gather one) fails its own case, not
# the whole session; the CPU cases tell a CUDA-only crash from one of the error path itself.
BAD_CALLS = {
    "summary_gather_grad": ("IndexError", "positions[1] = 5 is out of range",
                            "eager_ext.summary_gather(torch.randn(2, 5, 3, device=d, requires_grad=True),"
                            " torch.tensor([0, 5], device=d))"),
    "summary_gather": ("IndexError", "positions[1] = 5 is out of range",
                       "eager_ext.summary_gather(torch.randn(2, 5, 3, device=d), torch.tensor([0, 5], device=d))"),
    "summary_gather_dtype": ("TypeError", "positions must be int64",
                             "eager_ext.summary_gather(torch.randn(2, 5, 3, device=d),"
                             " torch.tensor([0, 1], dtype=torch.int32, device=d))"),
    "gathered_infonce_grad": ("IndexError", "positive_ids[1] = 5 is out of range",
                              "eager_ext.gathered_infonce(torch.randn(2, 4, device=d, requires_grad=True),"
                              " torch.randn(5, 4, device=d), torch.tensor([0, 5], device=d),"
                              " torch.tensor([1, 2], device=d), 0.1)"),
    "rq_encode_shape": ("ValueError", "has D = 5 but x [N, D] has D = 4",
                        "eager_ext.rq_encode(torch.randn(3, 4, device=d), torch.randn(2, 2, 5, device=d))"),
}


@pytest.mark.parametrize("device", ["cpu", "cuda"])
@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises_instead_of_crashing(case, device):
    error, words, call = BAD_CALLS[case]
    code = (f"import torch, eager_ext\nd = {device!r}\ntry:\n    {call}\n"
            f"except {error} as caught:\n    print('raised', caught)\nelse:\n    print('no error')\n")
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert child.returncode == 0 and child.stdout.startswith("raised") and words in child.stdout, \
        f"exit {child.returncode}\nstdout: {child.stdout}\nstderr: {child.stderr[-3000:]}"


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("b,m,e", [(1, 0, 8), (16, 2048, 1024), (5, 33, 4096), (64, 2048, 96)])
def test_gathered_infonce_cuda_matches_cpu(b, m, e, dtype):
    g = torch.Generator().manual_seed(b * m + e)
    query = torch.randn(b, e, generator=g).to(dtype)
    table = torch.randn(500, e, generator=g).to(dtype)
    positive_ids = torch.randint(0, 500, (b,), generator=g)
    negative_ids = torch.randint(0, 500, (m,), generator=g)
    valid = torch.rand(b, generator=g) < 0.7
    results = []
    for device in ["cpu", CUDA]:
        q = query.detach().to(device).requires_grad_(True)  # a fresh leaf on each device
        loss = eager_ext.gathered_infonce(q, table.to(device), positive_ids.to(device), negative_ids.to(device),
                                          0.1, valid.to(device))
        loss.backward()
        results.append((loss.detach().cpu(), q.grad.float().cpu()))
    tol = 1e-4 if dtype == torch.float32 else 3e-3
    torch.testing.assert_close(results[1][0], results[0][0], rtol=tol, atol=tol)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=10 * tol, atol=10 * tol)


def _random_step(num_items, depth, batch, beams, columns_extra, dtype, seed, strided):
    g = torch.Generator().manual_seed(seed)
    codes = random_codes(num_items, depth, 6, seed, 3)
    trie = ItemTrie.from_codes(codes)
    columns = trie.max_token - 3 + 1 + columns_extra
    rows = batch * beams
    wide = (torch.randn(rows, columns + 8, generator=g) * 3).to(dtype)
    logits = wide[:, 4:4 + columns] if strided else wide[:, :columns].contiguous()
    scores = -torch.rand(rows, generator=g) * 4
    nodes = torch.empty(rows, dtype=torch.long)
    for row in range(rows):
        item = int(torch.randint(0, codes.shape[0], (1,), generator=g))
        cut = int(torch.randint(0, depth + 1, (1,), generator=g))
        nodes[row] = walk(trie, codes[item, :cut].tolist())
    dead = torch.rand(rows, generator=g) < 0.3
    return trie, logits, scores.masked_fill(dead, float("-inf")), nodes.masked_fill(dead, -1)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("log_normalize", [False, True])
@pytest.mark.parametrize("num_items,depth,batch,beams,extra,strided", [
    (1, 1, 1, 1, 0, False), (40, 3, 4, 8, 5, True), (200, 4, 16, 20, 1000, False), (3, 2, 2, 10, 0, True),
    (500, 2, 64, 20, 31000, True),
])
def test_trie_beam_step_cuda_matches_cpu(num_items, depth, batch, beams, extra, strided, dtype, log_normalize):
    trie, logits, scores, nodes = _random_step(num_items, depth, batch, beams, extra, dtype, num_items + batch, strided)
    cpu = eager_ext.trie_beam_step(logits, scores, nodes, trie, beams, 3, log_normalize)
    gpu_trie = trie.to("cuda")
    gpu = eager_ext.trie_beam_step(logits.to(CUDA), scores.to(CUDA), nodes.to(CUDA), gpu_trie, beams, 3, log_normalize)
    gpu = [t.cpu() for t in gpu]
    if not log_normalize:  # the same float additions on both sides: exact, ties included
        for a, b in zip(gpu, cpu):
            assert torch.equal(a, b)
    else:
        torch.testing.assert_close(gpu[0], cpu[0], rtol=0, atol=1e-5)
        same = (gpu[0] - cpu[0]).abs().max() < 1e-6
        if same:
            for a, b in zip(gpu[1:], cpu[1:]):
                assert torch.equal(a, b)


def test_trie_beam_step_cuda_guards_bad_nodes_without_crashing():
    trie = ItemTrie.from_codes([[1, 2], [1, 3]]).to("cuda")
    logits = torch.randn(2, 4, device=CUDA)
    scores, _, tokens, _ = eager_ext.trie_beam_step(
        logits, torch.zeros(2, device=CUDA), torch.tensor([0, 10**9], device=CUDA), trie, 2)
    assert tokens.cpu().tolist() == [[1, -1]]  # the out-of-range beam contributes nothing
    torch.cuda.synchronize()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_trie_mask_cuda_matches_cpu(dtype):
    trie, logits, _, nodes = _random_step(300, 3, 8, 4, 500, dtype, 5, False)
    nodes = nodes.clamp(min=0)
    expected = eager_ext.trie_mask_(logits.clone(), nodes, trie, 3)
    out = eager_ext.trie_mask_(logits.to(CUDA), nodes.to(CUDA), trie.to("cuda"), 3)
    assert torch.equal(out.cpu(), expected)


def test_constrained_beam_search_cuda_matches_cpu():
    from eager_llm.generate import constrained_beam_search
    from tiny_models import left_pad, tiny_model

    model = tiny_model("llama")
    tokens = random_codes(30, 3, 8, 0) + 40 + torch.arange(3) * 8
    trie = ItemTrie.from_codes(tokens)
    input_ids, attention_mask = left_pad([[0, 5, 9, 11], [0, 7]])
    cpu = constrained_beam_search(model, input_ids, attention_mask, trie, num_beams=10, item_tokens=(40, 64))
    gpu = constrained_beam_search(model.to(CUDA), input_ids, attention_mask, trie, num_beams=10, item_tokens=(40, 64))
    assert torch.equal(gpu[0].cpu(), cpu[0])
    torch.testing.assert_close(gpu[1].cpu(), cpu[1], rtol=0, atol=1e-3)
