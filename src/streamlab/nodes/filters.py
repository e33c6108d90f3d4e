"""Streaming filters (IIR, notch, FIR, moving average, detrend)."""

from __future__ import annotations

__all__: list[str] = []
