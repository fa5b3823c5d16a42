"""Two-stage training: stage 1 (all tasks + GCT) and the annealing adapter (stage 2)."""

from .config import LoraSettings, StageConfig, stage1, stage2
from .trainer import StageResult, apply_lora, train_stage
from .validation import recall_validation

__all__ = ["LoraSettings", "StageConfig", "StageResult", "apply_lora", "recall_validation", "stage1", "stage2", "train_stage"]
