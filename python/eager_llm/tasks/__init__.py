"""Prompt templates and sample builders for EAGER-LLM's training tasks."""

from .collate import IGNORE, Batch, TokenizedSample, collate, collate_tokenized, pad_token_id, tokenize
from .samples import DEFAULT_RATIOS, TaskConfig, TaskSample, evaluation_prompt_ids, evaluation_prompts, training_samples
from .templates import INSTRUCTIONS, PROMPT_TEMPLATE, TASKS, fixed_texts, render

__all__ = [
    "IGNORE", "Batch", "TokenizedSample", "collate", "collate_tokenized", "pad_token_id", "tokenize", "DEFAULT_RATIOS", "INSTRUCTIONS", "fixed_texts", "PROMPT_TEMPLATE", "TASKS", "TaskConfig", "TaskSample",
    "evaluation_prompt_ids", "evaluation_prompts", "render", "training_samples",
]
