"""The in-memory dataset: users' chronological item sequences plus item text.

Item and user ids are contiguous and start at 1, as in the S3-Rec files; item id i is row
i - 1 of every per-item array (embeddings, codes, the trie).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field

TEXT_FIELDS = ("title", "brand", "categories", "description", "attributes")


@dataclass
class ItemText:
    """The text fields of one item; any may be empty."""

    title: str = ""
    brand: str = ""
    categories: list[str] = field(default_factory=list)  # category paths joined with " > "
    description: str = ""
    attributes: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, str]:
        """Non-empty fields as strings, in TEXT_FIELDS order."""
        values = {
            "title": self.title,
            "brand": self.brand,
            "categories": "; ".join(self.categories),
            "description": self.description,
            "attributes": ", ".join(self.attributes),
        }
        return {name: values[name] for name in TEXT_FIELDS if values[name]}

    def name(self) -> str:
        """What the text tasks call the item: its title, else brand and attributes or categories
        (Amazon Sports has no titles, only brand + category attributes)."""
        if self.title:
            return self.title
        parts = [self.brand] if self.brand else []
        parts += self.attributes or [path.split(" > ")[-1] for path in self.categories]
        return " ".join(part for part in parts if part)

    def is_empty(self) -> bool:
        return not self.fields()


@dataclass
class DataReport:
    """What loading skipped or filled in, so that nothing disappears silently."""

    skipped_short_users: int = 0  # users with fewer than 3 interactions (no train/valid/test)
    removed_repeats: int = 0  # repeated interactions of a user with the same item
    items_without_text: int = 0
    ignored_item_records: int = 0  # item records for ids that no sequence uses
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Dataset:
    """Users' chronological sequences (``sequences[u - 1]`` is user u's list of item ids) and the
    items' text (``item_text[i - 1]`` for item i)."""

    name: str
    sequences: list[list[int]]
    item_text: list[ItemText]
    report: DataReport = field(default_factory=DataReport)

    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        return len(self.item_text)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def statistics(self) -> dict:
        lengths = [len(s) for s in self.sequences]
        return {
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "mean_length": round(self.num_interactions / max(self.num_users, 1), 4),
            "min_length": min(lengths, default=0),
            "max_length": max(lengths, default=0),
            "density": round(self.num_interactions / max(self.num_users * self.num_items, 1), 8),
        }

    def fingerprint(self) -> str:
        """Content hash of the sequences and item text (not of file names or formatting)."""
        digest = hashlib.sha256()
        for sequence in self.sequences:
            digest.update((" ".join(map(str, sequence)) + "\n").encode())
        for text in self.item_text:
            digest.update((json.dumps(text.fields(), sort_keys=True) + "\n").encode())
        return digest.hexdigest()[:16]

    def subsample(self, max_users: int, seed: int = 0) -> "Dataset":
        """A seeded random ``max_users`` users (all when there are not more), keeping only the
        items they use, renumbered 1.. in their old order; the report notes the subsample."""
        if max_users >= self.num_users:
            return self
        chosen = sorted(random.Random(seed).sample(range(self.num_users), max_users))
        sequences = [self.sequences[user] for user in chosen]
        kept = sorted({item for sequence in sequences for item in sequence})
        new_id = {item: position + 1 for position, item in enumerate(kept)}
        report = DataReport(**{**self.report.as_dict(), "notes": list(self.report.notes)})
        report.notes.append(f"subsample: {max_users} of {self.num_users} users (seed {seed}), "
                            f"{len(kept)} of {self.num_items} items, renumbered")
        return Dataset(self.name, [[new_id[item] for item in sequence] for sequence in sequences],
                       [self.item_text[item - 1] for item in kept], report)
