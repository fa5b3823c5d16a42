"""Generative evaluation of a split: beam search for every user, full-ranking metrics, files.

Every user is evaluated (no remainder batch is dropped). Under torchrun / accelerate launch the
users are sharded over the ranks and the results gathered, so the metrics equal those of one
process; rank 0 writes the files.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.distributed as dist
from torch import Tensor
from tqdm.auto import tqdm

from ..generate import constrained_beam_search, left_pad, position_constrained_beam_search
from ..io import atomic_write_json, atomic_write_jsonl
from .metrics import ranking_metrics

CONSTRAINTS = ("trie", "per-position")


@dataclass
class EvaluationConfig:
    """How to evaluate. `constraint="per-position"` reproduces the released EAGER-LLM decoding
    (each position limited to the tokens seen there, invalid strings filtered afterwards)."""

    num_beams: int = 20
    ks: tuple[int, ...] = (1, 5, 10, 20)
    batch_size: int = 8
    score_space: str = "items"
    item_tokens: tuple[int, int] | None = None
    constraint: str = "trie"
    pad_token_id: int = 0

    def __post_init__(self):
        if self.constraint not in CONSTRAINTS:
            raise ValueError(f"constraint must be one of {CONSTRAINTS}, got {self.constraint!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if max(self.ks) > self.num_beams:
            raise ValueError(f"the largest k ({max(self.ks)}) exceeds num_beams ({self.num_beams})")


@dataclass
class EvaluationResult:
    metrics: dict[str, float]
    items: Tensor  # [users, num_beams], -1 where no (valid) item
    scores: Tensor  # [users, num_beams]
    targets: Tensor
    user_ids: list = field(default_factory=list)


def _batches(order: list[int], batch_size: int):
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _search(model, prompts, trie, config: EvaluationConfig):
    input_ids, attention_mask = left_pad(prompts, config.pad_token_id)
    kwargs = dict(num_beams=config.num_beams, score_space=config.score_space, item_tokens=config.item_tokens)
    if config.constraint == "trie":
        items, scores = constrained_beam_search(model, input_ids, attention_mask, trie, **kwargs)
        return items, scores, items >= 0
    return position_constrained_beam_search(model, input_ids, attention_mask, trie, **kwargs)


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def evaluate(
    model,
    prompts: Sequence[Sequence[int]],
    targets: Sequence[int],
    trie,
    config: EvaluationConfig | None = None,
    user_ids: Sequence | None = None,
    output_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Runs the constrained beam search for every prompt and scores the ranked items.

    Args:
        model: a transformers causal LM (optionally PEFT-wrapped).
        prompts: token ids of each user's prompt (any lengths; they are left-padded per batch).
        targets: each user's target item id.
        trie: the items' :class:`eager_ext.ItemTrie`.
        config: :class:`EvaluationConfig` (defaults: 20 beams, k = 1/5/10/20, batch 8).
        user_ids: names for the predictions file (default: 0 .. users - 1).
        output_dir: if given, rank 0 writes ``metrics.json`` and ``predictions.jsonl`` there.
        progress: show a progress bar (rank 0 only).

    Returns:
        :class:`EvaluationResult` with the metrics (recall@k, ndcg@k, validity: the fraction of
        returned sequences that are real items, invalid_rate, users) and the ranked items.
    """
    config = config or EvaluationConfig()
    if len(prompts) != len(targets):
        raise ValueError(f"got {len(prompts)} prompts but {len(targets)} targets")
    if len(prompts) == 0:
        raise ValueError("nothing to evaluate: prompts is empty")
    if any(len(p) == 0 for p in prompts):
        raise ValueError(f"prompt {next(i for i, p in enumerate(prompts) if len(p) == 0)} is empty")
    user_ids = list(user_ids) if user_ids is not None else list(range(len(prompts)))
    rank, world = _rank_and_world()

    # Similar lengths batch together (less padding); the order is fixed, so results are too.
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))[rank::world]
    shard = {}
    bar = tqdm(total=len(order), desc=f"evaluating ({config.constraint})", disable=not progress or rank != 0,
               unit="user")
    for batch in _batches(order, config.batch_size):
        items, scores, valid = _search(model, [prompts[i] for i in batch], trie, config)
        for row, user in enumerate(batch):
            shard[user] = (items[row].cpu(), scores[row].float().cpu(), valid[row].cpu())
        bar.update(len(batch))
    bar.close()
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, shard)
        shard = {user: result for part in gathered for user, result in part.items()}

    users = range(len(prompts))
    items = torch.stack([shard[u][0] for u in users])
    scores = torch.stack([shard[u][1] for u in users])
    valid = torch.stack([shard[u][2] for u in users])
    target_tensor = torch.as_tensor(list(targets), dtype=torch.long)
    metrics = ranking_metrics(torch.where(valid, items, -1), target_tensor, config.ks)
    produced = int((scores > float("-inf")).sum())
    metrics["validity"] = float(valid.sum()) / max(produced, 1)
    metrics["invalid_rate"] = 1.0 - metrics["validity"]
    metrics["users"] = len(prompts)
    result = EvaluationResult(metrics, items, scores, target_tensor, user_ids)
    if output_dir is not None and rank == 0:
        write_evaluation(result, config, output_dir)
    return result


def _json_score(score: Tensor) -> float | None:
    """-inf (no item in that slot) is not JSON; write null."""
    value = float(score)
    return round(value, 6) if value > float("-inf") else None


def write_evaluation(result: EvaluationResult, config: EvaluationConfig, output_dir) -> None:
    """metrics.json (metrics + the config that produced them) and predictions.jsonl."""
    atomic_write_json(os.path.join(output_dir, "metrics.json"), {"metrics": result.metrics, "config": asdict(config)})
    rows = (
        {"user": user, "target": int(target), "items": items.tolist(), "scores": [_json_score(s) for s in scores]}
        for user, target, items, scores in zip(result.user_ids, result.targets, result.items, result.scores)
    )
    atomic_write_jsonl(os.path.join(output_dir, "predictions.jsonl"), rows)
