"""The run report, built from a hand-written fake run folder (no pipeline run needed)."""

import json
import os
import re

import pytest

from eager_llm.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

DATA = {
    "name": "toy-beauty",
    "fingerprint": "abc123",
    "statistics": {
        "users": 1234,
        "items": 567,
        "interactions": 8910,
        "mean_length": 7.22,
        "min_length": 5,
        "max_length": 40,
        "density": 0.0127,
    },
    "report": {
        "skipped_short_users": 11,
        "removed_repeats": 22,
        "items_without_text": 3,
        "ignored_item_records": 4,
        "notes": ["4 item records had no interactions"],
    },
    "split": {"train": 1234, "valid": 1234, "test": 1234},
}

STATISTICS = {
    "num_items": 567,
    "num_tokens": 96,
    "positions": [
        {"position": "a", "source": "semantic", "level": 0, "codebook_size": 16, "codes_used": 16, "usage": 1.0},
        {"position": "b", "source": "semantic", "level": 1, "codebook_size": 16, "codes_used": 12, "usage": 0.75},
        {"position": "c", "source": "behavior", "level": 0, "codebook_size": 16, "codes_used": 8, "usage": 0.5},
    ],
    "quantization_error": {"semantic": 0.0123, "behavior": 0.0456},
    "collisions": {
        "policy": "append_level",
        "before": {"items": 30, "groups": 14},
        "after": {"items": 0, "groups": 0},
        "reassigned": 16,
        "extra_level": True,
    },
}

CODE_COUNTS = {"a": [40, 30, 20, 10], "b": [5, 50, 25, 0], "c": [1, 2, 3, 4]}

# Deliberately not in alphabetical order: the report must keep the JSON order.
QUALITY_ROWS = {
    "popularity": {"recall@1": 0.01, "ndcg@1": 0.01, "recall@5": 0.03, "ndcg@5": 0.02,
                   "recall@10": 0.05, "ndcg@10": 0.025, "recall@20": 0.08, "ndcg@20": 0.03},
    "SASRec": {"recall@1": 0.02, "ndcg@1": 0.02, "recall@5": 0.06, "ndcg@5": 0.04,
               "recall@10": 0.09, "ndcg@10": 0.05, "recall@20": 0.12, "ndcg@20": 0.06},
    "EAGER-LLM stage 1": {"recall@1": 0.03, "ndcg@1": 0.03, "recall@5": 0.07, "ndcg@5": 0.05,
                          "recall@10": 0.10123, "ndcg@10": 0.06, "recall@20": 0.14, "ndcg@20": 0.07},
    "EAGER-LLM stage 1 + 2": {"recall@1": 0.04, "ndcg@1": 0.04, "recall@5": 0.08, "ndcg@5": 0.06,
                              "recall@10": 0.123456, "ndcg@10": 0.0712, "recall@20": 0.15, "ndcg@20": 0.08,
                              "validity": 1.0},
}

DECODE = {
    "rows": [
        {"method": "eager-llm constrained_beam_search (items)", "batch_size": 8, "users_per_s": 123.0, "seconds": 2.5},
        {"method": "HF generate + prefix_allowed_tokens_fn", "batch_size": 8, "users_per_s": 41.0, "seconds": 7.5},
        {"method": "eager-llm constrained_beam_search (items)", "batch_size": 32, "users_per_s": 300.0, "seconds": 1.0},
        {"method": "HF generate + prefix_allowed_tokens_fn", "batch_size": 32, "users_per_s": 80.0, "seconds": 3.75},
        {"method": "eager-llm constrained_beam_search (items)", "batch_size": 64, "users_per_s": 500.0, "seconds": 0.6},
    ],
    "num_beams": 20,
    "num_items": 567,
    "model": "tiny-llama",
}

RUN = {
    "seed": 42,
    "data_fingerprint": "abc123",
    "versions": {"eager_llm": "0.1.0", "torch": "2.3.0", "transformers": "4.41.0", "python": "3.11.2"},
    "command": "eager-llm run --config toy.toml",
    "steps": {"prepare": {"seconds": 1.5, "reused": False}, "index": {"seconds": 3.5, "reused": True}},
    "config_file": "toy.toml",
}


def _history(terms, steps=40):
    return [
        {"step": step, "epoch": step // 20, "lr": 0.001, "tokens": 1000.0,
         **{term: 3.0 / step + offset for offset, term in enumerate(terms)}}
        for step in range(1, steps + 1)
    ]


