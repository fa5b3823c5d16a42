"""A run folder: the resolved config, the run record (seed, data fingerprint, versions, step
times), a log, and one sub-folder per step.

A step is reused when its folder holds a ``step.json`` whose key (a hash of the config parts
and upstream step keys it depends on) equals the current one. A step that was interrupted
leaves no ``step.json``; running it again resumes where its own files allow (training resumes
from its checkpoint) if the key is unchanged, and starts clean otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from typing import Callable

from ..io import atomic_write_json, atomic_write_text
from .config import ConfigError, RunConfig, resolve_values

STEP_FILE = "step.json"
PENDING_FILE = ".pending-key"
CONFIG_FILE = "config.json"
RUN_FILE = "run.json"


def key_of(*parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def versions() -> dict:
    import torch
    import transformers

    from .. import __version__

    return {"eager_llm": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version()}


class RunDir:
    """The run folder ``path`` for ``config``."""

    def __init__(self, path: str, config: RunConfig, log: Callable[[str], None] | None = None):
        self.path = os.path.abspath(path)
        self.config = config
        self._log = log

    @classmethod
    def create(cls, path: str, config: RunConfig, command: str, config_file: str | None, log=None) -> "RunDir":
        """Opens (or starts) the run; the config it was started with may change between calls:
        steps whose inputs changed are recomputed."""
        os.makedirs(path, exist_ok=True)
        run = cls(path, config, log)
        atomic_write_json(run.file(CONFIG_FILE), config.to_dict())
        record = run.record()
        record.update({"seed": config.seed, "command": command, "config_file": config_file, "versions": versions()})
        record.setdefault("steps", {})
        run.write_record(record)
        return run

    @classmethod
    def open(cls, path: str, log=None) -> "RunDir":
        """An existing run, with the config it was last run with."""
        config_path = os.path.join(path, CONFIG_FILE)
        if not os.path.isfile(config_path):
            raise FileNotFoundError(f"{path}: not a run folder (no {CONFIG_FILE}); start one with `eager-llm prepare`")
        with open(config_path, encoding="utf-8") as handle:
            try:
                config = resolve_values(json.load(handle))
            except (json.JSONDecodeError, ConfigError) as error:
                raise ConfigError(f"{config_path}: {error}") from None
        return cls(path, config, log)

    def file(self, *parts: str) -> str:
        return os.path.join(self.path, *parts)

    def record(self) -> dict:
        if not os.path.isfile(self.file(RUN_FILE)):
            return {}
        with open(self.file(RUN_FILE), encoding="utf-8") as handle:
            return json.load(handle)

    def write_record(self, record: dict) -> None:
        atomic_write_json(self.file(RUN_FILE), record)

    def log(self, message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        with open(self.file("log.txt"), "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
        if self._log is not None:
            self._log(line)

    def step_record(self, name: str) -> dict | None:
        """What a finished step wrote to its step.json: its key, seconds and facts (None: not finished)."""
        path = self.file(name, STEP_FILE)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)

    def step_key(self, name: str) -> str | None:
        """The key a finished step was computed with (None: not finished)."""
        record = self.step_record(name)
        return None if record is None else record["key"]

    def step(self, name: str, key: str, compute: Callable[[str], dict | None], force: bool = False) -> bool:
        """Runs ``compute(folder)`` unless the step already finished with ``key``; returns whether
        it was reused. ``compute`` may return a dict of facts kept in run.json; a computation
        that resumed interrupted work reports the time that work took as ``earlier_seconds``,
        and the step's seconds include it."""
        folder = self.file(name)
        if not force and self.step_key(name) == key:
            self.log(f"{name}: reused (inputs unchanged)")
            self._note(name, {"reused": True})
            return True
        pending = os.path.join(folder, PENDING_FILE)
        if os.path.isdir(folder) and (force or _read_text(pending) != key):  # else: resume what was started
            shutil.rmtree(folder)
        os.makedirs(folder, exist_ok=True)
        atomic_write_text(pending, key)
        self.log(f"{name}: running")
        started = time.time()
        facts = compute(folder) or {}
        seconds = round(time.time() - started + facts.get("earlier_seconds", 0.0), 2)
        atomic_write_json(os.path.join(folder, STEP_FILE), {"key": key, "seconds": seconds, **facts})
        os.remove(pending)
        self.log(f"{name}: done in {seconds:.1f} s")
        self._note(name, {"reused": False, "seconds": seconds, **facts})
        return False

    def _note(self, name: str, facts: dict) -> None:
        record = self.record()
        steps = record.setdefault("steps", {})
        previous = steps.get(name, {})
        if facts.get("reused"):
            facts = {**previous, "reused": True}
        steps[name] = facts
        self.write_record(record)


def _read_text(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def command_line() -> str:
    return " ".join(["eager-llm", *sys.argv[1:]])
