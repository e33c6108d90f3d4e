"""FaultInjector: deterministic failures for chaos tests."""

from __future__ import annotations

__all__: list[str] = []
