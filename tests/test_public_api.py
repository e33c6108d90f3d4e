"""The curated public API: pinned exactly, importable, documented; optional extras load lazily."""

import inspect
import subprocess
import sys

import streamlab

# The whole public API, pinned: adding, renaming or removing a name must be deliberate (update
# this list, the README and the changelog in the same commit).
PUBLIC_API = [
    "AsyncPipeline", "BackendError", "BufferPool", "Channel", "ChannelClosed",
    "ChannelStatistics", "CircuitBreaker", "Clock", "ConfigError", "DataFrame", "EndOfStream",
    "ErrorPolicy", "FrameError", "Inlet", "MetricsCollector", "NodeConfig", "NodeContext",
    "NodeError", "NodeMetrics", "Outlet", "Payload", "Pipeline", "PipelineError",
    "PipelineMonitor", "PipelinePool", "PipelineSpec", "PipelineStopped", "PoolError",
    "PooledBuffer", "ProcessingNode", "ResilientNode", "RestartStrategy", "RunReport",
    "SYSTEM_CLOCK", "SourceConfig", "SourceNode", "StreamLabError", "SystemClock",
    "UnknownNodeTypeError", "get_node_type", "load_config", "node_types",
    "pipeline_json_schema", "register_node",
]

SPEC_NAMES = ["DataFrame", "ProcessingNode", "Pipeline", "AsyncPipeline", "PipelinePool",
              "NodeMetrics", "MetricsCollector", "PipelineMonitor", "ResilientNode",
              "ErrorPolicy", "RestartStrategy", "BufferPool", "PooledBuffer"]


def test_spec_names_are_public():
    for name in SPEC_NAMES:
        assert name in streamlab.__all__ and getattr(streamlab, name) is not None


def test_public_api_is_pinned():
    assert sorted(streamlab.__all__) == PUBLIC_API
    assert len(set(streamlab.__all__)) == len(streamlab.__all__), "duplicate names in __all__"


def test_star_import_gives_every_public_name():
    namespace: dict[str, object] = {}
    exec("from streamlab import *", namespace)
    assert sorted(n for n in namespace if n != "__builtins__") == PUBLIC_API


def test_every_public_name_is_documented():
    undocumented = []
    for name in PUBLIC_API:
        obj = getattr(streamlab, name)
        if inspect.isclass(obj) or callable(obj):
            doc = obj.__doc__  # its own, not inherited
        elif type(obj).__module__.startswith("streamlab."):
            doc = type(obj).__doc__  # a constant (SYSTEM_CLOCK) is documented by its class
        else:
            doc = None  # a bare int or str says nothing about itself
        if not (doc and doc.strip()):
            undocumented.append(name)
    assert undocumented == []


def test_import_loads_no_optional_dependency():
    code = ("import sys, streamlab; streamlab.node_types(); "
            "print(sorted(m for m in ('scipy', 'matplotlib', 'prometheus_client', 'rich', "
            "'pylsl', 'ray', 'soundfile', 'uvloop') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
