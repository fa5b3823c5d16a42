"""Full-ranking evaluation of generative recommendation."""

from .evaluator import EvaluationConfig, EvaluationResult, evaluate, write_evaluation
from .metrics import hit_ranks, ranking_metrics

__all__ = ["EvaluationConfig", "EvaluationResult", "evaluate", "hit_ranks", "ranking_metrics", "write_evaluation"]
