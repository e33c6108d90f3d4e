"""Streaming resampling (decimation, polyphase rational resampling)."""

from __future__ import annotations

__all__: list[str] = []
