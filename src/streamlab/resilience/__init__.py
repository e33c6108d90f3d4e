"""Error recovery: ErrorPolicy, RestartStrategy, CircuitBreakerSettings, CircuitBreaker, ResilientNode.

The policy names are :mod:`streamlab.resilience.policy`'s (listed once, in its ``__all__``).
"""

from streamlab.resilience import policy
from streamlab.resilience.breaker import BreakerState, CircuitBreaker
from streamlab.resilience.policy import *  # noqa: F403 - the names policy.__all__ lists
from streamlab.resilience.resilient import ResilientNode

__all__ = ["BreakerState", "CircuitBreaker", "ResilientNode", *policy.__all__]
