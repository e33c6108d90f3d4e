"""ErrorPolicy (what becomes of a failing frame), RestartStrategy (what becomes of the node)
and the circuit breaker's settings.

They are defined once, in :mod:`streamlab.config.resilience` (the JSON format and the runtime
share the same frozen models, validated there); this module re-exports them under the runtime's
names. Every duration is in seconds.
"""

from __future__ import annotations

from streamlab.config.resilience import (
    CircuitBreakerSettings,
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

#: The breaker's settings under their former name (it is no longer a restart strategy).
CircuitBreakerStrategy = CircuitBreakerSettings

__all__ = [
    "ErrorPolicy",
    "Propagate",
    "SkipFrame",
    "UseDefault",
    "RestartStrategy",
    "Never",
    "Immediate",
    "Exponential",
    "CircuitBreakerSettings",
    "CircuitBreakerStrategy",
    "backoff_delay",
]
