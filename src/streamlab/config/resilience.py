"""The resilience settings of a node: one definition each, used by the config and the runtime.

These frozen pydantic models are both the JSON format (``error_policy``, ``restart``,
``breaker``) and the runtime's settings: :mod:`streamlab.resilience` re-exports them and
:func:`streamlab.resilience.decision.decide` calls their behaviour (:meth:`ErrorPolicy.handles`,
:meth:`RestartStrategy.delay`, :meth:`Exponential.schedule`).

Error policies (what becomes of a failing frame):

* :class:`Propagate` (default): the pipeline stops; ``run()`` raises a PipelineError whose
  cause is the node's exception.
* :class:`SkipFrame`: the failing frame is dropped and counted as ``skipped``.
* :class:`UseDefault`: a substitute frame (same timestamp, sequence id and channel shapes,
  filled with ``fill_value``, or the last good output re-stamped) takes its place, counted as
  ``defaulted``.

An ``on`` list restricts a policy to exception type names (matched against the exception's
class and its bases); ``propagate_on`` names types that always propagate.

Restart strategies (what becomes of the node): :class:`Never`, :class:`Immediate`,
:class:`Exponential`. Every restarting strategy has an intensity limit (more than
``max_restarts`` within ``within_s`` escalates) and forgets past attempts after
``healthy_after_s`` without a failure. The delay before attempt k of Exponential is
``min(max_s, base_s * 2**(k-1) * j)`` with ``j`` drawn uniformly from ``[1 - jitter, 1 + jitter]``:
jitter is applied before the cap, so no delay exceeds ``max_s``.

The circuit breaker (:class:`CircuitBreakerSettings`, key ``breaker``) is a setting of its
own, next to ``restart``: it keeps the instance and rejects frames while open.

Every duration is in seconds (a float). The millisecond names of earlier versions
(``base_ms``, ``max_ms``, ``reset_timeout_ms``, ``deadline_ms``) and the breaker written as
``{"restart": {"strategy": "CircuitBreaker", ...}}`` still load, converted, with a
:class:`DeprecationWarning` naming the JSON path and the new name (see :func:`migrate_node`).
"""

from __future__ import annotations

import math
import random
import warnings
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ErrorPolicy",
    "Propagate",
    "SkipFrame",
    "UseDefault",
    "ErrorPolicySetting",
    "RestartStrategy",
    "Never",
    "Immediate",
    "Exponential",
    "RestartSetting",
    "CircuitBreakerSettings",
    "backoff_delay",
    "RENAMED",
    "migrate",
    "migrate_node",
]

#: Deprecated key -> (new key, factor to the new unit), per kind of object.
RENAMED: dict[str, dict[str, tuple[str, float]]] = {
    "Exponential": {"base_ms": ("base_s", 1e-3), "max_ms": ("max_s", 1e-3)},
    "CircuitBreakerSettings": {"reset_timeout_ms": ("reset_timeout_s", 1e-3)},
    "NodeSpec": {"deadline_ms": ("deadline_s", 1e-3)},
    "PipelineSettings": {"deadline_ms": ("deadline_s", 1e-3)},
}


def migrate(raw: Any, kind: str, where: str, problems: list[tuple[str, str]] | None = None) -> Any:
    """``raw`` with the deprecated keys of ``kind`` renamed (values converted), warning once each.

    Each rename issues a :class:`DeprecationWarning` ``"<where>.<old>: deprecated, use <new>
    ..."``. Both names given is a problem (appended to ``problems`` as ``(path, message)``, or
    raised as ValueError when ``problems`` is None); the old key is then dropped.
    """
    if not isinstance(raw, Mapping):
        return raw
    renames = RENAMED.get(kind, {})
    if not any(old in raw for old in renames):
        return raw
    out = dict(raw)
    for old, (new, factor) in renames.items():
        if old not in out:
            continue
        path = f"{where}.{old}"
        if new in out:
            msg = f"give either {new!r} or the deprecated {old!r}, not both"
            if problems is None:
                raise ValueError(f"{path}: {msg}")
            problems.append((path, msg))
            del out[old]  # reported here; not again by the model
            continue
        value = out.pop(old)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            converted: Any = value * factor
            note = f"{value!r} -> {converted!r}"
        else:
            converted, note = value, "same value"
        out[new] = converted
        warnings.warn(f"{path}: {old!r} is deprecated, use {new!r} in seconds ({note})",
                      DeprecationWarning, stacklevel=3)
    return out


