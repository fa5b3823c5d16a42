"""DKI item indices: k-means, balanced k-means, the quantizers, collision policies and
DualSourceIndex, each against an independent plain-torch or hand-computed reference."""

import copy
import dataclasses
import json
import os

import pytest
import torch

from eager_llm.index import (
    BalancedTreeQuantizer,
    DualSourceIndex,
    IndexConfig,
    RQKMeansQuantizer,
    SourceConfig,
    balanced_assign,
    balanced_kmeans,
    collision_stats,
    kmeans,
    kmeans_plusplus,
    resolve_collisions,
)
from eager_llm.index.collisions import extra_level_codes


def gaussian(rows, dim, seed):
    return torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed))


def planted(sizes, dim, seed, spread=50.0, noise=0.5):
    """Well-separated Gaussian blobs of the given sizes; returns rows and their blob labels."""
    generator = torch.Generator().manual_seed(seed)
    centers = torch.randn(len(sizes), dim, generator=generator) * spread
    labels = torch.cat([torch.full((size,), blob) for blob, size in enumerate(sizes)])
    return centers[labels] + noise * torch.randn(labels.numel(), dim, generator=generator), labels


def same_partition(a, b):
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def sizes_of(assignments, k):
    return torch.bincount(assignments, minlength=k)


# ---------------------------------------------------------------------------------------------
# k-means


def test_kmeans_recovers_planted_clusters_and_their_means():
    x, labels = planted([40] * 6, dim=5, seed=0)
    result = kmeans(x, 6, seed=3)
    assert same_partition(result.assignments, labels)
    for cluster in range(6):
        members = x[result.assignments == cluster]
        torch.testing.assert_close(result.centroids[cluster], members.mean(0), atol=1e-4, rtol=0)


def test_kmeans_plusplus_seeds_one_row_per_planted_cluster():
    x, labels = planted([30] * 5, dim=4, seed=1)
    seeds = kmeans_plusplus(x, 5, torch.Generator().manual_seed(0))
    rows = [int((x == seed).all(1).nonzero()[0]) for seed in seeds]
    assert sorted(labels[rows].tolist()) == [0, 1, 2, 3, 4]


def test_kmeans_converges_to_a_lloyd_fixed_point():
    x = gaussian(300, 4, seed=2)
    result = kmeans(x, 7, seed=0, tol=0.0, max_iter=500)
    assert result.converged
    assert torch.equal(result.assignments, torch.cdist(x, result.centroids).argmin(1))
    for cluster in range(7):
        torch.testing.assert_close(result.centroids[cluster], x[result.assignments == cluster].mean(0),
                                   atol=1e-5, rtol=0)


def test_inertia_never_increases_and_matches_a_direct_sum():
    x = gaussian(500, 6, seed=3)
    result = kmeans(x, 20, seed=1, tol=0.0, max_iter=60)
    history = result.inertia_history
    assert len(history) == result.iterations + 1 and result.iterations > 3
    assert all(after <= before * (1 + 1e-6) for before, after in zip(history, history[1:]))
    direct = (x - result.centroids[result.assignments]).pow(2).sum().item()
    assert result.inertia == pytest.approx(direct, rel=1e-5)


def test_kmeans_is_deterministic_for_a_seed():
    x = gaussian(400, 8, seed=4)
    first, second = kmeans(x, 12, seed=5), kmeans(x, 12, seed=5)
    assert torch.equal(first.centroids, second.centroids)
    assert torch.equal(first.assignments, second.assignments)
    assert not torch.equal(first.centroids, kmeans(x, 12, seed=6).centroids)


