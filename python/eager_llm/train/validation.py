"""Validation during training: the constrained evaluator on held-out samples."""

from __future__ import annotations

from typing import Callable

from ..data import Sample
from ..evaluate import EvaluationConfig, evaluate
from ..index import DualSourceIndex
from ..model import EagerLLM
from ..tasks import evaluation_prompt_ids, pad_token_id


def recall_validation(samples: list[Sample], index: DualSourceIndex, tokenizer, first_token_id: int, k: int = 10,
                      num_beams: int = 20, batch_size: int = 16) -> Callable[[EagerLLM], float]:
    """A metric function for :func:`train_stage`: Recall@k of the trie-constrained beam search
    on ``samples`` (e.g. the validation split), with the fixed evaluation instruction."""
    if not samples:
        raise ValueError("no validation samples")
    prompts = evaluation_prompt_ids(samples, index.item_strings(), tokenizer)
    targets = [sample.target - 1 for sample in samples]  # trie item ids are rows
    trie = index.trie(first_token_id)
    config = EvaluationConfig(num_beams=num_beams, ks=(k,), batch_size=batch_size,
                              pad_token_id=pad_token_id(tokenizer),
                              item_tokens=(first_token_id, first_token_id + index.num_tokens))

    def metric(eager: EagerLLM) -> float:
        return evaluate(eager.lm, prompts, targets, trie, config, progress=False).metrics[f"recall@{k}"]

    return metric
