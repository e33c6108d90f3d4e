"""Runtimes: Pipeline (sequential), AsyncPipeline (tasks + channels), PipelinePool."""

from streamlab.runtime.async_pipeline import AsyncPipeline, PipelineStatistics, RunReport
from streamlab.runtime.live import ChangeRecord, NodeNotFound, Tap
from streamlab.runtime.pipeline import Pipeline
from streamlab.runtime.pool import PipelinePool, PoolResult, PoolStatistics

__all__ = [
    "AsyncPipeline",
    "ChangeRecord",
    "NodeNotFound",
    "Pipeline",
    "PipelinePool",
    "PipelineStatistics",
    "PoolResult",
    "PoolStatistics",
    "RunReport",
    "Tap",
]