def test_empty_cluster_is_reseeded_with_the_farthest_row():
    # Both rows start with the centroid at 5; the one at 1000 is empty. The mean of all rows is
    # 5.15 and the farthest row from it is 10.5, which becomes the new centroid.
    values = [0.0, 0.1, 0.2, 10.0, 10.1, 10.5]
    x = torch.tensor([[v, 0.0] for v in values])
    result = kmeans(x, 2, init=torch.tensor([[5.0, 0.0], [1000.0, 0.0]]), tol=0.0)
    assert result.reseeded == 1
    assert result.assignments.tolist() == [0, 0, 0, 1, 1, 1]
    first_step = kmeans(x, 2, init=torch.tensor([[5.0, 0.0], [1000.0, 0.0]]), max_iter=1)
    assert first_step.centroids.tolist() == [[pytest.approx(5.15), 0.0], [10.5, 0.0]]
    # Brute force over the splits of the sorted values: the result is the optimal 2-clustering.
    best = min(
        sum((v - sum(part) / len(part)) ** 2 for part in (values[:cut], values[cut:]) for v in part)
        for cut in range(1, len(values))
    )
    assert result.inertia == pytest.approx(best, rel=1e-5)


def test_kmeans_tolerates_fewer_distinct_rows_than_clusters():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]).repeat(4, 1)
    result = kmeans(x, 5, seed=0)
    assert result.converged and result.inertia == 0.0


# ---------------------------------------------------------------------------------------------
# Balanced k-means


@pytest.mark.parametrize("rows, k", [(103, 10), (100, 10), (7, 7), (50, 1), (257, 256), (1000, 37)])
def test_balanced_assign_gives_floor_or_ceil_sizes(rows, k):
    distances = torch.rand(rows, k, generator=torch.Generator().manual_seed(rows + k))
    sizes = sizes_of(balanced_assign(distances), k)
    base, extra = divmod(rows, k)
    assert int((sizes == base + 1).sum()) == extra and int((sizes == base).sum()) == k - extra


def test_balanced_assign_keeps_a_nearest_assignment_that_is_already_balanced():
    distances = torch.rand(60, 6, generator=torch.Generator().manual_seed(0))
    nearest = torch.arange(60) % 6
    distances[torch.arange(60), nearest] = -1.0  # every row's nearest, 10 rows each
    assert torch.equal(balanced_assign(distances), nearest)


def test_balanced_assign_serves_the_row_with_the_larger_regret_first():
    # Both rows prefer cluster 0 (capacity 1 each). Row 1 loses 10 if sent elsewhere, row 0 only
    # 1, so row 1 gets cluster 0: total cost 1, the optimum (the other way costs 10).
    assert balanced_assign(torch.tensor([[0.0, 1.0], [0.0, 10.0]])).tolist() == [1, 0]


def test_balanced_kmeans_recovers_equal_planted_clusters():
    x, labels = planted([25] * 4, dim=3, seed=5)
    result = balanced_kmeans(x, 4, seed=0)
    assert same_partition(result.assignments, labels)


def test_balanced_kmeans_equalizes_skewed_clusters_deterministically():
    x, labels = planted([50, 30, 20], dim=3, seed=6)
    result = balanced_kmeans(x, 4, seed=1)
    assert sizes_of(result.assignments, 4).tolist() == [25, 25, 25, 25]
    # Balanced clusters stay spatially coherent: the blob of 20 is not split.
    assert len(set(result.assignments[labels == 2].tolist())) == 1
    again = balanced_kmeans(x, 4, seed=1)
    assert torch.equal(result.assignments, again.assignments)
    assert torch.equal(result.centroids, again.centroids)


# ---------------------------------------------------------------------------------------------
# Balanced tree quantizer


def brute_force_path(tree, x):
    """Nearest child centroid at each level, by cdist, from the tree's stored centroids."""
    codes, node = [], 0
    for centroids, offsets in zip(tree.centroids, tree.child_offsets):
        children = centroids[offsets[node] : offsets[node + 1]]
        code = int(torch.cdist(x[None], children).argmin())
        codes.append(code)
        node = int(offsets[node]) + code
    return codes, node


def test_slot_tree_clusters_are_balanced_and_slots_count_items_in_id_order():
    x = gaussian(200, 6, seed=7)
    tree = BalancedTreeQuantizer(branch=16, levels=2).fit(x, seed=0)
    codes = tree.train_codes
    assert tree.codebook_sizes == [16, 16]
    assert sorted(set(sizes_of(codes[:, 0], 16).tolist())) == [12, 13]
    for cluster in range(16):
        members = (codes[:, 0] == cluster).nonzero().squeeze(1)  # ascending item ids
        assert codes[members, 1].tolist() == list(range(members.numel()))
    assert collision_stats(codes) == (0, 0)


def test_sub_cluster_tree_is_balanced_at_every_level():
    x = gaussian(300, 5, seed=8)
    tree = BalancedTreeQuantizer(branch=4, levels=3, sub_cluster=True).fit(x, seed=0)
    codes = tree.train_codes
    groups = [torch.arange(300)]
    for level in range(3):
        next_groups = []
        for members in groups:
            k = min(4, members.numel())
            base = members.numel() // k
            sizes = sizes_of(codes[members, level], k)
            assert int(sizes.min()) >= base and int(sizes.max()) <= base + 1, (level, sizes)
            next_groups += [members[codes[members, level] == code] for code in range(k)]
        groups = next_groups
    assert len(groups) == 4**3 and {len(group) for group in groups} == {4, 5}


def test_tree_encode_follows_the_nearest_centroid_at_each_level():
    x = gaussian(150, 4, seed=9)
    tree = BalancedTreeQuantizer(branch=5, levels=3, sub_cluster=True).fit(x, seed=2)
    new = gaussian(40, 4, seed=10)
    expected = torch.tensor([brute_force_path(tree, row)[0] for row in new])
    assert torch.equal(tree.encode(new), expected)


@pytest.mark.parametrize("branch, levels", [(4, 2), (3, 3)])
def test_a_full_slot_tree_numbers_every_item_within_branch(branch, levels):
    """At capacity (branch**levels items) every leaf holds exactly branch items: the slots are
    0..branch-1 in every leaf and no two items share a code."""
    codes = BalancedTreeQuantizer(branch=branch, levels=levels).fit(gaussian(branch**levels, 2, seed=3)).train_codes
    assert int(codes.max()) == branch - 1 and int(codes.min()) == 0
    assert torch.unique(codes, dim=0).shape[0] == branch**levels


def test_slot_tree_gives_new_items_the_next_free_slots_then_the_nearest_cluster_with_room():
    x = gaussian(40, 3, seed=11)
    tree = BalancedTreeQuantizer(branch=8, levels=2).fit(x, seed=0)  # 8 clusters of 5
    leaf = 3
    new = tree.centroids[0][leaf].repeat(6, 1)  # all six land in cluster 3, which has 3 free slots
    codes = tree.encode(new)
    assert codes[:3].tolist() == [[leaf, 5], [leaf, 6], [leaf, 7]]
    order = torch.cdist(new[:1], tree.centroids[0])[0].argsort(stable=True).tolist()
    runner_up = [cluster for cluster in order if cluster != leaf][0]
    assert codes[3:].tolist() == [[runner_up, 5], [runner_up, 6], [runner_up, 7]]
    assert collision_stats(torch.cat([tree.train_codes, codes])) == (0, 0)


# ---------------------------------------------------------------------------------------------
# RQ-KMeans


def test_rq_kmeans_error_decreases_level_by_level():
    x = gaussian(400, 8, seed=12)
    errors = [RQKMeansQuantizer(16, levels).fit(x, seed=0).quantization_error(x) for levels in (1, 2, 3)]
    assert errors[0] > errors[1] > errors[2] > 0
    assert errors[0] < x.pow(2).sum(1).mean().item()  # better than the zero reconstruction


def test_rq_kmeans_recovers_a_planted_residual_structure():
    # x = A[i] + B[j] + noise with coarse A and fine B: level 1 must find i, level 2 (fitted on
    # the residuals) must find j, and the error must fall to the noise level.
    generator = torch.Generator().manual_seed(21)
    coarse, fine = 100 * torch.randn(4, 6, generator=generator), 10 * torch.randn(4, 6, generator=generator)
    i, j = torch.arange(320) // 80, torch.arange(320) % 4
    x = coarse[i] + fine[j] + 0.1 * torch.randn(320, 6, generator=generator)
    quantizer = RQKMeansQuantizer(codebook_size=4, levels=2).fit(x, seed=0)
    codes = quantizer.train_codes
    assert same_partition(codes[:, 0], i) and same_partition(codes[:, 1], j)
    assert quantizer.quantization_error(x) < 6 * 0.1**2 * 1.5


