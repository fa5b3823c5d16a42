"""Configuration of one training stage (METHOD.md section 4: stage 1 and the annealing adapter)."""

from __future__ import annotations

from dataclasses import dataclass, field

PRECISIONS = ("auto", "no", "bf16", "fp16")


@dataclass
class LoraSettings:
    """PEFT LoRA on every attention and MLP projection; embeddings and LM head stay trainable
    (they hold the new index tokens). The stage-2 defaults are the paper's."""

    r: int = 8
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


@dataclass
class StageConfig:
    """One stage of training. ``batch_size`` is per process and micro-step; the global batch is
    ``batch_size * processes * grad_accumulation``. ``group_by_length`` batches samples of
    similar token length together (shuffled batches of sorted windows), which cuts padding
    about threefold on mixed-task data."""

    epochs: int = 3
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.01
    batch_size: int = 8
    grad_accumulation: int = 1
    max_grad_norm: float = 1.0
    mixed_precision: str = "auto"
    max_length: int = 256
    group_by_length: bool = True
    gct: bool = True
    lora: LoraSettings | None = None
    checkpoint_every: int = 50
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "grad_accumulation", "max_length", "checkpoint_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"StageConfig.{name} must be an integer >= 1, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"StageConfig.lr must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"StageConfig.warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.mixed_precision not in PRECISIONS:
            raise ValueError(f"StageConfig.mixed_precision must be one of {PRECISIONS}, got {self.mixed_precision!r}")


def stage1(**overrides) -> StageConfig:
    """All tasks + GCT, full fine-tuning (pass lora=LoraSettings(...) for LoRA)."""
    return StageConfig(**{"epochs": 3, "gct": True, **overrides})


def stage2(**overrides) -> StageConfig:
    """The annealing adapter: LoRA r 8 / alpha 32 / dropout 0.05, sequential recommendation only,
    LM loss only, one epoch."""
    return StageConfig(**{"epochs": 1, "gct": False, "lora": LoraSettings(), **overrides})
