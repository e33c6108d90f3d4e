"""Channel selection, renaming, arithmetic and stream merging."""

from __future__ import annotations

__all__: list[str] = []
