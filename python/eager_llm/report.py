"""A readable report of a pipeline run: Markdown, PNG plots and every table as JSON, built only
from the JSON files the pipeline steps leave in the run folder."""

from __future__ import annotations

import json
import math
import os
import re

from .io import atomic_path, atomic_write_text

# The command that produces each step's files, quoted when a section is missing. A run can stop
# at any step, so every section must cope with its inputs being absent.
STEP_COMMANDS = {
    "prepare": "eager-llm prepare",
    "embed": "eager-llm embed",
    "index": "eager-llm index",
    "stage1": "eager-llm train",
    "stage2": "eager-llm train",
    "evaluate": "eager-llm evaluate",
    "bench": "eager-llm bench",
}

# History keys that are not loss terms.
_NOT_LOSS_KEYS = {"step", "epoch", "lr", "tokens", "skipped_update"}
_METRIC_KEY = re.compile(r"^(recall|ndcg)@(\d+)$", re.IGNORECASE)


def write_report(run_dir: str) -> str:
    """Writes `run_dir/report/report.md`, its PNG plots and `tables.json` from a run's outputs.

    Reads the JSON files of each pipeline step (`prepare/data.json`, `index/statistics.json`,
    `index/code_counts.json`, `stageN/history.json`, `stageN/summary.json`,
    `evaluate/metrics.json`, `bench/decode.json`, `run.json`); a step whose files are missing
    gets a one-line "not run yet" section, so a report can be written at any point of a run.
    `tables.json` holds every table of the report with raw (unformatted) values:
    `{"table name": {"columns": [...], "rows": [[...], ...]}}`. Every file is written
    atomically. Returns the path of `report.md`.
    """
    import matplotlib

    # No display on servers; must be chosen before pyplot is imported anywhere.
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = _Report(os.path.join(run_dir, "report"), plt)
    run = _load(run_dir, "run.json")
    data = _load(run_dir, "prepare", "data.json")

    report.add("# EAGER-LLM run report")
    _run_header(report, run, data)
    _data_section(report, data)
    _index_section(report, _load(run_dir, "index", "statistics.json"), _load(run_dir, "index", "code_counts.json"))
    _training_section(report, run_dir)
    _quality_section(report, _load(run_dir, "evaluate", "metrics.json"))
    _decode_section(report, _load(run_dir, "bench", "decode.json"))

    # json.dumps without sort_keys: tables.json keeps the order of the report.
    atomic_write_text(os.path.join(report.folder, "tables.json"), json.dumps(report.tables, indent=2) + "\n")
    path = os.path.join(report.folder, "report.md")
    atomic_write_text(path, "\n\n".join(report.blocks) + "\n")
    return path


class _Report:
    """The Markdown blocks, the tables and the plots of a report being built."""

    def __init__(self, folder: str, plt):
        self.folder = folder
        self.plt = plt
        self.blocks: list[str] = []
        self.tables: dict[str, dict] = {}
        os.makedirs(folder, exist_ok=True)

    def add(self, text: str) -> None:
        self.blocks.append(text)

    def table(self, name: str, columns: list[str], rows: list[list], formats: dict | None = None) -> None:
        """Adds a table: raw values go to tables.json, `formats` (column -> callable) to Markdown."""
        self.tables[name] = {"columns": list(columns), "rows": [list(row) for row in rows]}
        formats = formats or {}
        cells = [
            [formats.get(column, _plain)(value) if value is not None else "-" for column, value in zip(columns, row)]
            for row in rows
        ]
        self.add(_markdown_table(columns, cells))

    def figure(self, fig, filename: str, caption: str) -> None:
        """Saves `fig` atomically as `filename` and embeds it; the figure is always closed."""
        try:
            with atomic_path(os.path.join(self.folder, filename)) as temporary:
                fig.savefig(temporary, format="png", dpi=100, bbox_inches="tight")
        finally:
            self.plt.close(fig)
        self.add(f"![{caption}]({filename})")


def _markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    def line(cells):
        # A "|" inside a cell would split it into two columns.
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    return "\n".join([line(columns), line(["---"] * len(columns)), *(line(row) for row in rows)])


def _load(run_dir: str, *parts: str):
    path = os.path.join(run_dir, *parts)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _not_run(step: str) -> str:
    return f"not run yet (`{STEP_COMMANDS[step]}`)"