def test_rq_kmeans_encode_equals_a_plain_torch_residual_loop():
    x = gaussian(300, 6, seed=13)
    quantizer = RQKMeansQuantizer(codebook_size=10, levels=3).fit(x, seed=4)
    new = gaussian(100, 6, seed=14)
    residual, expected = new.clone(), []
    for codebook in quantizer.codebooks:
        code = torch.cdist(residual, codebook).argmin(1)
        expected.append(code)
        residual = residual - codebook[code]
    assert torch.equal(quantizer.encode(new), torch.stack(expected, 1))
    assert torch.equal(quantizer.train_codes, quantizer.encode(x))
    assert quantizer.quantization_error(new) == pytest.approx(residual.pow(2).sum(1).mean().item(), rel=1e-4)


# ---------------------------------------------------------------------------------------------
# Collision policies

HAND_CODES = torch.tensor([[0, 0], [0, 0], [1, 2], [0, 0], [1, 2], [3, 3]])


def test_extra_level_numbers_each_group_in_item_order():
    resolved, report = resolve_collisions(HAND_CODES, "extra_level")
    assert resolved[:, :2].tolist() == HAND_CODES.tolist()
    assert resolved[:, 2].tolist() == [0, 1, 0, 2, 1, 0]
    assert (report.items_before, report.groups_before) == (5, 2)
    assert (report.items_after, report.groups_after) == (0, 0)
    assert report.extra_level and report.reassigned == 0


def test_reassign_moves_later_items_to_the_nearest_free_code():
    distances = torch.tensor([
        [0.0, 1.0, 1.0, 1.0],
        [0.0, 3.0, 1.0, 2.0],  # (0,0) taken, (0,2) is nearest free
        [0.0, 1.0, 1.0, 1.0],
        [0.0, 1.0, 5.0, 5.0],  # (0,0) taken, (0,1) nearest free
        [9.0, 9.0, 0.0, 9.0],  # (1,2) taken, tie at 9 goes to the smaller code: (1,0)
        [0.0, 1.0, 1.0, 1.0],
    ])
    resolved, report = resolve_collisions(HAND_CODES, "reassign", distances)
    assert resolved.tolist() == [[0, 0], [0, 2], [1, 2], [0, 1], [1, 0], [3, 3]]
    assert (report.reassigned, report.items_after, report.extra_level) == (3, 0, False)
    # The function form, asked only for the colliding rows, gives the same result.
    asked = []
    via_function, _ = resolve_collisions(HAND_CODES, "reassign", lambda rows: asked.append(rows) or distances[rows])
    assert torch.equal(via_function, resolved) and asked[0].tolist() == [1, 3, 4]


def test_reassign_falls_back_to_an_extra_level_when_no_code_is_free():
    codes = torch.tensor([[0, 0], [0, 0], [0, 1], [0, 1], [1, 0]])
    distances = torch.tensor([[0.0, 1.0]] * 5)
    resolved, report = resolve_collisions(codes, "reassign", distances)
    assert resolved.tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0]]
    assert report.extra_level and report.items_after == 0
    # Infinite distances mark codes that do not exist: (1, 1) must not be used.
    blocked, report = resolve_collisions(torch.tensor([[1, 0], [1, 0]]), "reassign",
                                         torch.tensor([[0.0, float("inf")]] * 2))
    assert blocked.tolist() == [[1, 0, 0], [1, 0, 1]] and report.extra_level


