"""StreamLab: real-time processing of multi-channel signal streams.

The curated public API; see the README for a tour.
"""

from streamlab.buffers import BufferPool, PooledBuffer
from streamlab.channel import Channel, ChannelClosed, ChannelStatistics, Inlet, Outlet
from streamlab.clock import SYSTEM_CLOCK, Clock, SystemClock
from streamlab.config import PipelineSpec, load_config, pipeline_json_schema
from streamlab.errors import (
    BackendError,
    ConfigError,
    EndOfStream,
    FrameError,
    NodeError,
    PipelineError,
    PipelineStopped,
    PoolError,
    StreamLabError,
    UnknownNodeTypeError,
)
from streamlab.frame import DataFrame, Payload
from streamlab.metrics import MetricsCollector, NodeMetrics, PipelineMonitor
from streamlab.node import NodeConfig, NodeContext, ProcessingNode, SourceConfig, SourceNode
from streamlab.registry import get_node_type, node_types, register_node
from streamlab.resilience import (
    CircuitBreaker,
    ErrorPolicy,
    ResilientNode,
    RestartStrategy,
)
from streamlab.runtime import AsyncPipeline, Pipeline, PipelinePool, RunReport

__version__ = "0.1.0"

__all__ = [
    "SYSTEM_CLOCK",
    "AsyncPipeline",
    "BackendError",
    "BufferPool",
    "Channel",
    "ChannelClosed",
    "ChannelStatistics",
    "CircuitBreaker",
    "Clock",
    "ConfigError",
    "DataFrame",
    "EndOfStream",
    "ErrorPolicy",
    "FrameError",
    "Inlet",
    "NodeConfig",
    "NodeContext",
    "NodeError",
    "MetricsCollector",
    "NodeMetrics",
    "Outlet",
    "Payload",
    "Pipeline",
    "PipelineError",
    "PipelineMonitor",
    "PipelinePool",
    "PipelineSpec",
    "PipelineStopped",
    "PoolError",
    "PooledBuffer",
    "ProcessingNode",
    "ResilientNode",
    "RestartStrategy",
    "RunReport",
    "SourceConfig",
    "SourceNode",
    "StreamLabError",
    "SystemClock",
    "UnknownNodeTypeError",
    "get_node_type",
    "load_config",
    "node_types",
    "pipeline_json_schema",
    "register_node",
]
