"""Readers for the dataset formats: the S3-Rec folder of ../shared/data, raw Amazon 2014
review + metadata files, and RecBole atomic files. Every error names the file and line."""

from __future__ import annotations

import ast
import gzip
import json
import os
from collections import Counter, defaultdict
from typing import Iterator

from .dataset import DataReport, Dataset, ItemText

MIN_INTERACTIONS = 3  # fewer leaves no training item once validation and test are held out


class DataError(ValueError):
    """Bad input data; the message names the file and, where it applies, the line."""


def _lines(path: str) -> Iterator[tuple[int, str]]:
    """(1-based line number, text) of each non-empty line; gzip by extension; UTF-8 strictly."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({error.reason} at byte {error.start})") from None
            if text.strip():
                yield number, text.rstrip("\r\n")


def _json_lines(path: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of each line of a JSON-lines file."""
    for number, line in _lines(path):
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}:{number}: not valid JSON ({error.msg})") from None


def _int(token: str, path: str, number: int, what: str) -> int:
    try:
        value = int(token)
    except ValueError:
        raise DataError(f"{path}:{number}: {what} {token!r} is not an integer") from None
    if value < 1:
        raise DataError(f"{path}:{number}: {what} {value} must be >= 1")
    return value


def _text_from_record(record: dict) -> ItemText:
    categories = record.get("categories") or []
    paths = [" > ".join(str(c) for c in path if c) if isinstance(path, list) else str(path) for path in categories]
    attributes = [str(a) for a in (record.get("attributes") or record.get("s3rec_attributes") or []) if a]
    return ItemText(
        title=str(record.get("title") or "").strip(),
        brand=str(record.get("brand") or "").strip(),
        categories=[p for p in paths if p],
        description=str(record.get("description") or "").strip(),
        attributes=attributes,
    )


def _deduplicate(sequence: list[int]) -> tuple[list[int], int]:
    """Keeps the first interaction with each item; returns (sequence, number removed)."""
    seen, kept = set(), []
    for item in sequence:
        if item not in seen:
            seen.add(item)
            kept.append(item)
    return kept, len(sequence) - len(kept)


def read_s3rec_folder(path: str) -> Dataset:
    """A folder with ``sequences.txt`` (``user item item ...``, chronological, ids from 1) and
    ``items.jsonl`` (one JSON object per item with ``item_id`` and text fields)."""
    sequences_path = os.path.join(path, "sequences.txt")
    items_path = os.path.join(path, "items.jsonl")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such dataset folder")
    report = DataReport()
    by_user: dict[int, list[int]] = {}
    for number, line in _lines(sequences_path):
        tokens = line.split()
        user = _int(tokens[0], sequences_path, number, "user id")
        if user in by_user:
            raise DataError(f"{sequences_path}:{number}: user {user} appears a second time")
        items = [_int(t, sequences_path, number, "item id") for t in tokens[1:]]
        items, removed = _deduplicate(items)
        report.removed_repeats += removed
        by_user[user] = items
    if not by_user:
        raise DataError(f"{sequences_path}: no sequences")
    used_items = {item for items in by_user.values() for item in items}
    num_items = max(used_items)
    missing = sorted(set(range(1, num_items + 1)) - used_items)
    if missing:
        raise DataError(f"{sequences_path}: item ids must be contiguous from 1; {len(missing)} ids are never used "
                        f"(first: {missing[:5]})")
    expected_users = set(range(1, max(by_user) + 1))
    if set(by_user) != expected_users:
        gap = sorted(expected_users - set(by_user))[:5]
        raise DataError(f"{sequences_path}: user ids must be contiguous from 1; missing {gap}")

    texts: dict[int, ItemText] = {}
    for number, record in _json_lines(items_path):
        if not isinstance(record, dict) or "item_id" not in record:
            raise DataError(f"{items_path}:{number}: every record needs an item_id")
        item = _int(str(record["item_id"]), items_path, number, "item_id")
        if item in texts:
            raise DataError(f"{items_path}:{number}: item_id {item} appears a second time")
        if item > num_items:
            report.ignored_item_records += 1
            continue
        texts[item] = _text_from_record(record)
    item_text = [texts.get(i, ItemText()) for i in range(1, num_items + 1)]
    report.items_without_text = sum(t.is_empty() for t in item_text)

    sequences = []
    for user in range(1, len(by_user) + 1):
        if len(by_user[user]) < MIN_INTERACTIONS:
            report.skipped_short_users += 1
            continue
        sequences.append(by_user[user])
    if report.skipped_short_users:
        report.notes.append("users with fewer than 3 interactions were skipped; user ids were renumbered")
    return Dataset(os.path.basename(os.path.normpath(path)), sequences, item_text, report)


