"""Atomic file writes: a reader never sees a half-written file (a crash or a full disk leaves
the old file or none); the temporary file is removed on failure. What is written gets the
permissions a plain ``open()`` or ``os.mkdir()`` would give it: ``mkstemp`` and ``mkdtemp``
make their files private (0600, 0700), and so does safetensors' ``save_file``; the rename
would carry that onto a results file or a saved model."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import tempfile
from typing import Iterable, Iterator


def _umask() -> int:
    """The process's umask now, read from /proc where it can be (os.umask can only be read by
    setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields the name of a new empty file next to ``path`` for the block to write (or replace);
    when the block succeeds the file is synced to disk, given the mode a new file gets, and
    renamed onto ``path``; when it raises the file is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # durable before the rename makes it visible
        os.chmod(temporary, 0o666 & ~_umask())  # after the writer, which may have made its own file
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def temporary_folder(parent: str, prefix: str) -> str:
    """A new empty folder in ``parent`` to fill and then rename into place. Made by os.mkdir, so
    the umask and a setgid parent apply to it as to any folder the user makes."""
    while True:
        folder = os.path.join(parent, prefix + secrets.token_hex(6))
        try:
            os.mkdir(folder)
            return folder
        except FileExistsError:
            continue


def publish_cache_folder(temporary: str, final: str, marker: str) -> None:
    """Renames the filled folder ``temporary`` onto ``final``. When another process published
    ``final`` first (it holds ``marker``, the file a complete copy has), ``temporary`` is
    removed and theirs is kept: two processes may fill the same cache at once."""
    try:
        os.replace(temporary, final)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not os.path.exists(os.path.join(final, marker)):
            raise
        shutil.rmtree(temporary)


def sha256_of_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
