"""Item embeddings: behavior (sequential recommenders trained on the interactions) and
semantic (text encoders over item fields)."""

from .behavior import BehaviorConfig, BehaviorResult, popularity_metrics, train_behavior_model

__all__ = ["BehaviorConfig", "BehaviorResult", "popularity_metrics", "train_behavior_model"]
