"""Observability: NodeMetrics (per node), MetricsCollector (all nodes), PipelineMonitor."""

from streamlab.metrics.node_metrics import FATES, AccountingError, Histogram, NodeMetrics

__all__ = ["FATES", "AccountingError", "Histogram", "NodeMetrics"]
