"""The stage trainer: learning, freezing in stage 2, exact resume after a kill, and 2 gloo
processes against one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from eager_llm.train import LoraSettings, StageConfig, stage2, train_stage
from train_fixture import problem

WORKER = os.path.join(os.path.dirname(__file__), "train_worker.py")


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_loss_decreases(tmp_path):
    eager, tokenizer, samples = problem()
    config = StageConfig(epochs=3, lr=3e-3, batch_size=16, checkpoint_every=100, max_length=128, mixed_precision="no")
    history = train_stage(eager, tokenizer, samples, config, str(tmp_path), progress=False).history
    first, last = history[:3], history[-3:]
    assert sum(h["loss"] for h in last) < 0.8 * sum(h["loss"] for h in first)
    assert all("gct_semantic" in h and "gct_behavior" in h and "lm" in h for h in history)


def test_stages_of_different_precision_train_in_one_process(tmp_path):
    # accelerate allows one precision per process unless told otherwise; the pipeline trains
    # stage 1 and stage 2 in one process, and on a GPU "auto" means bf16.
    eager, tokenizer, samples = problem(num_users=8)
    for precision in ["no", "bf16"]:
        config = StageConfig(epochs=1, batch_size=16, checkpoint_every=100, max_length=128, mixed_precision=precision)
        history = train_stage(eager, tokenizer, samples, config, str(tmp_path / precision), progress=False).history
        assert history and all(torch.isfinite(torch.tensor(h["loss"])) for h in history)


def _poison_losses(eager, calls_to_poison):
    """Makes the model's loss NaN on the given (1-based) forward calls."""
    forward, calls = eager.forward, [0]

    def poisoned(batch, **kwargs):
        terms = forward(batch, **kwargs)
        calls[0] += 1
        return {**terms, "loss": terms["loss"] * float("nan")} if calls[0] in calls_to_poison else terms

    eager.forward = poisoned


def test_a_non_finite_step_is_skipped_and_recorded(tmp_path):
    eager, tokenizer, samples = problem(num_users=8)
    _poison_losses(eager, {2})
    config = StageConfig(epochs=1, batch_size=8, checkpoint_every=100, max_length=128, mixed_precision="no")
    with pytest.warns(RuntimeWarning, match="step 2: non-finite loss or gradient, update skipped"):
        history = train_stage(eager, tokenizer, samples, config, str(tmp_path), progress=False).history
    assert [bool(h.get("skipped_update")) for h in history[:3]] == [False, True, False]
    assert all(torch.isfinite(p).all() for p in eager.parameters())
    assert torch.isfinite(torch.tensor(history[-1]["loss"]))


def test_a_diverged_run_stops_with_a_clear_error(tmp_path):
    eager, tokenizer, samples = problem(num_users=8)
    _poison_losses(eager, set(range(3, 1000)))
    config = StageConfig(epochs=1, batch_size=1, checkpoint_every=1000, max_length=128, mixed_precision="no")
    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError, match="last 10 updates .*to step 12"):
        train_stage(eager, tokenizer, samples, config, str(tmp_path), progress=False)


def test_stage2_changes_only_the_adapter_embeddings_and_head(tmp_path):
    eager, tokenizer, samples = problem()
    config = stage2(lr=1e-2, batch_size=16, max_length=128, checkpoint_every=100, mixed_precision="no",
                    lora=LoraSettings(r=4, alpha=8, dropout=0.0))
    from eager_llm.train import apply_lora

    apply_lora(eager, config.lora)
    before = {name: p.detach().clone() for name, p in eager.named_parameters()}
    history = train_stage(eager, tokenizer, samples, config, str(tmp_path), progress=False).history
    assert all(set(h) == {"step", "epoch", "lm", "loss", "lr", "tokens"} for h in history)  # LM loss only
    assert all(h["loss"] == h["lm"] for h in history)
    changed = {name for name, p in eager.named_parameters() if not torch.equal(p, before[name])}
    trainable = {name for name, p in eager.named_parameters() if p.requires_grad}
    assert changed and changed <= trainable
    assert any("lora_" in name for name in changed)
    assert all("lora_" in name or "embed_tokens" in name or "lm_head" in name for name in trainable)


def test_lora_on_missing_modules_is_a_clear_error(tmp_path):
    eager, tokenizer, samples = problem()
    config = stage2(lora=LoraSettings(target_modules=["no_such_projection"]), mixed_precision="no")
    with pytest.raises(ValueError, match="target_modules=\\['no_such_projection'\\] do not fit this model"):
        train_stage(eager, tokenizer, samples, config, str(tmp_path), progress=False)


