"""Features and events (RMS, envelope, z-score, thresholds, peaks, rates)."""

from __future__ import annotations

__all__: list[str] = []
