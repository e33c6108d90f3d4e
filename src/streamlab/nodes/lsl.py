"""Lab Streaming Layer inlet and outlet (optional extra 'lsl')."""

from __future__ import annotations

__all__: list[str] = []
