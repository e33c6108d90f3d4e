"""Every example config validates and runs; the README's Python code runs as written."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamlab import load_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
# Examples that need an external peer or a prepared asset are run by their own module's tests.
NEEDS_SETUP = {"lsl_loopback.json", "audio_filter.json", "oddball.json", "decode_mi.json",
               "live_eeg.json"}  # live_eeg runs until stopped: tests/web/test_ctl.py drives it


def cli(*args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", "streamlab", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates(path):
    r = cli("validate", path)
    if path.name in NEEDS_INPUT and r.returncode == 2:
        # validate checks input files: before the setup step, the input is the only problem
        problems = r.stderr.splitlines()[1:]
        assert [p.split(": no such file ")[0] for p in problems] == NEEDS_INPUT[path.name], \
            r.stderr
        return
    assert r.returncode == 0, r.stderr


# Examples whose input file is made by a setup step (examples/make_audio.py): the JSON path.
NEEDS_INPUT = {"audio_filter.json": ["$.nodes[0].config.path"],
               "decode_mi.json": ["$.nodes[0].config.path", "$.nodes[1].config.path"]}


def test_example_paths_resolve_against_the_examples_folder():
    """Outputs go to out/ at the repository root (../out from examples/), wherever run from."""
    spec = load_config(ROOT / "examples" / "eeg_monitor.json")
    paths = {n.id: Path(n.config["path"]).resolve() for n in spec.nodes if "path" in n.config}
    assert paths == {"raw_plot": ROOT / "out/demo/raw.png",
                     "clean_plot": ROOT / "out/demo/filtered.png",
                     "bands": ROOT / "out/demo/band_power.jsonl"}


RUNNABLE = [p for p in EXAMPLES if p.name not in NEEDS_SETUP]


@pytest.mark.parametrize("path", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_example_runs(path, tmp_path):
    out = tmp_path / "out.jsonl"
    # Relative paths resolve against the config's folder (../out/demo from examples/): a copy
    # in tmp_path/examples/ writes into tmp_path/out, not into the checkout
    # (tests/test_repo_hygiene.py checks this).
    copy = tmp_path / "examples" / path.name
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    r = cli("run", copy, "--triggers", 5, "--output", out, "--timeout", 30, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    if path.name == "eeg_monitor.json":
        written = sorted(p.name for p in (tmp_path / "out" / "demo").iterdir())
        assert written == ["band_power.jsonl", "filtered.png", "raw.png"]
    assert "Traceback" not in r.stderr


def _readme_blocks(lang):
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_python_runs():
    for code in _readme_blocks("python"):
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr


def test_readme_json_example_is_the_file():
    (block,) = [b for b in _readme_blocks("json") if '"name": "sine-gain"' in b]
    assert json.loads(block) == json.loads((ROOT / "examples" / "sine_gain.json").read_text())


def test_readme_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[2:6] == ["```bash", lines[3], lines[4], "```"]
    assert lines[3].startswith("make demo") and lines[4].startswith("make test")
