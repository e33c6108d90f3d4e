"""CLI behaviours that mutation testing showed the subprocess tests let through.

These call :func:`streamlab.cli.main.main` in process (mutmut only sees in-process calls)
and, for the exit code a shell sees, once through ``python -m streamlab``.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from streamlab.cli.main import EXIT_USAGE, main

ROOT = Path(__file__).resolve().parents[2]
SINE_GAIN = ROOT / "examples" / "sine_gain.json"


@pytest.mark.parametrize("value", ["-1", "-5"])
def test_negative_triggers_is_bad_input(value, capsys):
    assert main(["run", str(SINE_GAIN), "--triggers", value]) == EXIT_USAGE == 2
    captured = capsys.readouterr()
    assert captured.err == "error: --triggers must be >= 0\n"
    assert captured.out == ""


def test_negative_triggers_exit_code_from_the_shell():
    r = subprocess.run([sys.executable, "-m", "streamlab", "run", str(SINE_GAIN), "--triggers",
                        "-1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr == "error: --triggers must be >= 0\n"


def test_zero_triggers_runs(tmp_path, capsys):
    out = tmp_path / "o.jsonl"
    assert main(["run", str(SINE_GAIN), "--triggers", "0", "--output", str(out), "-q"]) == 0
    assert out.read_text() == ""


def test_no_command_prints_help_and_is_a_usage_error(capsys):
    assert main([]) == 2
    assert "usage: streamlab" in capsys.readouterr().out