@pytest.mark.parametrize("policy", ["extra_level", "reassign"])
def test_policies_remove_all_collisions_deterministically_and_touch_only_later_duplicates(policy):
    generator = torch.Generator().manual_seed(15)
    codes = torch.randint(0, 5, (400, 3), generator=generator)
    distances = torch.rand(400, 5, generator=generator)
    resolved, report = resolve_collisions(codes, policy, distances)
    again, _ = resolve_collisions(codes, policy, distances)
    assert torch.equal(resolved, again)
    assert collision_stats(resolved) == (0, 0) and report.items_after == 0
    assert (report.items_before, report.groups_before) == collision_stats(codes)
    first_of_its_group = torch.tensor([
        not any(torch.equal(codes[row], codes[earlier]) for earlier in range(row)) for row in range(400)
    ])
    assert torch.equal(resolved[first_of_its_group, :3], codes[first_of_its_group])
    if policy == "reassign":  # movers keep their prefix
        assert torch.equal(resolved[:, :2], codes[:, :2])


def test_extra_level_codes_continue_after_fixed_rows():
    codes = torch.tensor([[1, 1], [1, 1], [1, 1], [2, 2], [1, 1]])
    extra = extra_level_codes(codes, fixed=torch.tensor([0, 2, 1]))
    assert extra.tolist() == [0, 2, 1, 0, 3]
    assert extra_level_codes(codes[[0, 1, 4]], fixed=torch.tensor([0, 2])).tolist() == [0, 2, 1]


# ---------------------------------------------------------------------------------------------
# DualSourceIndex

FIRST_TOKEN = 1000
SMALL_CONFIG = IndexConfig(
    semantic=SourceConfig("rq_kmeans", levels=2, codebook_size=8),
    behavior=SourceConfig("balanced_tree_sub", levels=2, codebook_size=4),
    collision_policy="reassign",
    extra_level_size=4,
    seed=7,
)


@pytest.fixture(scope="module")
def embeddings():
    return gaussian(260, 12, seed=16), gaussian(260, 6, seed=17)


@pytest.fixture(scope="module")
def built(embeddings):
    semantic, behavior = embeddings
    return DualSourceIndex.build(semantic[:200], behavior[:200], SMALL_CONFIG)


@pytest.fixture
def index(built):
    return copy.deepcopy(built)  # tests may add items


def test_token_ids_form_one_contiguous_block_with_one_id_per_position_and_code(index):
    sizes = index.codebook_sizes
    assert sizes[:4] == [8, 8, 4, 4]
    strings = index.token_strings()
    assert len(strings) == len(set(strings)) == index.num_tokens == sum(sizes)
    ids = index.item_token_ids(FIRST_TOKEN)
    start = FIRST_TOKEN
    for position, size in enumerate(sizes):
        letter = "abcdefgh"[position]
        assert strings[start - FIRST_TOKEN : start - FIRST_TOKEN + size] == [f"<{letter}_{c}>" for c in range(size)]
        assert torch.equal(ids[:, position], start + index.codes[:, position])
        start += size
    assert start == FIRST_TOKEN + index.num_tokens
    assert index.item_strings() == ["".join(strings[t - FIRST_TOKEN] for t in row) for row in ids.tolist()]


def test_the_trie_gives_back_every_item(index):
    assert collision_stats(index.codes) == (0, 0)
    trie = index.trie(FIRST_TOKEN)
    assert torch.equal(trie.lookup(index.item_token_ids(FIRST_TOKEN)), torch.arange(index.num_items))


def test_save_load_round_trip(index, embeddings, tmp_path):
    index.save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["index.json", "index.safetensors"]
    loaded = DualSourceIndex.load(tmp_path)
    for name in ["codes", "raw_codes", "errors"]:
        assert torch.equal(getattr(loaded, name), getattr(index, name)), name
    assert loaded.codebook_sizes == index.codebook_sizes and loaded.config == index.config
    assert loaded.statistics() == index.statistics()
    assert json.loads((tmp_path / "index.json").read_text())["statistics"] == index.statistics()
    semantic, behavior = embeddings
    new_rows = loaded.add_items(semantic[200:], behavior[200:])
    assert torch.equal(new_rows, index.add_items(semantic[200:], behavior[200:]))
    assert torch.equal(loaded.codes, index.codes)  # the loaded quantizers encode alike