def _run_worker(output, batch_size, epochs=2, **kwargs):
    return subprocess.Popen([sys.executable, WORKER, str(output), str(batch_size), str(epochs)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _saved_progress(checkpoint):
    """The newest whole checkpoint's progress: the kill may land while a newer checkpoint is
    being swapped in, when only the fallback folder is whole."""
    for folder in (checkpoint, checkpoint.with_name(checkpoint.name + ".old")):
        try:
            return json.loads((folder / "progress.json").read_text())
        except FileNotFoundError:
            continue
    return None


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    straight = _run_worker(tmp_path / "straight", 8)
    assert straight.wait(timeout=300) == 0, straight.stderr.read()[-2000:]
    interrupted = _run_worker(tmp_path / "resumed", 8)
    checkpoint = tmp_path / "resumed" / "checkpoint"
    deadline = time.time() + 300
    while time.time() < deadline and interrupted.poll() is None:
        progress = _saved_progress(checkpoint)
        if progress is not None and progress["global_step"] >= 4:
            interrupted.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    interrupted.wait(timeout=60)
    assert interrupted.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "resumed" / "final.safetensors").exists()
    killed_seconds = _saved_progress(checkpoint)["seconds"]
    resumed = _run_worker(tmp_path / "resumed", 8)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-2000:]
    expected = load_file(tmp_path / "straight" / "final.safetensors")
    got = load_file(tmp_path / "resumed" / "final.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    straight_history = json.loads((tmp_path / "straight" / "history.json").read_text())
    resumed_history = json.loads((tmp_path / "resumed" / "history.json").read_text())
    assert [h["loss"] for h in straight_history] == [h["loss"] for h in resumed_history]
    # The training time counts the killed attempt up to its last checkpoint.
    straight_seconds = json.loads((tmp_path / "straight" / "seconds.json").read_text())
    resumed_seconds = json.loads((tmp_path / "resumed" / "seconds.json").read_text())
    assert straight_seconds["earlier_seconds"] == 0.0
    assert 0.0 < killed_seconds == resumed_seconds["earlier_seconds"] < resumed_seconds["seconds"]


def test_two_gloo_processes_follow_the_loss_curve_of_one(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    single = _run_worker(tmp_path / "one", 8, epochs=1)
    assert single.wait(timeout=300) == 0, single.stderr.read()[-2000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    double = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", WORKER, str(tmp_path / "two"), "4", "1"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert double.returncode == 0, double.stderr[-3000:]
    one = json.loads((tmp_path / "one" / "history.json").read_text())
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert len(one) == len(two)
    for a, b in zip(one, two):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5), (a, b)


def test_validation_each_epoch_keeps_and_restores_the_best(tmp_path):
    from eager_llm.data import demo_dataset, leave_one_out
    from eager_llm.train import recall_validation
    from eager_llm.train.checkpoint import trainable_state
    from safetensors.torch import load_file as load

    eager, tokenizer, samples, index, first = problem(with_index=True)
    valid = leave_one_out(demo_dataset(num_users=40, num_items=60)).valid[:12]
    metric = recall_validation(valid, index, tokenizer, first, k=5, num_beams=5, batch_size=6)
    config = StageConfig(epochs=3, lr=3e-3, batch_size=16, max_length=128, checkpoint_every=100, mixed_precision="no")
    result = train_stage(eager, tokenizer, samples, config, str(tmp_path), evaluate=metric, progress=False)
    assert len(result.epoch_metrics) == 3 and all(0.0 <= m <= 1.0 for m in result.epoch_metrics)
    assert result.epoch_metrics[result.best_epoch] == max(result.epoch_metrics)
    best = load(tmp_path / "best" / "trainable.safetensors")
    for name, value in trainable_state(eager).items():
        assert torch.equal(value, best[name]), name
    assert metric(eager) == max(result.epoch_metrics)


def test_length_grouped_order_is_a_seeded_permutation_of_low_padding_batches():
    from eager_llm.train.trainer import _epoch_order

    lengths = torch.randint(5, 200, (1_003,), generator=torch.Generator().manual_seed(3))
    order = _epoch_order(len(lengths), seed=1, epoch=0, lengths=lengths, global_batch=10)
    assert sorted(order.tolist()) == list(range(1_003))  # every sample exactly once
    assert torch.equal(order, _epoch_order(len(lengths), seed=1, epoch=0, lengths=lengths, global_batch=10))
    assert not torch.equal(order, _epoch_order(len(lengths), seed=1, epoch=1, lengths=lengths, global_batch=10))

    def padded_per_real(order):
        batches = [lengths[order[i:i + 10]] for i in range(0, len(order), 10)]
        return sum(int(b.max()) * len(b) for b in batches) / int(lengths.sum())

    plain = _epoch_order(len(lengths), seed=1, epoch=0)
    assert padded_per_real(order) < 1.1 < 1.5 < padded_per_real(plain)
    # The batches are shuffled, not sorted longest-first across the epoch.
    maxima = torch.stack([lengths[order[i:i + 10]].max() for i in range(0, 1_000, 10)])
    assert not torch.equal(maxima, maxima.sort(descending=True).values)
