"""The eager-llm entry point, run as a user would (subprocess)."""

import subprocess
import sys


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "eager_llm.cli", *args], capture_output=True, text=True, timeout=300)


def test_demo_runs_and_reports_each_op():
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    for line in ["rq_encode:", "recovered the planted codes of 100.00%", "summary_gather + gathered_infonce:",
                 "every returned id is a real item: True"]:
        assert line in result.stdout


def test_unknown_subcommand_is_one_clear_error():
    result = run_cli("frobnicate")
    assert result.returncode != 0
    assert "invalid choice: 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr
