"""The README's commands run as written, and the output it shows is the program's.

Every line of every ```bash block is a command. ``streamlab``/``python`` commands (also as
``.venv/bin/...``) run in a temporary copy of ``examples/`` with this checkout's code, so their
outputs land in tmp; ``make`` targets and commands that need external setup are skipped with
their reason (listed in SKIPPED, shown by ``pytest -rs``). A new command that cannot run here
must be added to SKIPPED with its reason, or the test fails.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# command prefix -> why it is not run here
SKIPPED = {
    "make demo": "make targets set up .venv themselves (run by CI, not from the test suite)",
    "make test": "make targets set up .venv themselves (and would run this test again)",
}


def bash_commands() -> list[str]:
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()  # trailing comments
            if line and not line.startswith("#"):
                out.append(line)
    return out


def skip_reason(command: str) -> str | None:
    for prefix, reason in SKIPPED.items():
        if command.startswith(prefix):
            return reason
    return None


def argv(command: str) -> list[str]:
    words = shlex.split(command)
    program = words[0].removeprefix(".venv/bin/")
    if program == "streamlab":
        return [sys.executable, "-m", "streamlab", *words[1:]]
    if program in ("python", "python3"):
        return [sys.executable, *words[1:]]
    raise AssertionError(f"README command {command!r}: unknown program; add it to SKIPPED "
                         "with a reason or teach this test to run it")


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    return tmp_path


def run(args, cwd, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, **kw)


COMMANDS = bash_commands()


def test_readme_has_commands_and_every_skip_is_used():
    assert len(COMMANDS) >= 5
    used = {prefix for prefix in SKIPPED if any(c.startswith(prefix) for c in COMMANDS)}
    assert used == set(SKIPPED), "stale SKIPPED entries"


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs(command, workdir):
    reason = skip_reason(command)
    if reason is not None:
        pytest.skip(f"{command!r}: {reason}")
    r = run(argv(command), workdir)
    assert r.returncode == 0, f"{command}\n{r.stdout}\n{r.stderr}"
    assert "Traceback" not in r.stderr
    assert not (workdir / "out").exists() or (workdir / "out").is_dir()


def _fence_after(marker: str) -> str:
    """The text of the plain ``` block starting with ``marker``."""
    start = README.index("```\n" + marker) + 4
    return README[start:README.index("```", start)]


def _shape(text: str) -> list[list[str]]:
    """Lines as token lists, with measured numbers (times, rates, queue figures) as '#'."""
    text = re.sub(r"(?<![=\w])\d+(\.\d+)?(µs|ms|s)?(?![\w])", "#", text)
    return [line.split() for line in text.strip().splitlines()]


def test_run_summary_shown_is_the_programs(workdir):
    (command,) = [c for c in COMMANDS if "sine_gain.json --triggers 50" in c]
    r = run(argv(command), workdir)
    assert r.returncode == 0, r.stderr
    shown = _fence_after("pipeline 'sine-gain'")
    assert _shape(r.stderr) == _shape(shown)
    assert len(json.loads((workdir / "summary.json").read_text())["nodes"]) == 2


def test_validate_example_output_is_the_programs(workdir):
    block = _fence_after("$ cat bad.json")
    cat, validate = block.split("$ streamlab validate bad.json\n")
    (workdir / "bad.json").write_text(cat.removeprefix("$ cat bad.json\n"))
    r = run([sys.executable, "-m", "streamlab", "validate", "bad.json"], workdir)
    assert r.returncode == 2
    assert r.stderr == validate


def test_set_error_quoted_in_readme_is_the_programs(workdir):
    r = run([sys.executable, "-m", "streamlab", "validate", "examples/ecg_heart_rate.json",
             "--set", "nodes.r_peaks.config.hieght=0.5"], workdir)
    assert r.returncode == 2
    quoted = ("$.nodes[2].config.hieght: --set nodes.r_peaks.config.hieght=0.5: no such key "
              "(did you mean 'height'?)")
    assert r.stderr.splitlines()[1] == quoted
    assert " ".join(quoted.split()) in " ".join(README.split())


def test_demo_writes_where_the_readme_says(workdir):
    """`make demo` runs eeg_monitor.json from the repository root and must fill out/demo/:
    the config's ../out/demo paths resolve there from examples/, whatever the cwd."""
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    r = run([sys.executable, "-m", "streamlab", "run", str(workdir / "examples/eeg_monitor.json"),
             "-q"], elsewhere)
    assert r.returncode == 0, r.stderr
    for name in ("raw.png", "filtered.png", "band_power.jsonl"):
        assert (workdir / "out" / "demo" / name).stat().st_size > 0, name
        assert f"out/demo/{name}" in README
    assert list(elsewhere.iterdir()) == []
