"""The quality benchmark's smoke version on the real Amazon files (skipped without ../shared/data):
100 Beauty users, one epoch, through the same script and pinned config as the full benchmark;
and checks, needing no data, on the pinned configs and the committed results."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from eager_llm.index import DualSourceIndex
from eager_llm.pipeline import resolve_values

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")


def run_quality(*args: str) -> subprocess.CompletedProcess:
    script = os.path.join(ROOT, "benchmarks", "quality", "run_quality.py")
    return subprocess.run([sys.executable, script, "--dataset", "beauty", "--smoke", "--data-root", DATA, *args],
                          capture_output=True, text=True, timeout=900)


def quality_script():
    sys.path.insert(0, os.path.join(ROOT, "benchmarks", "quality"))
    import run_quality

    return run_quality


def test_every_variant_index_holds_the_sports_items():
    """Each pinned index config fits Sports' 18,357 items (the larger dataset), caught here and
    not an hour into a run; a slot tree of branch 32 and 2 levels, for one, holds only 1,024."""
    script = quality_script()
    built = set()
    for variant in ("full", *script.ABLATIONS):
        config = resolve_values(script.variant_values("sports", variant, 0, DATA, smoke=False)).seeded().index
        if repr(config) in built:
            continue
        built.add(repr(config))
        generator = torch.Generator().manual_seed(0)
        embeddings = {name: None if getattr(config, name) is None else torch.randn(18_357, 8, generator=generator)
                      for name in ("semantic", "behavior")}
        index = DualSourceIndex.build(embeddings["semantic"], embeddings["behavior"], config)
        assert torch.unique(index.codes, dim=0).shape[0] == 18_357, variant  # every item its own index


def read_results(out) -> dict:
    with open(out / "beauty" / "results.json", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "amazon-beauty-2014-5core")), reason="no ../shared/data")
def test_quality_benchmark_smoke_on_beauty(tmp_path, capsys):
    result = run_quality("--seeds", "0", "--variants", "full", "no_gct", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_results(tmp_path)
    rows = results["rows"]
    assert {"popularity (same benchmark)", "SASRec (same benchmark)", "ablation: no stage 2", "ablation: no GCT"} <= set(rows)
    for row in rows.values():
        assert row["seeds"] == [0] and 0.0 <= row["metrics"][0]["recall@10"] <= 1.0
    full = results["runs"]["0"]["full"]["record"]
    assert full["seed"] == 0 and len(full["data_fingerprint"]) == 16
    assert full["config"]["data"]["max_users"] == 100 and "torch" in full["versions"]
    no_gct = results["runs"]["0"]["no_gct"]["record"]
    assert no_gct["steps"]["embed"]["reused"] and not no_gct["steps"]["stage1"]["reused"]
    assert "EAGER-LLM (published, LLaMA-7B scale)" in (tmp_path / "beauty" / "results.md").read_text()

    # --collect tabulates only finished runs that are current for their variant's settings: an
    # ablation folder copied from the full run but not rerun yet holds the full run's results.
    shutil.copytree(tmp_path / "beauty" / "seed0" / "full", tmp_path / "beauty" / "seed0" / "behavior_first")
    collected = run_quality("--collect", "--seeds", "0", "1", "--out", str(tmp_path))
    assert collected.returncode == 0, collected.stderr[-3000:]
    again = read_results(tmp_path)
    assert again["rows"] == rows and set(again["runs"]) == {"0"} and set(again["runs"]["0"]) == {"full", "no_gct"}
    nothing = run_quality("--collect", "--seeds", "1", "--out", str(tmp_path))
    assert nothing.returncode != 0 and "no finished run is current" in nothing.stderr
    assert read_results(tmp_path) == again

    check_merge(tmp_path, again, capsys)


def check_merge(tmp_path, results: dict, capsys) -> None:
    """--merge rebuilds the table from a results file alone (the run folders gone) and leaves out,
    saying why, a stored run whose config or data is not the pinned one's."""
    script = quality_script()
    stale = json.loads(json.dumps(results))
    stale["runs"]["0"]["no_gct"]["record"]["config"]["stage1"]["lr"] *= 2
    stale["runs"]["0"]["full"]["record"]["data_fingerprint"] = "0" * 16
    files = {"current": results, "stale": stale,
             "old": {**results, "runs": {"0": {"full": {"record": results["runs"]["0"]["full"]["record"]}}}}}
    for name, content in files.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(content))

    def merge(name: str, out: str) -> dict:
        script.main(["--dataset", "beauty", "--smoke", "--data-root", DATA, "--seeds", "0", "--variants", "full",
                     "no_gct", "--collect", "--out", str(tmp_path / out), "--merge", str(tmp_path / f"{name}.json")])
        return read_results(tmp_path / out)

    merged = merge("current", "empty")
    assert merged["rows"] == results["rows"] and merged["runs"] == results["runs"]
    capsys.readouterr()
    with pytest.raises(SystemExit, match="no finished run is current"):
        merge("stale", "empty-too")
    said = capsys.readouterr().err
    assert "seed 0 no_gct left out: its config differs from the pinned one in stage1.lr" in said
    assert "seed 0 full left out: its data fingerprint 0000000000000000 is not the data's" in said
    with pytest.raises(SystemExit, match="lack their metrics rows"):
        merge("old", "empty-too")
    # The run folders of --out take precedence over a stale file's runs of the same seed.
    assert merge("stale", ".")["rows"] == results["rows"]


def table_rows(path: str) -> list[list[str]]:
    """The cells of every data row of every Markdown table in a file, header and rule left out."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle if line.lstrip().startswith("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [row for row in rows if row[1:2] != ["seeds"] and not set(row[0]) <= set("-")]


@pytest.mark.parametrize("dataset", ["beauty", "sports"])
def test_benchmarks_md_quotes_every_committed_quality_row(dataset):
    """BENCHMARKS.md copies the committed results tables by hand (with longer labels), so a run
    merged into results/ but not into BENCHMARKS.md, or a row mistyped, shows up here."""
    quoted = {tuple(row[1:]) for row in table_rows(os.path.join(ROOT, "BENCHMARKS.md"))}
    results = table_rows(os.path.join(ROOT, "benchmarks", "quality", "results", f"{dataset}.md"))
    assert len(results) >= 5
    missing = [" | ".join(row) for row in results if tuple(row[1:]) not in quoted]
    assert not missing, f"rows of results/{dataset}.md not in BENCHMARKS.md:\n" + "\n".join(missing)
