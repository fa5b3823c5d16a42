"""Two-stage training: stage 1 (all tasks + GCT) and the annealing adapter (stage 2)."""

from .config import LoraSettings, StageConfig, stage1, stage2
from .trainer import StageResult, apply_lora, train_stage

__all__ = ["LoraSettings", "StageConfig", "StageResult", "apply_lora", "stage1", "stage2", "train_stage"]