def test_behavior_first_order_swaps_the_source_blocks(embeddings, tmp_path):
    semantic, behavior = embeddings
    config = dataclasses.replace(SMALL_CONFIG, collision_policy="extra_level", extra_level_size=None)
    paper = DualSourceIndex.build(semantic[:200], behavior[:200], config)
    swapped = DualSourceIndex.build(semantic[:200], behavior[:200],
                                    dataclasses.replace(config, order=("behavior", "semantic")))
    assert torch.equal(swapped.raw_codes, torch.cat([paper.raw_codes[:, 2:], paper.raw_codes[:, :2]], 1))
    # The same items collide whatever the column order, so the disambiguation codes agree.
    assert paper.has_extra_level and torch.equal(swapped.codes[:, 4], paper.codes[:, 4])
    assert swapped.codebook_sizes == [4, 4, 8, 8, paper.codebook_sizes[4]]
    sources = [position["source"] for position in swapped.statistics()["positions"]]
    assert sources == ["behavior", "behavior", "semantic", "semantic", "disambiguation"]
    swapped.save(tmp_path / "swapped")
    loaded = DualSourceIndex.load(tmp_path / "swapped")
    assert loaded.config.order == ("behavior", "semantic") and torch.equal(loaded.codes, swapped.codes)
    loaded.add_items(semantic[200:], behavior[200:])
    swapped.add_items(semantic[200:], behavior[200:])
    assert torch.equal(loaded.codes, swapped.codes)
    # Indices saved before the option existed have no order: the paper's is left out too.
    paper.save(tmp_path / "paper")
    assert "order" not in json.loads((tmp_path / "paper" / "index.json").read_text())["config"]
    assert DualSourceIndex.load(tmp_path / "paper").config.order == ("semantic", "behavior")


def test_behavior_first_reassigns_on_the_semantic_last_level(embeddings):
    semantic, behavior = embeddings
    config = dataclasses.replace(SMALL_CONFIG, extra_level_size=None, order=("behavior", "semantic"))
    index = DualSourceIndex.build(semantic[:200], behavior[:200], config)
    assert collision_stats(index.raw_codes) != (0, 0) and collision_stats(index.codes) == (0, 0)
    assert not index.has_extra_level
    assert torch.equal(index.codes[:, :3], index.raw_codes[:, :3])  # only the last position moves
    trie = index.trie(FIRST_TOKEN)
    assert torch.equal(trie.lookup(index.item_token_ids(FIRST_TOKEN)), torch.arange(200))


