"""The eager-llm command line run as a user runs it (subprocess), on a tiny configuration."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

TINY = ["data.max_users=60", "embed.behavior.max_epochs=1", "embed.behavior.dim=16", "model.hidden_size=32",
        "model.intermediate_size=64", "model.layers=1", "model.heads=2", "stage1.epochs=1", "stage1.batch_size=16",
        "stage2.batch_size=16", "evaluate.validation_users=8", "bench.users=8"]
TINY_YAML = """# a config file as a user writes one
index:
  semantic: {quantizer: balanced_tree_sub, levels: 2, codebook_size: 8}
  behavior: {quantizer: rq_kmeans, levels: 2, codebook_size: 8}
stage1:
  lr: 3e-3
"""


def run_cli(*args, check_ok=True):
    result = subprocess.run([sys.executable, "-m", "eager_llm.cli", *args], capture_output=True, text=True,
                            timeout=600)
    if check_ok:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def with_tiny(*args):
    out = list(args)
    for setting in TINY:
        out += ["--set", setting]
    return out


def read(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run made step by step through the subcommands, with a YAML config and overrides."""
    folder = tmp_path_factory.mktemp("cli") / "run"
    config = folder.parent / "tiny.yaml"
    config.write_text(TINY_YAML)
    run_cli(*with_tiny("prepare", "--run", str(folder), "--config", str(config), "--quiet"))
    for command in ("embed", "index", "train", "evaluate", "bench"):
        run_cli(command, "--run", str(folder), "--quiet")
    return folder


