"""Observability: NodeMetrics (per node), MetricsCollector (all nodes), PipelineMonitor.

The Prometheus exporter lives in :mod:`streamlab.metrics.prometheus` (needs the ``metrics``
extra); the rich views of :class:`PipelineMonitor` need the ``ui`` extra. Both are imported
lazily, so importing this package needs neither.
"""

from streamlab.metrics.collector import (
    CollectorSnapshot,
    EdgeSnapshot,
    MetricsCollector,
    NodeSnapshot,
    PipelineSnapshot,
)
from streamlab.metrics.monitor import MonitorReport, NodeRow, PipelineMonitor
from streamlab.metrics.node_metrics import (
    FATES,
    AccountingError,
    BudgetHistogram,
    Histogram,
    NodeMetrics,
    NodeMetricsSnapshot,
)

__all__ = [
    "FATES",
    "AccountingError",
    "BudgetHistogram",
    "CollectorSnapshot",
    "EdgeSnapshot",
    "Histogram",
    "MetricsCollector",
    "MonitorReport",
    "NodeMetrics",
    "NodeMetricsSnapshot",
    "NodeRow",
    "NodeSnapshot",
    "PipelineMonitor",
    "PipelineSnapshot",
]