def _write(run_dir, relative, value):
    path = os.path.join(run_dir, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(value, handle)


@pytest.fixture
def full_run(tmp_path):
    run_dir = str(tmp_path / "run")
    _write(run_dir, "prepare/data.json", DATA)
    _write(run_dir, "index/statistics.json", STATISTICS)
    _write(run_dir, "index/code_counts.json", CODE_COUNTS)
    _write(run_dir, "stage1/history.json", _history(["loss", "lm", "semantic", "behavior"]))
    _write(run_dir, "stage1/summary.json", {
        "seconds": 12.5, "steps": 40, "tokens_per_s": 3200.0, "epoch_metrics": [0.0812, 0.0955],
        "best_epoch": 1, "trainable_parameters": 1000, "total_parameters": 5000})
    _write(run_dir, "stage2/history.json", _history(["loss", "lm"]))
    _write(run_dir, "evaluate/metrics.json", {"rows": QUALITY_ROWS, "users": 1234, "split": "test"})
    _write(run_dir, "bench/decode.json", DECODE)
    _write(run_dir, "run.json", RUN)
    return run_dir


def test_full_report(full_run):
    path = write_report(full_run)
    folder = os.path.join(full_run, "report")
    assert path == os.path.join(folder, "report.md")
    text = open(path, encoding="utf-8").read()

    assert text.startswith("# EAGER-LLM run report")
    headings = ["## Data", "## Item index", "## Training", "## Recommendation quality", "## Decoding speed"]
    offsets = [text.index(heading) for heading in headings]
    assert offsets == sorted(offsets)
    assert "not run yet" not in text

    # Header and steps.
    assert "eager-llm run --config toy.toml" in text and "abc123" in text and "torch 2.3.0" in text
    assert "| prepare | 1.5 | no |" in text
    assert "| index | 3.5 | yes |" in text
    # Data and index.
    assert "| Users | 1,234 |" in text and "Ignored item records" in text
    assert "4 item records had no interactions" in text
    assert "| b | semantic | 1 | 12 | 16 | 75.0 % |" in text
    assert "an extra level was added" in text
    # Quality: values with 4 decimals, k columns sorted numerically.
    assert f"{0.123456:.4f}" in text and f"{0.10123:.4f}" in text
    header = next(line for line in text.splitlines() if line.startswith("| Method | Recall@1"))
    assert header.index("Recall@5") < header.index("Recall@10") < header.index("Recall@20")
    # Training: stage 1 final loss over the last 10% (4 of 40 steps), validation Recall@10 values.
    stage1_tail = [3.0 / step for step in range(37, 41)]
    assert f"{sum(stage1_tail) / len(stage1_tail):.4f}" in text
    assert "0.0812, 0.0955" in text and "1,000 / 5,000" in text
    # Decoding speed: "vs HF" against the HF row of the same batch size; none for batch 64.
    assert f"{123.0 / 41.0:.2f}x" in text and f"{300.0 / 80.0:.2f}x" in text
    batch64 = next(line for line in text.splitlines() if "| 64 |" in line)
    assert batch64.rstrip().endswith("| - |")

    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert set(images) == {"code_usage.png", "code_histogram.png", "training_stage1.png",
                           "training_stage2.png", "quality.png"}
    for image in images:
        with open(os.path.join(folder, image), "rb") as handle:
            assert handle.read(8) == PNG_MAGIC

    tables = json.load(open(os.path.join(folder, "tables.json"), encoding="utf-8"))
    quality = tables["quality"]
    assert [row[0] for row in quality["rows"]] == list(QUALITY_ROWS)
    assert quality["rows"][-1][quality["columns"].index("Recall@10")] == 0.123456
    assert quality["rows"][0][quality["columns"].index("Validity")] is None
    for table in tables.values():
        assert all(len(row) == len(table["columns"]) for row in table["rows"])
    assert {"steps", "data", "item_index", "training", "quality", "decoding_speed"} <= set(tables)

    assert sorted(os.listdir(folder)) == sorted(images + ["report.md", "tables.json"])


def test_partial_run_says_what_is_missing(tmp_path):
    run_dir = str(tmp_path / "run")
    _write(run_dir, "prepare/data.json", DATA)
    text = open(write_report(run_dir), encoding="utf-8").read()

    assert "| Users | 1,234 |" in text
    for command in ["eager-llm index", "eager-llm train", "eager-llm evaluate",
                    "eager-llm bench"]:
        assert f"not run yet (`{command}`)" in text
    assert "![" not in text
    folder = os.path.join(run_dir, "report")
    assert sorted(os.listdir(folder)) == ["report.md", "tables.json"]
    assert list(json.load(open(os.path.join(folder, "tables.json"), encoding="utf-8"))) == ["data"]


def test_rewriting_a_report_replaces_it(full_run):
    """A second report (after more steps ran) overwrites the first and leaves no temporary files."""
    write_report(full_run)
    os.remove(os.path.join(full_run, "bench", "decode.json"))
    text = open(write_report(full_run), encoding="utf-8").read()
    assert "not run yet (`eager-llm bench`)" in text
    assert not [name for name in os.listdir(os.path.join(full_run, "report")) if name.endswith(".tmp")]
