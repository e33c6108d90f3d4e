"""Lossless recording and replay of frame streams."""

from __future__ import annotations

__all__: list[str] = []
