"""JSON in the docs is true to the code: pipelines validate, node snippets name real types."""

import json
import re
from pathlib import Path

import pytest

from streamlab import load_config, node_types

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def blocks():
    for page in PAGES:
        for i, text in enumerate(re.findall(r"```json\n(.*?)```", page.read_text(), flags=re.S)):
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                continue  # an excerpt with "..." is prose, not a config
            yield pytest.param(data, id=f"{page.relative_to(ROOT)}#{i}")


@pytest.mark.parametrize("data", list(blocks()))
def test_json_snippet(data):
    if isinstance(data, dict) and "nodes" in data:
        load_config(data)
    elif isinstance(data, dict) and "type" in data and "id" in data:
        assert data["type"] in node_types(), f"unknown node type {data['type']!r} in the docs"
        load_config({"nodes": [data]})
