"""Error recovery: ErrorPolicy, RestartStrategy, CircuitBreakerSettings, CircuitBreaker, ResilientNode."""

from streamlab.resilience.breaker import BreakerState, CircuitBreaker
from streamlab.resilience.policy import (
    CircuitBreakerSettings,
    CircuitBreakerStrategy,
    ErrorPolicy,
    Exponential,
    Immediate,
    Never,
    Propagate,
    RestartStrategy,
    SkipFrame,
    UseDefault,
    backoff_delay,
)
from streamlab.resilience.resilient import ResilientNode

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerSettings",
    "CircuitBreakerStrategy",
    "ErrorPolicy",
    "Exponential",
    "Immediate",
    "Never",
    "Propagate",
    "ResilientNode",
    "RestartStrategy",
    "SkipFrame",
    "UseDefault",
    "backoff_delay",
]
