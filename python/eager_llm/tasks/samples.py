"""Training and test samples for every task, built from a split and the item index strings.

Every sample keeps the item it is about (``target_item``, 1-based), so that the GCT loss can
take part exactly for the samples that have one; all tasks here have one.

With ``TaskConfig.history_targets`` (ours, beyond METHOD.md's response-only loss) a
sequential-recommendation sample also learns each item of its history after the first from the
items before it, as SASRec learns every position of a sequence at once: the sample records where
those items lie in its prompt (``history_spans``), and the LM loss covers their tokens too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..data import Sample, Split
from .templates import INSTRUCTIONS, TASKS, render

# Fraction of each task's pool that becomes training samples (1.0 = all of it). The default
# keeps every sequential-recommendation sample and adds the alignment tasks at the same scale.
DEFAULT_RATIOS = {
    "seqrec": 1.0,
    "item2index": 1.0,
    "index2item": 1.0,
    "history_index_to_title": 0.5,
    "history_title_to_index": 0.5,
    "preference_search": 1.0,
}


@dataclass(frozen=True)
class TaskSample:
    task: str
    prompt: str
    response: str
    target_item: int | None
    # Character spans of prompt items that are targets too (history targets): each is learnt
    # from the prompt before it.
    history_spans: tuple[tuple[int, int], ...] = ()


@dataclass
class TaskConfig:
    """Which tasks to build and how much of each (see DEFAULT_RATIOS); ``seed`` fixes every
    draw (which samples, which paraphrase). ``history_targets``: sequential-recommendation
    samples learn every history item after the first as well (see the module docstring)."""

    ratios: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIOS))
    seed: int = 0
    history_targets: bool = False

    def __post_init__(self):
        unknown = set(self.ratios) - set(TASKS)
        if unknown:
            raise ValueError(f"TaskConfig.ratios has unknown tasks {sorted(unknown)}; known: {list(TASKS)}")
        for task, ratio in self.ratios.items():
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"TaskConfig.ratios[{task!r}] must lie in [0, 1], got {ratio}")


_SEPARATOR = ", "


def _history(items, item_strings) -> str:
    return _SEPARATOR.join(item_strings[item - 1] for item in items)


def history_spans(prompt: str, history: str) -> tuple[tuple[int, int], ...]:
    """Character spans in ``prompt`` of the items of ``history`` (as :func:`_history` joins
    them) after the first."""
    start = prompt.index(history)
    spans = []
    for item in history.split(_SEPARATOR):
        spans.append((start, start + len(item)))
        start += len(item) + len(_SEPARATOR)
    return tuple(spans[1:])


def _titles(items, item_titles) -> str:
    return ", ".join(f'"{item_titles[item - 1]}"' for item in items)


def _pools(split: Split, item_strings, item_titles, preferences):
    """Every possible sample of each task as (task, fields, response, target) tuples."""
    items = range(1, len(item_strings) + 1)
    pools = {
        "seqrec": [({"history": _history(s.history, item_strings)}, item_strings[s.target - 1], s.target)
                   for s in split.train],
        "item2index": [({"title": item_titles[i - 1]}, item_strings[i - 1], i) for i in items if item_titles[i - 1]],
        "index2item": [({"item": item_strings[i - 1]}, item_titles[i - 1], i) for i in items if item_titles[i - 1]],
        "history_index_to_title": [({"history": _history(s.history, item_strings)}, item_titles[s.target - 1], s.target)
                                   for s in split.train if item_titles[s.target - 1]],
        "history_title_to_index": [({"history": _titles(s.history, item_titles)}, item_strings[s.target - 1], s.target)
                                   for s in split.train],
        "preference_search": [],
    }
    if preferences:
        pools["preference_search"] = [
            ({"history": _history(s.history, item_strings), "preference": preferences[s.user]},
             item_strings[s.target - 1], s.target)
            for s in split.train if s.user in preferences
        ]
    return pools


def training_samples(split: Split, item_strings: list[str], item_titles: list[str],
                     config: TaskConfig | None = None, preferences: dict[int, str] | None = None) -> list[TaskSample]:
    """The training mix: for each task, a seeded random ``ratio`` of its pool, each sample with
    one paraphrased instruction drawn at random; shuffled together.

    Args:
        split: the leave-one-out split (only its training samples are used).
        item_strings: each item's index string, e.g. ``"<a_12><b_7><c_3><d_200>"`` (row i - 1).
        item_titles: each item's text for the text tasks (empty: the item is left out of them).
        preferences: optional user id -> preference text for preference-conditioned search.
    """
    config = config or TaskConfig()
    if len(item_strings) != len(item_titles):
        raise ValueError(f"item_strings has {len(item_strings)} entries but item_titles {len(item_titles)}")
    rng = random.Random(config.seed)
    samples = []
    for task, pool in _pools(split, item_strings, item_titles, preferences).items():
        ratio = config.ratios.get(task, 0.0)
        chosen = pool if ratio >= 1.0 else rng.sample(pool, k=round(ratio * len(pool)))
        for fields, response, target in chosen:
            prompt = render(rng.choice(INSTRUCTIONS[task]), **fields)
            spans = history_spans(prompt, fields["history"]) if task == "seqrec" and config.history_targets else ()
            samples.append(TaskSample(task, prompt, response, target, spans))
    rng.shuffle(samples)
    return samples


def evaluation_prompts(samples: list[Sample], item_strings: list[str]) -> list[str]:
    """Sequential-recommendation prompts for validation or test samples, always with the first
    (fixed) instruction, so that evaluation does not depend on a random draw."""
    instruction = INSTRUCTIONS["seqrec"][0]
    return [render(instruction, history=_history(s.history, item_strings)) for s in samples]


def evaluation_prompt_ids(samples: list[Sample], item_strings: list[str], tokenizer) -> list[list[int]]:
    """:func:`evaluation_prompts` tokenised (one batched call, no special tokens): what the
    constrained beam search takes."""
    if not samples:
        return []
    return tokenizer(evaluation_prompts(samples, item_strings), add_special_tokens=False)["input_ids"]
