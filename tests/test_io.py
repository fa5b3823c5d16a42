"""Atomic writes: the result appears whole or not at all, and with the permissions a plain
open() / os.mkdir() gives (the reference: a file and a folder made that way beside it)."""

import os
import stat

import pytest

from eager_llm.io import atomic_path, atomic_write_json, atomic_write_text, publish_cache_folder, temporary_folder
from eager_llm.train.checkpoint import save_checkpoint
from test_checkpoint import _training_objects

pytestmark = pytest.mark.usefixtures("umask_022")


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def plain_file_mode(folder) -> int:
    with open(folder / "plain.txt", "w"):
        pass
    return mode_of(folder / "plain.txt")


def plain_folder_mode(folder) -> int:
    os.mkdir(folder / "plain")
    return mode_of(folder / "plain")


def test_written_files_get_plain_file_permissions(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "text")
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    assert (tmp_path / "a.txt").read_text() == "text"
    assert mode_of(tmp_path / "a.txt") == mode_of(tmp_path / "b.json") == plain_file_mode(tmp_path) == 0o644


def test_the_umask_in_force_at_the_write_applies(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "a.txt", "text")
        folder = temporary_folder(str(tmp_path), ".x-")
    finally:
        os.umask(previous)
    assert mode_of(tmp_path / "a.txt") == 0o640 and mode_of(folder) == 0o750


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        with open(temporary, "w") as out:
            out.write("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_folders_get_plain_folder_permissions(tmp_path):
    expected = plain_folder_mode(tmp_path)
    assert expected == 0o755
    assert mode_of(temporary_folder(str(tmp_path), ".x-")) == expected
    model, optimizer, scheduler = _training_objects(0)
    save_checkpoint(str(tmp_path / "checkpoint"), model, optimizer, scheduler, {"step": 1})
    assert mode_of(tmp_path / "checkpoint") == expected
    assert mode_of(tmp_path / "checkpoint" / "trainable.safetensors") == plain_file_mode(tmp_path)


def _filled_folder(path, text: str):
    path.mkdir()
    (path / "config.json").write_text(text)
    return str(path)


def test_publish_cache_folder_renames_into_place(tmp_path):
    publish_cache_folder(_filled_folder(tmp_path / "ours", "ours"), str(tmp_path / "cache"), marker="config.json")
    assert (tmp_path / "cache" / "config.json").read_text() == "ours" and not (tmp_path / "ours").exists()


def test_publish_cache_folder_keeps_the_copy_another_process_published_first(tmp_path):
    theirs = _filled_folder(tmp_path / "cache", "theirs")
    publish_cache_folder(_filled_folder(tmp_path / "ours", "ours"), theirs, marker="config.json")
    assert (tmp_path / "cache" / "config.json").read_text() == "theirs" and not (tmp_path / "ours").exists()


def test_publish_cache_folder_refuses_an_incomplete_folder_in_the_way(tmp_path):
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "stray.txt").write_text("not a cache")
    with pytest.raises(OSError):
        publish_cache_folder(_filled_folder(tmp_path / "ours", "ours"), str(tmp_path / "cache"), marker="config.json")
    assert (tmp_path / "ours" / "config.json").exists() and not (tmp_path / "cache" / "config.json").exists()
