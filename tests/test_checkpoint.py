"""Checkpoints survive a kill at any point of the swap: whatever a kill leaves on disk, the
next load restores the newest whole checkpoint and the next save succeeds."""

import json
import os

import pytest
import torch

from eager_llm.train.checkpoint import load_checkpoint, remove_checkpoint, save_checkpoint


def _training_objects(seed):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    return model, optimizer, scheduler


def _after_one_step(seed):
    model, optimizer, scheduler = _training_objects(seed)
    model(torch.ones(2, 4)).square().sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def _save(folder, step):
    model, optimizer, scheduler = _after_one_step(seed=step)
    save_checkpoint(str(folder), model, optimizer, scheduler, {"global_step": step})
    return model.weight.detach().clone()


def _load(folder):
    model, optimizer, scheduler = _training_objects(seed=99)
    progress = load_checkpoint(str(folder), model, optimizer, scheduler)
    return progress, model.weight.detach().clone()


def test_round_trip_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    model, optimizer, scheduler = _after_one_step(seed=3)
    save_checkpoint(str(tmp_path / "checkpoint") + "/", model, optimizer, scheduler, {"global_step": 1})
    expected_draw = torch.rand(3)
    restored = _training_objects(seed=99)
    assert load_checkpoint(str(tmp_path / "checkpoint"), *restored) == {"global_step": 1}
    assert torch.equal(torch.rand(3), expected_draw)
    restored_model, restored_optimizer, restored_scheduler = restored
    assert torch.equal(restored_model.weight, model.weight)
    assert restored_scheduler.get_last_lr() == scheduler.get_last_lr() == [0.005]
    moments = optimizer.state[model.weight]["exp_avg"]
    assert moments.abs().sum() > 0
    assert torch.equal(restored_optimizer.state[restored_model.weight]["exp_avg"], moments)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]


def test_remove_checkpoint_removes_it_and_its_fallback(tmp_path):
    folder = tmp_path / "checkpoint"
    _save(folder, step=2)
    os.replace(folder, str(folder) + ".old")
    _save(tmp_path / "elsewhere", step=3)
    os.replace(tmp_path / "elsewhere", folder)
    remove_checkpoint(str(folder))
    assert os.listdir(tmp_path) == [] and _load(folder)[0] is None


def test_no_checkpoint_loads_as_none(tmp_path):
    assert _load(tmp_path / "checkpoint")[0] is None


def test_kill_between_the_renames_keeps_the_previous_checkpoint(tmp_path):
    folder = tmp_path / "checkpoint"
    weight = _save(folder, step=2)
    os.replace(folder, str(folder) + ".old")  # the first rename happened, the second did not
    progress, loaded = _load(folder)
    assert progress == {"global_step": 2} and torch.equal(loaded, weight)
    newer = _save(folder, step=4)
    assert _load(folder)[0] == {"global_step": 4} and torch.equal(_load(folder)[1], newer)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]


@pytest.mark.parametrize("leftover", ["stale_fallback", "partial_write", "partial_folder"])
def test_next_save_clears_what_a_kill_left(tmp_path, leftover):
    folder = tmp_path / "checkpoint"
    _save(folder, step=2)
    if leftover == "stale_fallback":  # killed after the swap, before the fallback was removed
        _save(tmp_path / "elsewhere", step=1)
        os.replace(tmp_path / "elsewhere", str(folder) + ".old")
    elif leftover == "partial_write":  # killed while writing the temporary folder
        os.makedirs(tmp_path / ".checkpoint-partial-abc")
        (tmp_path / ".checkpoint-partial-abc" / "trainable.safetensors").write_bytes(b"cut sh")
    else:  # killed while removing a folder whose progress.json was already gone
        os.replace(folder, str(folder) + ".old")
        os.makedirs(folder)
    if leftover == "partial_folder":
        assert _load(folder)[0] == {"global_step": 2}
    newer = _save(folder, step=5)
    progress, loaded = _load(folder)
    assert progress == {"global_step": 5} and torch.equal(loaded, newer)
    assert sorted(os.listdir(tmp_path)) == ["checkpoint"]
    assert json.loads((folder / "progress.json").read_text()) == {"global_step": 5}
