"""Mutation testing per module with mutmut: kill rates, surviving mutants, a JSON summary.

Each module of ``[tool.streamlab.mutate.<name>]`` in pyproject.toml runs in its own scratch
directory ``out/mutmut/<name>/`` (git-ignored) with only its own test files, so a run stays
short. Each run starts afresh (mutmut would otherwise keep old survivors' verdicts)::

    python scripts/mutate.py                     # every module
    python scripts/mutate.py frame channel       # some
    python scripts/mutate.py --report-only       # summarise the last runs, mutate nothing
    python scripts/mutate.py --keep frame        # reuse verdicts: only new mutants run

The kill rate is ``killed / (mutants - equivalent - not run)``: mutants listed under a module's
``equivalent`` key were judged to change no behaviour (docs/testing.md says why). A timeout
counts as killed (the mutant hung a test); a mutant in code no selected test runs ("no tests")
counts as surviving. Exits 1 if a module is under its ``target`` (default 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "mutmut"
# mutmut's exit codes per mutant (mutmut.stats.status_by_exit_code, mutmut 3.x).
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests",
          34: "skipped", 36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout",
          255: "timeout", 37: "caught by type check", None: "not checked"}


def load() -> tuple[str, dict[str, Any], dict[str, dict[str, Any]]]:
    text = (ROOT / "pyproject.toml").read_text()
    data = tomllib.loads(text)
    return text, data["tool"].get("mutmut", {}), data["tool"]["streamlab"]["mutate"]


def scratch_pyproject(text: str, shared: dict[str, Any], module: dict[str, Any]) -> str:
    """The project's pyproject.toml with a ``[tool.mutmut]`` table for this module only.

    The pytest settings (markers, filterwarnings, pythonpath) stay as they are; mutmut reads
    its configuration only from the working directory's pyproject.toml, hence the copy.
    """
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text)
    table = {**shared, "only_mutate": module["mutate"],
             "pytest_add_cli_args_test_selection": module["tests"]}
    # JSON scalars and arrays of strings are valid TOML.
    lines = [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return text.rstrip() + "\n\n[tool.mutmut]\n" + "\n".join(lines) + "\n"


def run_module(name: str, text: str, shared: dict[str, Any], module: dict[str, Any],
               children: int, keep: bool) -> int:
    work = OUT / name
    if not keep:
        # mutmut keeps a surviving mutant's verdict until asked to retest it, so a run after
        # new tests would still report the old survivors: start from scratch by default.
        shutil.rmtree(work / "mutants", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    for link in ("src", "tests", "examples"):  # the CLI tests read examples/
        if not (work / link).exists():
            (work / link).symlink_to(ROOT / link)
    (work / "pyproject.toml").write_text(scratch_pyproject(text, shared, module))
    # PYTHONPATH=src, relative: tests that start `python -m streamlab` in a subprocess from
    # mutmut's working directory (mutants/) import the mutated copy, not the checkout.
    env = {**os.environ, "PYTHONPATH": "src"}
    print(f"== {name}: mutmut run over {', '.join(module['mutate'])}", flush=True)
    return subprocess.run([sys.executable, "-m", "mutmut", "run", "--max-children",
                           str(children)], cwd=work, env=env).returncode


def results(name: str) -> dict[str, str]:
    """Mutant name -> status, from mutmut's per-file ``.meta`` records."""
    out: dict[str, str] = {}
    for meta in sorted((OUT / name / "mutants").rglob("*.py.meta")):
        data = json.loads(meta.read_text())
        for key, code in data.get("exit_code_by_key", {}).items():
            out[key] = STATUS.get(code, "suspicious")
    return out


def summarise(name: str, module: dict[str, Any]) -> dict[str, Any]:
    res = results(name)
    equivalent = set(module.get("equivalent", []))
    counts = Counter(res.values())
    killed = counts["killed"] + counts["timeout"]
    survivors = sorted(k for k, s in res.items() if s == "survived" and k not in equivalent)
    untested = sorted({k.rsplit("__mutmut_", 1)[0] for k, s in res.items() if s == "no tests"})
    judged = sum(1 for k in equivalent if res.get(k) == "survived")
    not_run = counts["not checked"]
    # A mutant no test runs ("no tests") is a bug nothing would catch: it counts as a survivor.
    denominator = len(res) - judged - not_run
    rate = killed / denominator if denominator else 0.0
    return {"mutants": len(res), "killed": killed, "survived": counts["survived"] - judged,
            "equivalent": judged, "no_tests": counts["no tests"], "not_run": not_run,
            "other": {k: v for k, v in counts.items()
                      if k not in ("killed", "timeout", "survived", "no tests", "not checked")},
            "kill_rate": round(rate, 3), "target": module.get("target", 0.8),
            "ok": rate >= module.get("target", 0.8), "surviving": survivors,
            "untested_functions": untested,
            "tests": module["tests"], "mutate": module["mutate"]}


def main(argv: list[str] | None = None) -> int:
    text, shared, modules = load()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("modules", nargs="*", help=f"default: all of {', '.join(modules)}")
    ap.add_argument("--max-children", type=int, default=2,
                    help="parallel test processes (default 2: the machine is shared)")
    ap.add_argument("--report-only", action="store_true", help="summarise, do not run")
    ap.add_argument("--keep", action="store_true",
                    help="reuse the last run's verdicts (only new or changed mutants run)")
    args = ap.parse_args(argv)
    unknown = [m for m in args.modules if m not in modules]
    if unknown:
        ap.error(f"unknown module(s) {unknown}; expected some of {list(modules)}")
    names = args.modules or list(modules)
    for name in names:
        if not args.report_only:
            run_module(name, text, shared, modules[name], args.max_children, args.keep)
    summary = {name: summarise(name, modules[name]) for name in names}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'module':<12}{'mutants':>8}{'killed':>8}{'survived':>9}{'equiv.':>7}"
          f"{'no tests':>9}{'not run':>8}{'kill rate':>10}")
    for name, s in summary.items():
        print(f"{name:<12}{s['mutants']:>8}{s['killed']:>8}{s['survived']:>9}"
              f"{s['equivalent']:>7}{s['no_tests']:>9}{s['not_run']:>8}{s['kill_rate']:>10.0%}")
        for m in s["surviving"]:
            print(f"    survived: {m}")
    print(f"summary: {OUT / 'summary.json'}; inspect a mutant with "
          f"`cd out/mutmut/<module> && mutmut show <name>`")
    return 0 if all(s["ok"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