def migrate_node(raw: Any, where: str, kind: str = "NodeSpec",
                 problems: list[tuple[str, str]] | None = None) -> Any:
    """A node (or ``pipeline_config``) object with every deprecated setting in its new form.

    Renames the object's own duration keys, those of its ``restart`` strategy, and moves a
    ``{"restart": {"strategy": "CircuitBreaker", ...}}`` to ``"breaker"`` (its restart
    limits never applied to a breaker and are dropped).
    """
    if not isinstance(raw, Mapping):
        return raw
    out = dict(migrate(raw, kind, where, problems))
    restart = out.get("restart")
    if isinstance(restart, Mapping) and restart.get("strategy") == "CircuitBreaker":
        path = f"{where}.restart"
        if "breaker" in out:
            msg = "a CircuitBreaker restart strategy (deprecated) and 'breaker' given; keep 'breaker'"
            if problems is None:
                raise ValueError(f"{path}: {msg}")
            problems.append((path, msg))
            return out
        warnings.warn(f"{path}: strategy 'CircuitBreaker' is deprecated, use {where}.breaker "
                      "(a setting of its own, next to restart)", DeprecationWarning, stacklevel=2)
        keep = {k: v for k, v in restart.items()
                if k in ("failure_threshold", "reset_timeout_ms", "reset_timeout_s")}
        out["breaker"] = migrate(keep, "CircuitBreakerSettings", f"{where}.breaker", problems)
        del out["restart"]
    elif isinstance(restart, Mapping) and restart.get("strategy") == "Exponential":
        out["restart"] = migrate(restart, "Exponential", f"{where}.restart", problems)
    if isinstance(out.get("breaker"), Mapping):
        out["breaker"] = migrate(out["breaker"], "CircuitBreakerSettings", f"{where}.breaker",
                                 problems)
    return out


class Setting(BaseModel):
    """Base of every config object: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _deprecated_names(cls, data: Any) -> Any:
        # Python construction (Exponential(base_ms=10)) and objects the loader did not
        # migrate; the loader migrates first, naming the JSON path.
        if cls.__name__ in ("NodeSpec", "PipelineSettings"):
            return migrate_node(data, cls.__name__, cls.__name__)
        if cls.__name__ in RENAMED:
            return migrate(data, cls.__name__, cls.__name__)
        return data


# -- error policies -------------------------------------------------------------------------
class ErrorPolicy(Setting):
    """Base of error policies. ``on``: exception type names handled (None: all)."""

    on: tuple[str, ...] | None = Field(
        default=None, description="Exception type names this policy handles (default: all). Others propagate."
    )
    propagate_on: tuple[str, ...] = Field(
        default=(), description="Exception type names that always propagate."
    )
    name: ClassVar[str] = "ErrorPolicy"

    def handles(self, exc: BaseException) -> bool:
        """True if this policy recovers from ``exc`` (False: it propagates)."""
        names = {c.__name__ for c in type(exc).__mro__}
        if names.intersection(self.propagate_on):
            return False
        return self.on is None or bool(names.intersection(self.on))


class Propagate(ErrorPolicy):
    """Stop the pipeline; run() raises a PipelineError whose cause is the node's exception."""

    policy: Literal["Propagate"] = "Propagate"
    name: ClassVar[str] = "Propagate"

    def handles(self, exc: BaseException) -> bool:
        return False


class SkipFrame(ErrorPolicy):
    """Drop the failing frame (counted as skipped) and go on."""

    policy: Literal["SkipFrame"] = "SkipFrame"
    name: ClassVar[str] = "SkipFrame"


class UseDefault(ErrorPolicy):
    """Emit a substitute frame in place of the failing one (counted as defaulted)."""

    policy: Literal["UseDefault"] = "UseDefault"
    fill_value: float | None = Field(
        default=0.0, description="Every sample of the substitute (same channels and shape as the input)."
    )
    last_good: bool = Field(
        default=False, description="Repeat the last good output (re-stamped) instead of fill_value."
    )
    name: ClassVar[str] = "UseDefault"