def _plain(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _fixed(digits: int):
    return lambda value: f"{value:.{digits}f}"


def _run_header(report: _Report, run: dict | None, data: dict | None) -> None:
    if run is None:
        report.add("No run record (`run.json`) yet.")
        return
    versions = ", ".join(f"{name} {version}" for name, version in run.get("versions", {}).items())
    lines = [
        f"- Command: `{run.get('command', '?')}`",
        f"- Seed: {run.get('seed', '?')}",
        f"- Data fingerprint: `{run.get('data_fingerprint', '?')}`",
        f"- Versions: {versions or '?'}",
    ]
    if run.get("config_file"):
        lines.append(f"- Config file: `{run['config_file']}`")
    report.add("\n".join(lines))
    # A fingerprint mismatch means the prepared data changed after the run was recorded.
    if data is not None and run.get("data_fingerprint") and data.get("fingerprint") not in (None, run["data_fingerprint"]):
        report.add(
            f"**Warning:** `prepare/data.json` has fingerprint `{data['fingerprint']}`, "
            f"not the run's `{run['data_fingerprint']}`."
        )
    steps = run.get("steps", {})
    if steps:
        report.add("### Steps")
        # Pipeline order (run.json stores the steps sorted by name).
        order = [name for name in STEP_COMMANDS if name in steps] + sorted(set(steps) - set(STEP_COMMANDS))
        rows = [[name, steps[name].get("seconds"), steps[name].get("reused")] for name in order]
        report.table("steps", ["Step", "Seconds", "Reused"], rows, {"Seconds": _fixed(1)})


def _data_section(report: _Report, data: dict | None) -> None:
    report.add("## Data")
    if data is None:
        report.add(_not_run("prepare"))
        return
    report.add(f"Data set `{data.get('name', '?')}`, fingerprint `{data.get('fingerprint', '?')}`.")
    statistics = data.get("statistics", {})
    split = data.get("split", {})
    loading = data.get("report", {})
    labels = [
        (statistics, "users", "Users"),
        (statistics, "items", "Items"),
        (statistics, "interactions", "Interactions"),
        (statistics, "mean_length", "Mean sequence length"),
        (statistics, "min_length", "Shortest sequence"),
        (statistics, "max_length", "Longest sequence"),
        (statistics, "density", "Density"),
        (split, "train", "Train split"),
        (split, "valid", "Validation split"),
        (split, "test", "Test split"),
        (loading, "skipped_short_users", "Skipped users (too short)"),
        (loading, "removed_repeats", "Removed repeated interactions"),
        (loading, "items_without_text", "Items without text"),
        (loading, "ignored_item_records", "Ignored item records"),
    ]
    rows = [[label, source[key]] for source, key, label in labels if key in source]
    report.table("data", ["Quantity", "Value"], rows, {"Value": _data_value})
    notes = loading.get("notes") or []
    if notes:
        report.add("\n".join(f"- {note}" for note in notes))


def _data_value(value) -> str:
    # Density is tiny (around 1e-4): fixed decimals would print zeros.
    if isinstance(value, float) and abs(value) < 1:
        return f"{value:.3g}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return _plain(value)


def _index_section(report: _Report, statistics: dict | None, code_counts: dict | None) -> None:
    report.add("## Item index")
    if statistics is None:
        report.add(_not_run("index"))
        return
    summary = f"{_plain(statistics.get('num_items', '?'))} items, {_plain(statistics.get('num_tokens', '?'))} code tokens."
    errors = statistics.get("quantization_error") or {}
    if errors:
        summary += " Quantization error: " + ", ".join(f"{name} {value:.4g}" for name, value in errors.items()) + "."
    report.add(summary)

    positions = statistics.get("positions", [])
    rows = [
        [p.get("position"), p.get("source"), p.get("level"), p.get("codes_used"), p.get("codebook_size"), p.get("usage")]
        for p in positions
    ]
    report.table(
        "item_index",
        ["Position", "Source", "Level", "Codes used", "Codebook size", "Usage"],
        rows,
        {"Usage": lambda value: f"{100 * value:.1f} %"},
    )
    collisions = statistics.get("collisions")
    if collisions:
        report.add(_collisions_line(collisions))

    if positions:
        fig, ax = report.plt.subplots(figsize=(max(4, 0.6 * len(positions) + 2), 3))
        ax.bar([str(p.get("position")) for p in positions], [100 * (p.get("usage") or 0) for p in positions])
        ax.set_ylim(0, 105)
        ax.set_xlabel("position")
        ax.set_ylabel("codes used (%)")
        ax.set_title("Codebook usage per position")
        report.figure(fig, "code_usage.png", "Codebook usage per position")
    if code_counts:
        _code_histogram(report, code_counts)


def _collisions_line(collisions: dict) -> str:
    before = collisions.get("before", {})
    after = collisions.get("after", {})
    line = (
        f"Collisions (policy `{collisions.get('policy', '?')}`): "
        f"{_plain(before.get('items', 0))} items in {_plain(before.get('groups', 0))} groups before, "
        f"{_plain(after.get('items', 0))} items in {_plain(after.get('groups', 0))} groups after; "
        f"{_plain(collisions.get('reassigned', 0))} items reassigned"
    )
    if collisions.get("extra_level"):
        line += ", an extra level was added"
    return line + "."


def _code_histogram(report: _Report, code_counts: dict) -> None:
    names = list(code_counts)
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = report.plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        # Sorted counts show how even the codebook is at a glance, whatever the code numbering.
        counts = sorted(code_counts[name], reverse=True)
        ax.bar(range(len(counts)), counts, width=1.0)
        ax.set_title(f"position {name}")
        ax.set_xlabel("code (by count)")
        ax.set_ylabel("items")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    report.figure(fig, "code_histogram.png", "Items per code, per position")


def _training_section(report: _Report, run_dir: str) -> None:
    report.add("## Training")
    rows, histories = [], []
    for stage in (1, 2):
        step = f"stage{stage}"
        history = _load(run_dir, step, "history.json")
        summary = _load(run_dir, step, "summary.json") or {}
        if history is None and not summary:
            report.add(f"Stage {stage}: {_not_run(step)}")
            continue
        history = history or []
        histories.append((stage, history))
        trainable, total = summary.get("trainable_parameters"), summary.get("total_parameters")
        rows.append(
            [
                stage,
                summary.get("steps", len(history) or None),
                final_loss(history),
                summary.get("tokens_per_s"),
                summary.get("seconds"),
                [trainable, total] if trainable is not None or total is not None else None,
                summary.get("best_epoch"),
                summary.get("epoch_metrics"),
            ]
        )
    if rows:
        report.table(
            "training",
            ["Stage", "Steps", "Final loss", "Tokens/s", "Seconds", "Trainable / total parameters", "Best epoch",
             "Validation Recall@10 per epoch"],
            rows,
            {
                "Final loss": _fixed(4),
                "Tokens/s": _fixed(0),
                "Seconds": _fixed(1),
                "Trainable / total parameters": lambda pair: " / ".join(_plain(v) if v is not None else "?" for v in pair),
                "Validation Recall@10 per epoch": lambda values: ", ".join(f"{v:.4f}" for v in values) or "-",
            },
        )
        report.add("Final loss: mean over the last 10% of optimizer steps.")
    for stage, history in histories:
        if history:
            _training_plot(report, history, stage)


def final_loss(history: list[dict]) -> float | None:
    """The mean loss over the last 10 % of optimizer steps (length-grouped batches make single
    steps differ by task and length, so the last step alone says little), leaving out steps
    whose update was skipped for a non-finite loss or gradient."""
    losses = [record["loss"] for record in history if record.get("loss") is not None
              and not record.get("skipped_update")]
    if not losses:
        return None
    tail = losses[-max(1, math.ceil(len(losses) / 10)):]
    return sum(tail) / len(tail)


def _loss_terms(history: list[dict]) -> list[str]:
    terms: list[str] = []
    for record in history:
        for key in record:
            if key not in _NOT_LOSS_KEYS and key not in terms:
                terms.append(key)
    return terms


def _moving_average(values: list[float], window: int) -> list[float]:
    averages, total = [], 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        averages.append(total / min(index + 1, window))
    return averages


def _training_plot(report: _Report, history: list[dict], stage: int) -> None:
    terms = _loss_terms(history)
    if not terms:
        return
    # One panel per term: the terms have different scales, one axis would flatten the small ones.
    fig, axes = report.plt.subplots(len(terms), 1, figsize=(7, 2.2 * len(terms)), sharex=True, squeeze=False)
    for ax, term in zip(axes[:, 0], terms):
        points = [
            (record.get("step", index + 1), record[term])
            for index, record in enumerate(history)
            if isinstance(record.get(term), (int, float))
        ]
        if not points:
            continue
        steps, values = zip(*points)
        window = max(1, min(50, len(values) // 10))
        line, = ax.plot(steps, values, alpha=0.3, linewidth=0.8)
        ax.plot(steps, _moving_average(list(values), window), color=line.get_color(), linewidth=1.6,
                label=f"moving average ({window} steps)")
        ax.set_ylabel(term)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel("optimizer step")
    axes[0, 0].set_title(f"Stage {stage} training losses")
    fig.tight_layout()
    report.figure(fig, f"training_stage{stage}.png", f"Stage {stage} training losses")


def _quality_section(report: _Report, metrics: dict | None) -> None:
    report.add("## Recommendation quality")
    if metrics is None:
        report.add(_not_run("evaluate"))
        return
    rows_by_method = metrics.get("rows", {})
    ks, others = set(), []
    for values in rows_by_method.values():
        for key in values:
            match = _METRIC_KEY.match(key)
            if match:
                ks.add(int(match.group(2)))
            elif key not in others:
                others.append(key)
    ks = sorted(ks)
    keys = [f"{name}@{k}" for k in ks for name in ("recall", "ndcg")] + others
    columns = ["Method"] + [_metric_label(key) for key in keys]
    rows = [[method] + [values.get(key) for key in keys] for method, values in rows_by_method.items()]
    report.add(
        f"Split `{metrics.get('split', '?')}`, {_plain(metrics.get('users', '?'))} users. "
        "Recall@k and NDCG@k of the held-out item."
    )
    report.table("quality", columns, rows, {column: _fixed(4) for column in columns[1:]})
    if rows_by_method and ks:
        _quality_plot(report, rows_by_method, 10 if 10 in ks else ks[-1])


def _metric_label(key: str) -> str:
    match = _METRIC_KEY.match(key)
    if match:
        return ("Recall" if match.group(1).lower() == "recall" else "NDCG") + "@" + match.group(2)
    return key.replace("_", " ").capitalize()


def _quality_plot(report: _Report, rows_by_method: dict, k: int) -> None:
    methods = list(rows_by_method)
    positions = list(range(len(methods)))
    height = 0.38
    # Horizontal bars: method names are long and stay readable on the y axis.
    fig, ax = report.plt.subplots(figsize=(7, 0.7 * len(methods) + 1.2))
    for offset, name, label in ((-height / 2, "recall", f"Recall@{k}"), (height / 2, "ndcg", f"NDCG@{k}")):
        values = [rows_by_method[method].get(f"{name}@{k}") or 0.0 for method in methods]
        ax.barh([p + offset for p in positions], values, height=height, label=label)
    ax.set_yticks(positions)
    ax.set_yticklabels(methods)
    ax.invert_yaxis()
    ax.set_xlabel("score")
    # Below the axes: inside, it would cover the longest bar.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, fontsize="small", frameon=False)
    ax.set_title(f"Recall@{k} and NDCG@{k}")
    fig.tight_layout()
    report.figure(fig, "quality.png", f"Recall@{k} and NDCG@{k} per method")


def _is_hf(method: str) -> bool:
    return method.strip().lower().startswith("hf")


def _decode_section(report: _Report, decode: dict | None) -> None:
    report.add("## Decoding speed")
    if decode is None:
        report.add(_not_run("bench"))
        return
    bench_rows = decode.get("rows", [])
    # The first HF row of each batch size is the baseline of that batch size.
    hf_speed = {}
    for row in bench_rows:
        if _is_hf(row.get("method", "")) and row.get("users_per_s"):
            hf_speed.setdefault(row.get("batch_size"), row["users_per_s"])
    rows = []
    for row in bench_rows:
        baseline = hf_speed.get(row.get("batch_size"))
        speed = row.get("users_per_s")
        ratio = speed / baseline if baseline and speed is not None else None
        rows.append([row.get("method"), row.get("batch_size"), speed, row.get("seconds"), ratio])
    report.add(
        f"Model `{decode.get('model', '?')}`, {_plain(decode.get('num_beams', '?'))} beams, "
        f"{_plain(decode.get('num_items', '?'))} items. \"vs HF\": speed relative to HF generate at the same batch size."
    )
    report.table(
        "decoding_speed",
        ["Method", "Batch", "Users/s", "Seconds", "vs HF"],
        rows,
        {"Users/s": _fixed(1), "Seconds": _fixed(2), "vs HF": lambda value: f"{value:.2f}x"},
    )
