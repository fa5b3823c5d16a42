"""Datasets: readers, the leave-one-out split and the embedded demo dataset."""

from __future__ import annotations

import glob
import os

from .dataset import DataReport, Dataset, ItemText
from .demo import demo_dataset
from .preferences import read_preferences
from .readers import DataError, five_core, read_amazon_raw, read_recbole, read_s3rec_folder
from .split import HISTORY_LENGTH, Sample, Split, leave_one_out


def load_dataset(path: str) -> Dataset:
    """Loads a dataset by what the path holds:

    - ``"demo"`` or ``"demo:SEED"``: the embedded demo dataset;
    - a folder with ``sequences.txt`` and ``items.jsonl`` (the S3-Rec format of ../shared/data);
    - a folder with raw Amazon 2014 files ``reviews_*.json.gz`` and ``meta_*.json.gz``;
    - a folder with RecBole atomic files ``*.inter`` (and optionally ``*.item``).
    """
    if path == "demo" or path.startswith("demo:"):
        return demo_dataset(seed=int(path.split(":", 1)[1]) if ":" in path else 0)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such dataset folder (or use 'demo')")
    if os.path.exists(os.path.join(path, "sequences.txt")):
        return read_s3rec_folder(path)
    reviews = sorted(glob.glob(os.path.join(path, "reviews_*.json*")))
    meta = sorted(glob.glob(os.path.join(path, "meta_*.json*")))
    if reviews and meta:
        return read_amazon_raw(reviews[0], meta[0], name=os.path.basename(os.path.normpath(path)))
    inter = sorted(glob.glob(os.path.join(path, "*.inter")))
    if inter:
        item = sorted(glob.glob(os.path.join(path, "*.item")))
        return read_recbole(inter[0], item[0] if item else None)
    raise FileNotFoundError(
        f"{path}: found no dataset (expected sequences.txt + items.jsonl, reviews_*.json.gz + meta_*.json.gz, "
        f"or *.inter)"
    )


__all__ = [
    "DataError", "DataReport", "Dataset", "HISTORY_LENGTH", "ItemText", "Sample", "Split", "demo_dataset",
    "five_core", "leave_one_out", "load_dataset", "read_amazon_raw", "read_preferences", "read_recbole", "read_s3rec_folder",
]
