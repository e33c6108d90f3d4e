"""File sources and sinks (npy, csv, wav, jsonl, npz)."""

from __future__ import annotations

__all__: list[str] = []
