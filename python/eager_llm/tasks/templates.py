"""Prompt wording of every training task (METHOD.md section 4, the LC-Rec task mix).

Each task has several paraphrased instructions; training draws one per sample, test prompts
always use the first. The instruction/response wrapper is the Alpaca-style template LC-Rec and
EAGER-LLM use.
"""

from __future__ import annotations

PROMPT_TEMPLATE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)

# Placeholders: {history} (the user's items, oldest first), {item} (one item's index),
# {title} (one item's text), {preference} (the user's stated preference).
INSTRUCTIONS: dict[str, list[str]] = {
    "seqrec": [
        "The user has interacted with these items in order: {history}. Recommend the next item for the user.",
        "Here is the purchase history of a user: {history}. Predict the item the user will buy next.",
        "Given the items this user interacted with, {history}, which item comes next?",
        "A user bought {history}, in this order. What should we recommend to them now?",
    ],
    "item2index": [
        "Which item is described as follows? {title}",
        "Find the index of the item with this description: {title}",
        "An item is described as: {title}. Give its index.",
    ],
    "index2item": [
        "Describe the item {item}.",
        "What is the title of the item {item}?",
        "Tell me what item {item} is.",
    ],
    "history_index_to_title": [
        "The user has interacted with these items in order: {history}. Describe the next item the user will like.",
        "Given the user's history {history}, give the title of the item they will choose next.",
        "A user bought {history}. What is the title of the next item they will buy?",
    ],
    "history_title_to_index": [
        "The user has interacted with these items in order: {history}. Recommend the next item for the user.",
        "Here are the items a user bought, in order: {history}. Which item will they buy next?",
        "A user's history reads: {history}. Predict the index of the next item.",
    ],
    "preference_search": [
        "The user is looking for: {preference}. Their history is {history}. Recommend an item.",
        "Given the request \"{preference}\" and the history {history}, which item fits best?",
        "A user who bought {history} now asks for {preference}. Suggest an item.",
    ],
}

TASKS = tuple(INSTRUCTIONS)


def fixed_texts() -> list[str]:
    """Every text the prompts carry besides item data (the template and all instructions): what
    a word vocabulary needs beside the item titles."""
    return [PROMPT_TEMPLATE] + [text for options in INSTRUCTIONS.values() for text in options]


def render(instruction: str, **fields: str) -> str:
    """The full prompt for one instruction with its placeholders filled in."""
    return PROMPT_TEMPLATE.format(instruction=instruction.format(**fields))
