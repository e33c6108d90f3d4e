"""Public helpers for testing nodes and pipelines: a virtual clock and a node harness."""

from streamlab.testing.clock import VirtualClock
from streamlab.testing.harness import collect_samples, make_frame, run_node

__all__ = ["VirtualClock", "collect_samples", "make_frame", "run_node"]
