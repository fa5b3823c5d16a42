"""Leave-one-out split and next-item samples (METHOD.md section 1).

Per user: the last item is the test target, the second-to-last the validation target, the
rest is training. Every prefix of the training part is a training sample (history = the last
20 items before the target); validation predicts s[-2] from s[:-2]; test predicts s[-1] from
s[:-1] (the validation item is part of the test history).
"""

from __future__ import annotations

from dataclasses import dataclass

from .dataset import Dataset

HISTORY_LENGTH = 20


@dataclass(frozen=True)
class Sample:
    user: int  # 1-based user id (row + 1 of dataset.sequences)
    history: tuple[int, ...]  # item ids, oldest first, at most HISTORY_LENGTH
    target: int


@dataclass
class Split:
    train_sequences: list[list[int]]  # s[:-2] per user: the only items a model may train on
    train: list[Sample]
    valid: list[Sample]
    test: list[Sample]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}


def leave_one_out(dataset: Dataset, history_length: int = HISTORY_LENGTH) -> Split:
    """The split of METHOD.md; users need at least 3 items (guaranteed by the readers)."""
    train_sequences, train, valid, test = [], [], [], []
    for row, sequence in enumerate(dataset.sequences):
        if len(sequence) < 3:
            raise ValueError(f"user {row + 1} has {len(sequence)} items; leave-one-out needs at least 3")
        user = row + 1
        training = sequence[:-2]
        train_sequences.append(training)
        for position in range(1, len(training)):
            train.append(Sample(user, tuple(training[max(0, position - history_length) : position]), training[position]))
        valid.append(Sample(user, tuple(sequence[:-2][-history_length:]), sequence[-2]))
        test.append(Sample(user, tuple(sequence[:-1][-history_length:]), sequence[-1]))
    return Split(train_sequences, train, valid, test)
