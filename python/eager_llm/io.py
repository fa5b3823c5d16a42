"""Atomic file writes: a reader never sees a half-written file, even after a crash or a full
disk; the temporary file is removed on failure."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Iterable


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def atomic_write_json(path: str | os.PathLike, value, sort_keys: bool = True) -> None:
    """``sort_keys=False`` keeps the mapping's order (e.g. table rows in display order)."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
