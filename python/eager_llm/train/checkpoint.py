"""Training checkpoints: trainable weights (safetensors), optimizer, scheduler and RNG state, and
the position in the data, written atomically (a temporary folder, then a rename)."""

from __future__ import annotations

import json
import os
import random
import shutil

import torch
from safetensors.torch import load_file

from ..io import save_tensors, temporary_folder

STATE = "training_state.pt"
WEIGHTS = "trainable.safetensors"
META = "progress.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_weights(path: str, model) -> None:
    """The trainable parameters as safetensors, atomically."""
    save_tensors(path, trainable_state(model))


def load_weights(path: str, model) -> None:
    """Copies weights written by save_weights into the model's parameters of the same names."""
    weights = load_file(path)
    parameters = dict(model.named_parameters())
    unknown = set(weights) - set(parameters)
    if unknown:
        raise ValueError(f"{path}: holds parameters this model lacks: {sorted(unknown)[:5]}")
    with torch.no_grad():
        for name, value in weights.items():
            parameters[name].copy_(value)


def save_checkpoint(folder: str, model, optimizer, scheduler, progress: dict) -> None:
    """Writes the checkpoint into a temporary sibling, then swaps it in. A kill at any point
    leaves `folder` or, while the swap is under way, `folder.old` whole: load_checkpoint reads
    `folder` when it is whole (it is the newer), else the fallback. A kill before the swap loses
    only the checkpoint being written; the next save clears what any kill left behind."""
    folder = os.path.abspath(folder)
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    prefix = f".{os.path.basename(folder)}-partial-"
    _remove_partial_writes(parent, prefix)
    temporary = temporary_folder(parent, prefix)
    try:
        save_weights(os.path.join(temporary, WEIGHTS), model)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()},
                   os.path.join(temporary, STATE))
        with open(os.path.join(temporary, META), "w") as out:
            json.dump(progress, out)
        old = folder + ".old"
        if _is_complete(folder):
            # The previous checkpoint becomes the fallback; a stale fallback is older still.
            _remove(old)
            os.replace(folder, old)
        else:
            # A kill between the two renames left only the fallback, or a partial folder.
            _remove(folder)
        os.replace(temporary, folder)
        _remove(old)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def remove_checkpoint(folder: str) -> None:
    """Deletes a checkpoint written by save_checkpoint and its fallback, so that a kill midway
    never leaves one that looks whole."""
    folder = os.path.abspath(folder)
    _remove(folder + ".old")
    _remove(folder)


def load_checkpoint(folder: str, model, optimizer, scheduler) -> dict | None:
    """Restores a checkpoint written by save_checkpoint; returns its progress, or None if there
    is none. The training state is read with weights_only=True: no arbitrary unpickling."""
    folder = os.path.abspath(folder)
    if not _is_complete(folder):
        if not _is_complete(folder + ".old"):
            return None
        folder = folder + ".old"  # killed while swapping in a newer one
    load_weights(os.path.join(folder, WEIGHTS), model)
    state = torch.load(os.path.join(folder, STATE), weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(_as_tuple(state["python_rng"]))
    with open(os.path.join(folder, META)) as handle:
        return json.load(handle)


def _is_complete(folder: str) -> bool:
    # progress.json is written last, so its presence means the rest is whole.
    return os.path.exists(os.path.join(folder, META))


def _remove(folder: str) -> None:
    # progress.json goes first: a folder is whole exactly while it holds one.
    if os.path.exists(os.path.join(folder, META)):
        os.remove(os.path.join(folder, META))
    shutil.rmtree(folder, ignore_errors=True)


def _remove_partial_writes(parent: str, prefix: str) -> None:
    for name in os.listdir(parent):
        if name.startswith(prefix):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
