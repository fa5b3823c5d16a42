"""The `eager-llm` command line: one subcommand per pipeline step, a run folder per run.

    eager-llm demo                               # everything on the embedded dataset
    eager-llm prepare --run runs/beauty --set data.source=../shared/data/amazon-beauty-2014-5core
    eager-llm embed --run runs/beauty            # then index, train, evaluate, bench, report
    eager-llm recommend --run runs/beauty --history 12,7,33

Errors a user can make end in one line on stderr and exit status 2 (1 for anything
unexpected); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import time

EXIT_USAGE = 2
EXIT_FAILURE = 1


class UsageError(Exception):
    """A wrong argument on the command line."""


def _say(quiet: bool):
    return (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr, flush=True))


def _open_run(args):
    """The run folder of ``--run``: its stored config, with ``--config`` and ``--set`` laid over
    it (a new run starts from ``--preset``)."""
    from .pipeline.config import PRESETS, merge, parse_override, read_config_file, resolve_values
    from .pipeline.rundir import CONFIG_FILE, RunDir, command_line

    stored = os.path.join(args.run, CONFIG_FILE)
    if os.path.isfile(stored):
        with open(stored, encoding="utf-8") as handle:
            values = json.load(handle)
    else:
        values = PRESETS[getattr(args, "preset", "demo")]
    if getattr(args, "config", None):
        values = merge(values, read_config_file(args.config))
    for override in getattr(args, "set", None) or []:
        values = merge(values, parse_override(override))
    return RunDir.create(args.run, resolve_values(values), command_line(), getattr(args, "config", None),
                         log=_say(args.quiet))


def _run_steps(args, names) -> None:
    from .pipeline import steps
    from .report import write_report

    run = _open_run(args)
    steps.run_steps(run, names, progress=not args.quiet, force=args.force)
    path = write_report(run.path)
    run.log(f"report: {path}")


def _step_command(args) -> None:
    if args.command == "bench" and args.kernels:
        from . import ops_demo

        ops_demo.run(seed=0)
        if not args.run:
            return
    if not args.run:
        raise UsageError(f"{args.command}: --run DIR is required")
    _run_steps(args, [args.command])


def _demo(args) -> None:
    from .pipeline import steps

    args.preset = args.model
    args.run = args.run or os.path.join("runs", "demo" if args.model == "demo" else f"demo-{args.model}")
    started = time.time()
    _run_steps(args, steps.COMMANDS)
    _print_quality(args.run)
    print(f"\nrun folder: {os.path.abspath(args.run)} ({time.time() - started:.0f} s); "
          f"report: {os.path.join(os.path.abspath(args.run), 'report', 'report.md')}")


def _print_quality(run_path: str) -> None:
    with open(os.path.join(run_path, "evaluate", "metrics.json"), encoding="utf-8") as handle:
        rows = json.load(handle)["rows"]
    print(f"{'test split':28s} {'Recall@10':>10s} {'NDCG@10':>10s}")
    for name, metrics in rows.items():
        print(f"{name:28s} {metrics['recall@10']:10.4f} {metrics['ndcg@10']:10.4f}")


def _report(args) -> None:
    from .pipeline.rundir import RunDir
    from .report import write_report

    RunDir.open(args.run)
    print(write_report(args.run))


def _parse_history(text: str) -> list[int]:
    try:
        history = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--history {text!r}: expected comma-separated item ids, e.g. 12,7,33") from None
    if not history:
        raise UsageError("--history is empty")
    return history


def _recommend(args) -> None:
    from .pipeline import steps
    from .pipeline.rundir import RunDir

    history = _parse_history(args.history)
    run = RunDir.open(args.run)
    recommender = steps.latest_recommender(run)
    unknown = [item for item in history if not 1 <= item <= recommender.index.num_items]
    if unknown:
        raise UsageError(f"--history: unknown item ids {unknown[:5]} (this run's items are 1..{recommender.index.num_items})")
    titles = steps.titles(run)
    items, scores = recommender.recommend([history], k=args.k, num_beams=max(args.k, run.config.evaluate.num_beams))
    print(f"{'rank':>4s} {'item':>6s} {'log-prob':>9s}  title")
    for rank, (item, score) in enumerate(zip(items[0].tolist(), scores[0].tolist()), start=1):
        if item > 0:
            print(f"{rank:4d} {item:6d} {score:9.3f}  {titles[item - 1]}")


def _common(parser: argparse.ArgumentParser, run_required: bool) -> None:
    parser.add_argument("--run", required=run_required, default=None, metavar="DIR", help="run folder")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or step log")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _configurable(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML or JSON config laid over the run's config")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override one config key, e.g. --set stage1.lr=1e-4 (repeatable)")
    parser.add_argument("--force", action="store_true", help="recompute even when the inputs are unchanged")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .pipeline.config import PRESETS

    parser = argparse.ArgumentParser(prog="eager-llm", description="EAGER-LLM generative recommendation.")
    parser.add_argument("--version", action="version", version=f"eager-llm {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    helps = {"prepare": "read the data: statistics, leave-one-out split, item titles",
             "embed": "behavior (SASRec/DIN) and semantic (text encoder) item embeddings",
             "index": "dual-source item indices (DKI) and the decoding trie",
             "train": "stage 1 (all tasks + GCT) and stage 2 (LoRA annealing adapter)",
             "evaluate": "constrained evaluation on the test split next to popularity and the behavior model",
             "bench": "decode speed of the run's model, ours vs HF generate (--kernels: the kernel tour)"}
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        _common(sub, run_required=name != "bench")
        _configurable(sub)
        if name == "prepare":
            sub.add_argument("--preset", default="demo", choices=sorted(PRESETS), help="starting config of a new run")
        if name == "bench":
            sub.add_argument("--kernels", action="store_true", help="time each kernel against its plain-torch twin")
        sub.set_defaults(handler=_step_command)
    demo = commands.add_parser("demo", help="the whole pipeline on the embedded dataset, then the report",
                               description="data -> embeddings -> DKI -> stage 1 -> stage 2 -> evaluation -> report")
    _common(demo, run_required=False)
    _configurable(demo)
    demo.add_argument("--model", default="demo", choices=sorted(PRESETS),
                      help="demo (a tiny LM, default) or smollm2 (SmolLM2-135M + LoRA)")
    demo.set_defaults(handler=_demo)
    recommend = commands.add_parser("recommend", help="top-k items for a history of item ids")
    _common(recommend, run_required=True)
    recommend.add_argument("--history", required=True, help="comma-separated item ids, oldest first, e.g. 12,7,33")
    recommend.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    recommend.set_defaults(handler=_recommend)
    report = commands.add_parser("report", help="(re)write the run's Markdown report with plots")
    _common(report, run_required=True)
    report.set_defaults(handler=_report)
    return parser


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return f"out of disk space while writing {error.filename or 'a file'} (nothing half-written was kept)"
    if isinstance(error, OSError) and error.filename:
        return f"{error.filename}: {error.strerror or error}"
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def main(argv: list[str] | None = None) -> int:
    from .data import DataError
    from .pipeline.config import ConfigError

    args = build_parser().parse_args(argv)
    expected = (UsageError, ConfigError, DataError, FileNotFoundError, NotADirectoryError, OSError, ValueError)
    try:
        args.handler(args)
    except KeyboardInterrupt:
        print("eager-llm: interrupted", file=sys.stderr)
        return 130
    except expected as error:
        if args.debug:
            raise
        print(f"eager-llm {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # noqa: BLE001 - the last resort keeps the one-line promise
        if args.debug:
            raise
        print(f"eager-llm {args.command}: unexpected {type(error).__name__}: {_one_line(error)} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAILURE
    return 0


if __name__ == "__main__":
    sys.exit(main())