ErrorPolicySetting = Annotated[Propagate | SkipFrame | UseDefault, Field(discriminator="policy")]


# -- restart strategies ---------------------------------------------------------------------
def backoff_delay(attempt: int, base: float, cap: float, jitter: float = 0.0,
                  rng: random.Random | None = None) -> float:
    """Delay before restart ``attempt`` (1-based): ``min(cap, base * 2**(attempt-1) * j)``."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    delay = base * 2.0 ** min(attempt - 1, 1000)  # 2.0 ** 1024 would raise OverflowError
    if jitter:
        delay *= (rng or random).uniform(1.0 - jitter, 1.0 + jitter)
    if not math.isfinite(delay):
        return cap
    return min(cap, delay)


class RestartStrategy(Setting):
    """Base of restart strategies (with the intensity limit and the healthy reset)."""

    max_restarts: int = Field(
        default=10, ge=1, description="Intensity limit: more than this many restarts within "
        "'within_s' seconds escalates to a pipeline failure."
    )
    within_s: float = Field(default=60.0, gt=0, description="Intensity window in seconds.")
    healthy_after_s: float = Field(
        default=30.0, gt=0, description="Attempt counter resets after this many seconds without a failure."
    )
    name: ClassVar[str] = "RestartStrategy"
    restarts: ClassVar[bool] = True

    def delay(self, attempt: int, rng: random.Random) -> float | None:
        """Seconds to wait before restart ``attempt``; None: give up (escalate)."""
        return 0.0


class Never(RestartStrategy):
    """Never restart: the node keeps its state (the policy decides what happens to the frame)."""

    strategy: Literal["Never"] = "Never"
    name: ClassVar[str] = "Never"
    restarts: ClassVar[bool] = False

    def delay(self, attempt: int, rng: random.Random) -> float | None:
        return None


class Immediate(RestartStrategy):
    """Restart (fresh instance via on_create) at once after a failure."""

    strategy: Literal["Immediate"] = "Immediate"
    name: ClassVar[str] = "Immediate"


class Exponential(RestartStrategy):
    """Restart after min(max_s, base_s * 2**(k-1)) s for attempt k; escalate after max_attempts."""

    strategy: Literal["Exponential"] = "Exponential"
    base_s: float = Field(default=0.01, gt=0, description="Delay before the first restart, in seconds.")
    max_s: float = Field(default=1.0, gt=0, description="Longest delay, in seconds.")
    max_attempts: int = Field(default=5, ge=1)
    jitter: float = Field(
        default=0.0, ge=0, le=1, description="Delay multiplied by a factor drawn from [1-jitter, 1+jitter], "
        "applied before the max_s cap."
    )
    seed: int | None = Field(default=None, description="Seed of the jitter's random numbers.")
    name: ClassVar[str] = "Exponential"

    @model_validator(mode="after")
    def _order(self) -> Exponential:
        if self.base_s > self.max_s:
            raise ValueError(f"base_s ({self.base_s:g}) must not exceed max_s ({self.max_s:g})")
        return self

    def delay(self, attempt: int, rng: random.Random) -> float | None:
        if attempt > self.max_attempts:
            return None
        return backoff_delay(attempt, self.base_s, self.max_s, self.jitter, rng)

    def schedule(self) -> list[float]:
        """The delays (seconds) of every allowed attempt, without jitter."""
        return [backoff_delay(k, self.base_s, self.max_s) for k in range(1, self.max_attempts + 1)]


RestartSetting = Annotated[Never | Immediate | Exponential, Field(discriminator="strategy")]


# -- circuit breaker ------------------------------------------------------------------------
class CircuitBreakerSettings(Setting):
    """Open after failure_threshold consecutive failures; probe once per reset_timeout_s.

    The node keeps its instance (a breaker does not restart); while open, frames are
    rejected (counted ``rejected``; UseDefault substitutes them).
    """

    failure_threshold: int = Field(default=5, ge=1, description="Consecutive failures that open it.")
    reset_timeout_s: float = Field(
        default=1.0, gt=0, description="Seconds open before one probe frame is let through."
    )
    name: ClassVar[str] = "CircuitBreaker"