def test_every_step_writes_its_outputs_and_the_run_record(run_dir):
    config = read(run_dir / "config.json")
    assert config["stage1"]["lr"] == pytest.approx(3e-3)  # from the YAML file
    assert config["index"]["behavior"]["quantizer"] == "rq_kmeans"
    assert config["data"]["max_users"] == 60  # from --set
    record = read(run_dir / "run.json")
    assert record["seed"] == 0 and len(record["data_fingerprint"]) == 16
    assert {"torch", "transformers", "eager_llm", "python"} <= set(record["versions"])
    assert set(record["steps"]) == {"prepare", "embed", "index", "stage1", "stage2", "evaluate", "bench"}
    data = read(run_dir / "prepare" / "data.json")
    assert data["statistics"]["users"] == 60 and data["split"]["test"] == 60
    statistics = read(run_dir / "index" / "statistics.json")
    assert statistics["collisions"]["after"]["items"] == 0
    rows = read(run_dir / "evaluate" / "metrics.json")["rows"]
    assert list(rows) == ["popularity", "SASRec", "EAGER-LLM stage 1", "EAGER-LLM stage 1 + 2"]
    assert rows["EAGER-LLM stage 1 + 2"]["validity"] == 1.0
    predictions = (run_dir / "evaluate" / "stage2" / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 60
    decode = read(run_dir / "bench" / "decode.json")
    assert {row["method"].split()[0] for row in decode["rows"]} == {"eager-llm", "HF"}
    report = (run_dir / "report" / "report.md").read_text()
    for heading in ("## Data", "## Item index", "## Training", "## Recommendation quality", "## Decoding speed"):
        assert heading in report
    for plot in ("code_usage.png", "training_stage1.png", "training_stage2.png", "quality.png"):
        assert (run_dir / "report" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "running" in (run_dir / "log.txt").read_text()


def test_unchanged_steps_are_reused_and_changed_inputs_recompute_downstream(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = read(copy / "embed" / "step.json")
    result = run_cli("embed", "--run", str(copy))
    assert "embed: reused" in result.stderr
    assert read(copy / "embed" / "step.json") == before
    run_cli("index", "--run", str(copy), "--set", "index.semantic.codebook_size=4", "--quiet")
    assert read(copy / "config.json")["index"]["semantic"]["codebook_size"] == 4
    assert read(copy / "embed" / "step.json") == before  # upstream kept
    assert read(copy / "index" / "statistics.json")["positions"][0]["codebook_size"] == 4
    stale = run_cli("evaluate", "--run", str(copy), check_ok=False)
    assert_one_line_error(stale, "stage1", "other inputs", "eager-llm train")


def write_demo_folder(folder):
    """The embedded demo data as a dataset folder (sequences.txt and items.jsonl)."""
    from eager_llm.data import demo_dataset

    dataset = demo_dataset()
    folder.mkdir()
    (folder / "sequences.txt").write_text(
        "".join(f"{user} {' '.join(map(str, items))}\n" for user, items in enumerate(dataset.sequences, 1)))
    (folder / "items.jsonl").write_text(
        "".join(json.dumps({"item_id": item, "title": text.title}) + "\n"
                for item, text in enumerate(dataset.item_text, 1)))
    return folder


def test_moving_the_data_folder_keeps_what_was_computed_from_it(tmp_path):
    data, moved, run = tmp_path / "data", tmp_path / "moved", tmp_path / "run"
    write_demo_folder(data)
    run_cli(*with_tiny("prepare", "--run", str(run), "--set", f"data.source={data}", "--quiet"))
    run_cli("embed", "--run", str(run), "--quiet")
    before = read(run / "embed" / "step.json")
    os.rename(data, moved)
    run_cli("prepare", "--run", str(run), "--set", f"data.source={moved}", "--quiet")
    assert "embed: reused" in run_cli("embed", "--run", str(run)).stderr
    assert read(run / "embed" / "step.json") == before
    items = moved / "items.jsonl"
    items.write_text(items.read_text().replace('"title": "', '"title": "new '))  # new content, new fingerprint
    run_cli("prepare", "--run", str(run), "--force", "--quiet")
    assert "embed: running" in run_cli("embed", "--run", str(run)).stderr


def test_report_rewrites_the_report(run_dir):
    report = run_dir / "report" / "report.md"
    report.unlink()
    result = run_cli("report", "--run", str(run_dir))
    assert result.stdout.strip() == str(report)
    assert "## Recommendation quality" in report.read_text()


def test_recommend_prints_titles_and_scores(run_dir):
    titles = read(run_dir / "prepare" / "titles.json")
    result = run_cli("recommend", "--run", str(run_dir), "--history", "3,1,2", "-k", "5")
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["rank", "item", "log-prob"]
    assert len(lines) == 6
    scores = []
    for rank, line in enumerate(lines[1:], start=1):
        fields = line.split(maxsplit=3)
        assert int(fields[0]) == rank
        assert fields[3] == titles[int(fields[1]) - 1]
        scores.append(float(fields[2]))
    assert scores == sorted(scores, reverse=True)


def test_recommend_with_unknown_items_is_one_clear_error(run_dir):
    assert_one_line_error(run_cli("recommend", "--run", str(run_dir), "--history", "3,99999", check_ok=False),
                          "unknown item ids [99999]")
    assert_one_line_error(run_cli("recommend", "--run", str(run_dir), "--history", "3,x", check_ok=False),
                          "--history")


def test_demo_runs_the_whole_pipeline(tmp_path):
    folder = tmp_path / "demo"
    result = run_cli(*with_tiny("demo", "--run", str(folder), "--quiet"))
    assert "EAGER-LLM stage 1 + 2" in result.stdout and "report:" in result.stdout
    assert (folder / "report" / "report.md").exists()
    assert read(folder / "run.json")["command"].startswith("eager-llm demo")


def test_bench_kernels_tours_each_op():
    result = run_cli("bench", "--kernels")
    for line in ["rq_encode:", "recovered the planted codes of 100.00%", "summary_gather + gathered_infonce:",
                 "every returned id is a real item: True"]:
        assert line in result.stdout


@pytest.mark.parametrize("args, fragments", [
    (["prepare", "--run", "{tmp}/r", "--config", "{tmp}/missing.yaml"], ["missing.yaml", "no such config file"]),
    (["prepare", "--run", "{tmp}/r", "--set", "stage1.learning_rate=1"], ["unknown config key 'stage1.learning_rate'"]),
    (["prepare", "--run", "{tmp}/r", "--set", "stage1.epochs=two"], ["stage1.epochs", "expected int"]),
    (["prepare", "--run", "{tmp}/r", "--set", "data.source={tmp}/nowhere"], ["nowhere", "no such dataset folder"]),
    (["prepare", "--run", "{tmp}/r", "--preset", "huge"], ["--preset", "invalid choice: 'huge'"]),
    (["embed", "--run", "{tmp}/fresh"], ["'prepare' has not run yet"]),
    (["recommend", "--run", "{tmp}/nothing", "--history", "1"], ["not a run folder"]),
    (["demo", "--model", "gpt5"], ["--model", "invalid choice: 'gpt5'"]),
])
def test_user_errors_are_one_line_without_traceback(tmp_path, args, fragments):
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    assert_one_line_error(run_cli(*args, check_ok=False), *[f.replace("{tmp}", str(tmp_path)) for f in fragments])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown when no GPU exists")
def test_gpu_asked_for_without_one_is_a_clear_error(tmp_path):
    result = run_cli("prepare", "--run", str(tmp_path / "r"), "--set", "embed.behavior.device=cuda", check_ok=False)
    assert_one_line_error(result, "cuda", "no GPU")


def test_invalid_yaml_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage1: [unclosed\n")
    assert_one_line_error(run_cli("prepare", "--run", str(tmp_path / "r"), "--config", str(bad), check_ok=False),
                          "bad.yaml", "not valid YAML")


def test_version():
    assert run_cli("--version").stdout.startswith("eager-llm 0.")


def test_unknown_subcommand_is_one_clear_error():
    result = run_cli("frobnicate", check_ok=False)
    assert result.returncode != 0
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path):
    result = run_cli("prepare", "--run", str(tmp_path / "r"), "--set", "nope=1", "--debug", check_ok=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_out_of_disk_while_saving_is_one_line_and_leaves_no_step(tmp_path, monkeypatch, capsys):
    from eager_llm import cli
    from eager_llm.pipeline import steps

    def full_disk(run, force=False):
        def compute(folder):
            raise OSError(errno.ENOSPC, "No space left on device", os.path.join(folder, "data.json"))
        run.step("prepare", "key", compute)

    monkeypatch.setattr(steps, "prepare", full_disk)
    assert cli.main(["prepare", "--run", str(tmp_path / "r"), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert "out of disk space while writing" in error and "data.json" in error
    assert not (tmp_path / "r" / "prepare" / "step.json").exists()


def test_a_resumed_step_counts_the_time_of_the_attempts_it_resumed(tmp_path):
    from eager_llm.pipeline import RunDir, resolve_values

    run = RunDir.create(str(tmp_path / "r"), resolve_values({}), "test", None)
    run.step("prepare", "key", lambda folder: {"earlier_seconds": 100.0})
    seconds = run.step_record("prepare")["seconds"]
    assert 100.0 <= seconds < 110.0
    assert run.record()["steps"]["prepare"]["seconds"] == seconds
