"""Metrics by hand, the evaluator against exhaustive ranking, files, distributed evaluation,
and the released per-position constraint for comparison."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import torch

from eager_llm.evaluate import EvaluationConfig, evaluate, hit_ranks, ranking_metrics
from eval_fixture import ITEM_FIRST, problem
from tiny_models import VOCAB, exhaustive_scores


def test_metrics_by_hand():
    ranked = torch.tensor([[3, 1, 2], [5, 6, 7], [-1, 9, 8], [4, -1, -1]])
    targets = torch.tensor([1, 4, 9, 4])
    assert hit_ranks(ranked, targets).tolist() == [2, 0, 2, 1]
    metrics = ranking_metrics(ranked, targets, ks=(1, 2, 3))
    assert metrics["recall@1"] == pytest.approx(1 / 4)
    assert metrics["recall@2"] == pytest.approx(3 / 4)
    assert metrics["ndcg@1"] == pytest.approx(1 / 4)
    assert metrics["ndcg@2"] == pytest.approx((2 / math.log2(3) + 1) / 4)
    assert metrics["ndcg@3"] == metrics["ndcg@2"]


def test_minus_one_never_matches_and_bad_shapes_raise():
    assert ranking_metrics(torch.tensor([[-1, -1]]), torch.tensor([0]), ks=(2,))["recall@2"] == 0.0
    with pytest.raises(ValueError, match="targets must be item ids"):
        ranking_metrics(torch.tensor([[-1]]), torch.tensor([-1]))
    with pytest.raises(ValueError, match="ranked_items must be"):
        ranking_metrics(torch.tensor([1, 2]), torch.tensor([1, 2]))


def test_evaluator_equals_exhaustive_ranking_and_counts_every_user(tmp_path):
    model, prompts, targets, trie = problem(num_users=11, num_items=25)
    config = EvaluationConfig(num_beams=25, ks=(1, 5, 10, 20), batch_size=4, item_tokens=(ITEM_FIRST, VOCAB))
    result = evaluate(model, prompts, targets, trie, config, output_dir=tmp_path, progress=False)
    expected = torch.stack([
        torch.sort(exhaustive_scores(model, p, trie.codes, (ITEM_FIRST, VOCAB)), descending=True, stable=True).indices
        for p in prompts
    ])
    assert torch.equal(result.items, expected)
    assert result.metrics == {**ranking_metrics(expected, torch.tensor(targets), config.ks),
                              "validity": 1.0, "invalid_rate": 0.0, "users": 11}
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["metrics"] == result.metrics and written["config"]["num_beams"] == 25
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["user"] for line in lines] == list(range(11))
    assert json.loads(lines[3])["items"] == expected[3].tolist()


def test_released_per_position_constraint_produces_invalid_items():
    model, prompts, targets, trie = problem(num_users=6, num_items=25)
    ours = evaluate(model, prompts, targets, trie, EvaluationConfig(num_beams=10, ks=(1, 5, 10)), progress=False)
    released = evaluate(model, prompts, targets, trie,
                        EvaluationConfig(num_beams=10, ks=(1, 5, 10), constraint="per-position"), progress=False)
    assert ours.metrics["validity"] == 1.0
    # 25 items among 8^3 = 512 per-position combinations: most beams spell no item.
    assert released.metrics["invalid_rate"] > 0.2
    returned = released.items[released.items >= 0]
    assert bool((returned < trie.num_items).all())
    print(f"per-position constraint: invalid-candidate rate {released.metrics['invalid_rate']:.2f}, "
          f"recall@10 {released.metrics['recall@10']:.2f} vs trie {ours.metrics['recall@10']:.2f}")


def test_bad_evaluation_input():
    model, prompts, targets, trie = problem(num_users=3)
    with pytest.raises(ValueError, match="3 prompts but 2 targets"):
        evaluate(model, prompts, targets[:2], trie, progress=False)
    with pytest.raises(ValueError, match="largest k"):
        EvaluationConfig(num_beams=5, ks=(1, 10))
    with pytest.raises(ValueError, match="constraint"):
        EvaluationConfig(constraint="fuzzy")


@pytest.mark.skipif(shutil.which("torchrun") is None and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "torchrun")),
                    reason="torchrun not installed")
def test_two_processes_with_gloo_equal_one_process(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    worker = os.path.join(os.path.dirname(__file__), "distributed_eval_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", worker, str(tmp_path)],
                               capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    model, prompts, targets, trie = problem()
    single = evaluate(model, prompts, targets, trie, EvaluationConfig(num_beams=10, ks=(1, 5, 10), batch_size=3),
                      progress=False)
    distributed = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert distributed == single.metrics
    assert json.loads((tmp_path / "items.json").read_text()) == single.items.tolist()
