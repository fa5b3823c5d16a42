"""Training checkpoints: trainable weights (safetensors), optimizer, scheduler and RNG state, and
the position in the data, written atomically (a temporary folder, then a rename)."""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile

import torch
from safetensors.torch import load_file, save_file

STATE = "training_state.pt"
WEIGHTS = "trainable.safetensors"
META = "progress.json"


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().contiguous() for name, p in model.named_parameters() if p.requires_grad}


def save_weights(path: str, model) -> None:
    """The trainable parameters as safetensors, atomically."""
    temporary = path + ".tmp"
    save_file(trainable_state(model), temporary)
    os.replace(temporary, path)


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
    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".checkpoint-", dir=parent)
    try:
        save_weights(os.path.join(temporary, WEIGHTS), model)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "python_rng": random.getstate()},
                   os.path.join(temporary, STATE))
        with open(os.path.join(temporary, META), "w") as out:
            json.dump(progress, out)
        old = folder + ".old"
        if os.path.exists(folder):
            os.replace(folder, old)
        os.replace(temporary, folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def load_checkpoint(folder: str, model, optimizer, scheduler) -> dict | None:
    """Restores a checkpoint written by save_checkpoint; returns its progress, or None if there
    is none. The training state is read with weights_only=True: no arbitrary unpickling."""
    if not os.path.exists(os.path.join(folder, META)):
        return None
    load_weights(os.path.join(folder, WEIGHTS), model)
    state = torch.load(os.path.join(folder, STATE), weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    random.setstate(_as_tuple(state["python_rng"]))
    with open(os.path.join(folder, META)) as handle:
        return json.load(handle)


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value
