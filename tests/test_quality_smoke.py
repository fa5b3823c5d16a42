"""The quality benchmark's smoke version on the real Amazon files (skipped without ../shared/data):
100 Beauty users, one epoch, through the same script and pinned config as the full benchmark."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data")


@pytest.mark.skipif(not os.path.isdir(os.path.join(DATA, "amazon-beauty-2014-5core")), reason="no ../shared/data")
def test_quality_benchmark_smoke_on_beauty(tmp_path):
    script = os.path.join(ROOT, "benchmarks", "quality", "run_quality.py")
    result = subprocess.run([sys.executable, script, "--dataset", "beauty", "--smoke", "--seeds", "0",
                             "--variants", "full", "no_gct", "--data-root", DATA, "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "beauty" / "results.json", encoding="utf-8") as handle:
        results = json.load(handle)
    rows = results["rows"]
    assert {"popularity (same benchmark)", "SASRec (same benchmark)", "ablation: no stage 2", "ablation: no GCT"} <= set(rows)
    for metrics in rows.values():
        assert 0.0 <= metrics[0]["recall@10"] <= 1.0
    full = results["runs"][0]["full"]["record"]
    assert full["seed"] == 0 and len(full["data_fingerprint"]) == 16
    assert full["config"]["data"]["max_users"] == 100 and "torch" in full["versions"]
    no_gct = results["runs"][0]["no_gct"]["record"]
    assert no_gct["steps"]["embed"]["reused"] and not no_gct["steps"]["stage1"]["reused"]
    assert "EAGER-LLM (published, LLaMA-7B scale)" in (tmp_path / "beauty" / "results.md").read_text()