def _parse_record(line: str, path: str, number: int) -> dict:
    """A JSON object, or a Python dict literal as in the older Amazon metadata files (parsed with
    ast.literal_eval, which evaluates literals only, never code)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        pass
    try:
        value = ast.literal_eval(line)
    except (ValueError, SyntaxError):
        raise DataError(f"{path}:{number}: neither JSON nor a Python literal") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}:{number}: expected an object, got {type(value).__name__}")
    return value


def five_core(interactions: list[tuple[str, str, int]], k: int = 5) -> list[tuple[str, str, int]]:
    """Repeatedly drops users and items with fewer than k interactions until none is left."""
    while True:
        users = Counter(u for u, _, _ in interactions)
        items = Counter(i for _, i, _ in interactions)
        kept = [(u, i, t) for u, i, t in interactions if users[u] >= k and items[i] >= k]
        if len(kept) == len(interactions):
            return kept
        interactions = kept


def read_amazon_raw(reviews_path: str, meta_path: str, name: str | None = None, k_core: int = 5) -> Dataset:
    """Raw Amazon 2014 files: ``reviews_*.json.gz`` (reviewerID, asin, unixReviewTime) and
    ``meta_*.json.gz`` (asin, title, categories, description, brand; JSON or Python literals).
    Applies repeated-item removal, chronological order (ties keep file order) and iterative
    k-core filtering; ids are numbered by first appearance."""
    report = DataReport()
    interactions = []
    for number, line in _lines(reviews_path):
        record = _parse_record(line, reviews_path, number)
        try:
            interactions.append((str(record["reviewerID"]), str(record["asin"]), int(record["unixReviewTime"])))
        except (KeyError, ValueError, TypeError):
            raise DataError(f"{reviews_path}:{number}: needs reviewerID, asin and an integer unixReviewTime") from None
    by_user: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    for order, (user, item, time) in enumerate(interactions):
        by_user[user].append((time, order, item))
    deduplicated = []
    for user, events in by_user.items():
        items, removed = _deduplicate([item for _, _, item in sorted(events)])
        report.removed_repeats += removed
        times = {item: time for time, _, item in sorted(events, reverse=True)}  # first time per item
        deduplicated += [(user, item, times[item]) for item in items]
    kept = five_core(deduplicated, k_core)
    if not kept:
        raise DataError(f"{reviews_path}: nothing is left after {k_core}-core filtering")
    user_ids: dict[str, int] = {}
    item_ids: dict[str, int] = {}
    sequences: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for position, (user, item, time) in enumerate(kept):
        u = user_ids.setdefault(user, len(user_ids) + 1)
        i = item_ids.setdefault(item, len(item_ids) + 1)
        sequences[u].append((time, position, i))
    meta: dict[str, dict] = {}
    for number, line in _lines(meta_path):
        record = _parse_record(line, meta_path, number)
        if "asin" not in record:
            raise DataError(f"{meta_path}:{number}: record without asin")
        if record["asin"] in item_ids:
            meta[record["asin"]] = record
    item_text = [_text_from_record(meta.get(asin, {})) for asin in item_ids]
    report.items_without_text = sum(t.is_empty() for t in item_text)
    ordered = [[i for _, _, i in sorted(sequences[u])] for u in range(1, len(user_ids) + 1)]
    return Dataset(name or os.path.basename(reviews_path).split(".")[0], ordered, item_text, report)


def read_recbole(inter_path: str, item_path: str | None = None, name: str | None = None) -> Dataset:
    """RecBole atomic files: ``.inter`` (tab-separated, header ``user_id:token item_id:token
    ... timestamp:float``) and optionally ``.item`` (``item_id:token`` plus text columns)."""
    rows = list(_lines(inter_path))
    if not rows:
        raise DataError(f"{inter_path}: empty file")
    header = [column.split(":")[0] for column in rows[0][1].split("\t")]
    for needed in ("user_id", "item_id"):
        if needed not in header:
            raise DataError(f"{inter_path}:1: header needs a {needed} column, got {header}")
    user_col, item_col = header.index("user_id"), header.index("item_id")
    time_col = header.index("timestamp") if "timestamp" in header else None
    interactions = []
    for number, line in rows[1:]:
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataError(f"{inter_path}:{number}: {len(cells)} columns, header has {len(header)}")
        try:
            time = float(cells[time_col]) if time_col is not None else float(number)
        except ValueError:
            raise DataError(f"{inter_path}:{number}: timestamp {cells[time_col]!r} is not a number") from None
        interactions.append((cells[user_col], cells[item_col], time))
    report = DataReport()
    by_user: dict[str, list] = defaultdict(list)
    for order, (user, item, time) in enumerate(interactions):
        by_user[user].append((time, order, item))
    item_ids: dict[str, int] = {}
    sequences = []
    for user in by_user:
        items, removed = _deduplicate([item for _, _, item in sorted(by_user[user])])
        report.removed_repeats += removed
        if len(items) < MIN_INTERACTIONS:
            report.skipped_short_users += 1
            continue
        sequences.append([item_ids.setdefault(item, len(item_ids) + 1) for item in items])
    texts: dict[str, ItemText] = {}
    if item_path is not None:
        item_rows = list(_lines(item_path))
        columns = [column.split(":")[0] for column in item_rows[0][1].split("\t")] if item_rows else []
        if "item_id" not in columns:
            raise DataError(f"{item_path}:1: header needs an item_id column")
        for number, line in item_rows[1:]:
            cells = dict(zip(columns, line.split("\t")))
            record = {"title": cells.get("title"), "brand": cells.get("brand"),
                      "categories": [cells["categories"].split(",")] if cells.get("categories") else [],
                      "description": cells.get("description")}
            texts[cells["item_id"]] = _text_from_record(record)
    item_text = [texts.get(item, ItemText()) for item in item_ids]
    report.items_without_text = sum(t.is_empty() for t in item_text)
    return Dataset(name or os.path.basename(inter_path).split(".")[0], sequences, item_text, report)