def test_load_rejects_an_index_json_with_a_bad_order(index, tmp_path):
    index.save(tmp_path)
    meta = json.loads((tmp_path / "index.json").read_text())
    meta["config"]["order"] = ["semantic"]
    (tmp_path / "index.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="index.json: config.order must name each of"):
        DualSourceIndex.load(tmp_path)


def test_load_rejects_tensors_that_do_not_match_the_checksum(index, tmp_path):
    index.save(tmp_path)
    path = tmp_path / "index.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="checksum"):
        DualSourceIndex.load(tmp_path)


def test_add_items_keeps_existing_codes_and_stays_collision_free(index, embeddings):
    semantic, behavior = embeddings
    before = index.codes.clone()
    trie = index.trie(FIRST_TOKEN)
    # Copies of existing items are the worst case: their raw codes collide with the originals.
    new_semantic = torch.cat([semantic[200:], semantic[:10]])
    new_behavior = torch.cat([behavior[200:], behavior[:10]])
    rows = index.add_items_to_trie(trie, FIRST_TOKEN, new_semantic, new_behavior)
    assert rows.tolist() == list(range(200, 270))
    assert torch.equal(index.codes[:200], before)
    assert collision_stats(index.codes) == (0, 0)
    assert torch.equal(trie.lookup(index.item_token_ids(FIRST_TOKEN)), torch.arange(270))
    assert index.statistics()["num_items"] == 270
    assert index.statistics()["collisions"]["before"]["items"] >= 20  # the copies did collide


def test_add_items_with_the_slot_tree_fills_free_slots_also_after_a_reload(tmp_path):
    x = gaussian(60, 4, seed=18)
    config = IndexConfig(semantic=None, behavior=SourceConfig("balanced_tree", 2, 8))
    index = DualSourceIndex.build(None, x[:50], config)
    index.save(tmp_path)
    index.add_items(behavior=x[50:])
    assert collision_stats(index.codes) == (0, 0) and index.codes.shape == (60, 2)
    assert index.position_offsets.tolist() == [0, 8] and index.item_strings()[0].startswith("<a_")
    loaded = DualSourceIndex.load(tmp_path)
    loaded.add_items(behavior=x[50:])
    assert torch.equal(loaded.codes, index.codes)


@pytest.mark.parametrize("policy", ["extra_level", "reassign"])
def test_statistics_on_a_hand_example(policy):
    # Two clusters {0, 2} and {10, 12}: centroids 1 and 11, each item 1 away: error 1.0. The two
    # codes of the single level are both taken, so "reassign" falls back to a disambiguation code.
    x = torch.tensor([[0.0], [2.0], [10.0], [12.0]])
    config = IndexConfig(semantic=SourceConfig("rq_kmeans", 1, 2), behavior=None, collision_policy=policy)
    index = DualSourceIndex.build(x, None, config)
    stats = index.statistics()
    assert stats["num_items"] == 4 and stats["num_tokens"] == 4
    assert index.token_strings() == ["<a_0>", "<a_1>", "<b_0>", "<b_1>"]
    assert [(p["source"], p["codebook_size"], p["codes_used"], p["usage"]) for p in stats["positions"]] == [
        ("semantic", 2, 2, 1.0), ("disambiguation", 2, 2, 1.0)]
    assert stats["quantization_error"] == {"semantic": pytest.approx(1.0)}
    collisions = stats["collisions"]
    assert collisions["before"] == {"items": 4, "groups": 2} and collisions["after"] == {"items": 0, "groups": 0}
    assert collisions["extra_level"] and collisions["reassigned"] == 0 and collisions["policy"] == policy
    assert index.codes[:, 1].tolist() == [0, 1, 0, 1]
    assert index.codes[0, 0] == index.codes[1, 0] != index.codes[2, 0] == index.codes[3, 0]


def test_add_items_refuses_to_grow_the_disambiguation_position():
    x = torch.tensor([[0.0], [2.0], [10.0], [12.0]])
    config = IndexConfig(semantic=SourceConfig("rq_kmeans", 1, 2), behavior=None, collision_policy="extra_level")
    index = DualSourceIndex.build(x, None, config)
    with pytest.raises(ValueError, match="extra_level_size"):
        index.add_items(semantic=torch.tensor([[1.0]]))
    assert index.num_items == 4
    roomy = DualSourceIndex.build(x, None, IndexConfig(**{**config.__dict__, "extra_level_size": 3}))
    assert roomy.add_items(semantic=torch.tensor([[1.0]])).tolist() == [4]
    assert roomy.codes[4, 1] == 2


def test_reassign_without_a_disambiguation_position_refuses_items_it_cannot_place():
    x = torch.tensor([[0.0], [10.0]])
    config = IndexConfig(semantic=SourceConfig("rq_kmeans", 1, 2), behavior=None, collision_policy="reassign")
    index = DualSourceIndex.build(x, None, config)
    assert index.codes.shape == (2, 1)
    with pytest.raises(ValueError, match="no free last-level code"):
        index.add_items(semantic=torch.tensor([[1.0]]))
    assert index.num_items == 2
    reserved = DualSourceIndex.build(x, None, IndexConfig(**{**config.__dict__, "extra_level_size": 2}))
    assert reserved.codes[:, 1].tolist() == [0, 0] and reserved.codebook_sizes == [2, 2]
    reserved.add_items(semantic=torch.tensor([[1.0]]))
    assert reserved.codes[2].tolist() == [int(reserved.codes[0, 0]), 1]


# ---------------------------------------------------------------------------------------------
# Bad inputs


def build(**overrides):
    semantic, behavior = gaussian(30, 4, seed=19), gaussian(30, 3, seed=20)
    config = IndexConfig(semantic=SourceConfig("rq_kmeans", 1, 4), behavior=SourceConfig("rq_kmeans", 1, 4))
    arguments = {"semantic": semantic, "behavior": behavior, "config": config, **overrides}
    return DualSourceIndex.build(arguments["semantic"], arguments["behavior"], arguments["config"])


@pytest.mark.parametrize("call, message", [
    (lambda: kmeans(torch.zeros(5), 2), "x must have shape"),
    (lambda: kmeans(gaussian(5, 2, 0), 0), "k must be"),
    (lambda: kmeans(gaussian(5, 2, 0), 6), "k \\(6\\) exceeds"),
    (lambda: kmeans(gaussian(5, 2, 0), 2, init=torch.zeros(3, 2)), "init must have shape"),
    (lambda: RQKMeansQuantizer(levels=0), "levels must be"),
    (lambda: RQKMeansQuantizer(codebook_size=50, levels=1).fit(gaussian(20, 2, 0)), "codebook_size \\(50\\) exceeds"),
    (lambda: BalancedTreeQuantizer(branch=50).fit(gaussian(20, 2, 0)), "branch \\(50\\) exceeds"),
    (lambda: BalancedTreeQuantizer(levels=1), "levels must be an integer >= 2"),
    (lambda: BalancedTreeQuantizer(branch=4, levels=2).fit(gaussian(40, 2, 0)),
     "40 items do not fit a slot tree of branch=4 and levels=2 \\(at most branch\\*\\*levels = 16\\)"),
    (lambda: build(config=IndexConfig(semantic=SourceConfig("balanced_tree", 2, 4), behavior=None), behavior=None),
     "config.semantic: 30 items do not fit a slot tree of branch=4"),
    (lambda: RQKMeansQuantizer(4, 1).fit(gaussian(20, 2, 0)).encode(gaussian(3, 5, 0)), "x has 5 columns"),
    (lambda: resolve_collisions(HAND_CODES, "nope"), "policy must be one of"),
    (lambda: resolve_collisions(HAND_CODES, "reassign"), "last_level_distances is required"),
    (lambda: resolve_collisions(torch.tensor([1, 2]), "extra_level"), "codes must be"),
    (lambda: build(config=IndexConfig(collision_policy="nope")), "config.collision_policy"),
    (lambda: build(config=IndexConfig(semantic=SourceConfig("pq"))), "config.semantic: quantizer must be one of"),
    (lambda: build(config=IndexConfig(semantic=SourceConfig(levels=0))), "config.semantic: levels must be"),
    (lambda: build(config=IndexConfig(semantic=None, behavior=None)), "at least one source"),
    (lambda: build(config=IndexConfig(order=("behavior",))), "config.order must name each of"),
    (lambda: build(config=IndexConfig(order=("behavior", 1))), "config.order must name each of"),
    (lambda: build(behavior=gaussian(31, 3, 0)), "same number of rows"),
    (lambda: build(behavior=None), "config.behavior is set"),
    (lambda: build(semantic=torch.zeros(30, 4, dtype=torch.long)), "semantic must be a floating-point"),
    (lambda: build().add_items(gaussian(2, 4, 0), gaussian(2, 5, 0)), "behavior has 5 columns"),
    (lambda: build().item_token_ids(-1), "first_token_id"),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_code_embeddings_are_the_mean_of_each_codes_items():
    g = torch.Generator().manual_seed(5)
    semantic, behavior = torch.randn(40, 6, generator=g), torch.randn(40, 3, generator=g)
    source = SourceConfig(quantizer="rq_kmeans", levels=2, codebook_size=4)
    index = DualSourceIndex.build(semantic, behavior, IndexConfig(semantic=source, behavior=source, seed=0))
    per_position = index.code_embeddings(semantic=semantic)  # behavior not given
    assert [tuple(e.shape) for e in per_position] == [(4, 6), (4, 6), (4, 1), (4, 1)]
    for position in range(2):
        for code in range(4):
            members = index.codes[:, position] == code
            expected = semantic[members].mean(0) if members.any() else torch.zeros(6)
            torch.testing.assert_close(per_position[position][code], expected)
    assert all(not e.any() for e in per_position[2:])
