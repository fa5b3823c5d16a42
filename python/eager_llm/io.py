"""Atomic file writes: a reader never sees a half-written file, even after a crash or a full
disk; the temporary file is removed on failure. What is written gets the permissions a plain
``open()`` or ``os.mkdir()`` would give it: ``mkstemp`` and ``mkdtemp`` make their files private
(0600, 0700) and the rename would carry that onto a results file or a saved model."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Iterable, Iterator


def _current_umask() -> int:
    # Read once at import (single-threaded then): os.umask can only be read by setting it.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _current_umask()
FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary file name next to ``path`` to write to; when the block succeeds the
    file is synced to disk and renamed onto ``path``, when it raises the file is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, FILE_MODE)  # after the writer: safetensors' save_file makes its file 0600
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())  # durable before the rename makes it visible
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def temporary_folder(parent: str, prefix: str) -> str:
    """A new empty folder in ``parent`` to fill and then rename into place."""
    folder = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(folder, FOLDER_MODE)
    return folder


def save_tensors(path: str | os.PathLike, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Writes ``tensors`` (contiguous CPU tensors by name) as a safetensors file, atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through a temporary file in the same folder and a rename."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as out:
        out.write(text)


def atomic_write_json(path: str | os.PathLike, value, sort_keys: bool = True) -> None:
    """``sort_keys=False`` keeps the mapping's order (e.g. table rows in display order)."""
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=sort_keys) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(row) + "\n" for row in rows))
