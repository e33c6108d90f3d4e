"""A test run leaves the checkout as it found it: ``git status`` clean, no stray outputs.

Runs a representative part of the suite in a subprocess (the flagship example, which writes
``out/demo/`` relative to its working directory, and a Hypothesis module, which keeps an
example database) and compares the checkout before and after. The only place tests may write
inside the checkout is ``out/hypothesis/`` (git-ignored; see ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Written by every Python run or allowed by design; everything else is a stray output.
SKIP_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "mutants"}
# out/hypothesis: the tests' own; out/mutmut: a `make mutate` may be running meanwhile.
ALLOWED = {ROOT / "out" / "hypothesis", ROOT / "out" / "mutmut"}


def files_and_mtimes() -> dict[str, int]:
    seen: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(ROOT):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and here / d not in ALLOWED]
        for name in filenames:
            path = here / name
            try:
                seen[str(path.relative_to(ROOT))] = path.stat().st_mtime_ns
            except FileNotFoundError:  # removed while walking (another writer): not ours
                pass
    return seen


def git_status() -> str | None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    r = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60)
    return r.stdout if r.returncode == 0 else None


def test_a_test_run_writes_nothing_into_the_checkout():
    before_status, before_files = git_status(), files_and_mtimes()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-o", "addopts=-p no:cacheprovider",
         "tests/test_examples.py", "-k", "eeg_monitor",
         "tests/metrics/test_node_metrics.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "passed" in r.stdout
    after_files = files_and_mtimes()
    written = sorted(p for p, m in after_files.items() if before_files.get(p) != m)
    assert written == [], f"the test run wrote into the checkout: {written}"
    assert not (ROOT / ".hypothesis").exists() or ".hypothesis" in before_files
    if before_status is None:
        pytest.skip("not a git checkout: file comparison only")
    assert git_status() == before_status
