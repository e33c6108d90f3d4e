"""The curated public API: the spec's names are importable; optional extras load lazily."""

import subprocess
import sys

import streamlab

SPEC_NAMES = ["DataFrame", "ProcessingNode", "Pipeline", "AsyncPipeline", "PipelinePool",
              "NodeMetrics", "MetricsCollector", "PipelineMonitor", "ResilientNode",
              "ErrorPolicy", "RestartStrategy", "BufferPool", "PooledBuffer"]


def test_spec_names_are_public():
    for name in SPEC_NAMES:
        assert name in streamlab.__all__ and getattr(streamlab, name) is not None


def test_import_loads_no_optional_dependency():
    code = ("import sys, streamlab; streamlab.node_types(); "
            "print(sorted(m for m in ('scipy', 'matplotlib', 'prometheus_client', 'rich', "
            "'pylsl', 'ray', 'soundfile', 'uvloop') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
