"""Server-side trace buffers: the recent samples of a tapped node, decimated for a display.

A :class:`TraceBuffer` keeps the last ``capacity`` samples of every channel in a ring
(float32), fed with the frames a tap saw. :meth:`TraceBuffer.decimate` reduces the last
``seconds`` to ``width`` columns with the **min and max per column**, so a one-sample spike
stays visible however many samples fall in a pixel. :meth:`TraceBuffer.spectrum` is the
magnitude spectrum (dB) of the newest power-of-two window (at most 1024 samples), Hann-weighted.

Frames whose channel names differ from the buffer's reset it (a new layout); the sample rate
is taken from the frame metadata (``sample_rate``) when present, else estimated from the
timestamps (µs) and the samples per frame.

:func:`encode` packs a message for the browser: a 4-byte little-endian header length, the JSON
header, zero padding to a multiple of 4 bytes, then the float32 data.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from streamlab.errors import FrameError
from streamlab.frame import DataFrame

__all__ = ["TraceBuffer", "encode", "decode"]

_MAX_EVENTS = 256


class TraceBuffer:
    def __init__(self, capacity: int = 16384) -> None:
        self.capacity = capacity
        self.names: tuple[str, ...] = ()
        self.data = np.zeros((0, capacity), dtype=np.float32)
        self.total = 0          # samples ever written (the ring's write position)
        self.frames = 0
        self.skipped = 0        # frames that could not be drawn as traces
        self.rate: float | None = None
        self._last_ts: int | None = None
        self._last_n = 0
        self.events: list[tuple[int, str, float | None]] = []  # (absolute sample, label, value)

    def _reset(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.data = np.zeros((len(names), self.capacity), dtype=np.float32)
        self.total = 0
        self.rate = None
        self._last_ts = None
        self.events = []

    def extend(self, frames: Iterable[DataFrame]) -> None:
        """Append frames in order; consecutive frames of one layout are written at once."""
        run: list[np.ndarray] = []
        pending = 0  # samples in run
        for f in frames:
            names = f.channels
            if not names:
                continue
            if names != self.names:
                self._write(run)
                run, pending = [], 0
                self._reset(names)
            try:
                block = f.block()
            except FrameError:  # channels of different lengths (a feature frame): not a trace
                self.skipped += 1
                continue
            n = block.shape[1]
            if n == 0:
                continue
            self._rate_from(f, n)
            for ev in f.events:
                self.events.append((self.total + pending + ev.sample, ev.label, ev.value))
            run.append(block)
            pending += n
            self.frames += 1
        self._write(run)
        if len(self.events) > _MAX_EVENTS:
            del self.events[:-_MAX_EVENTS]

    def add(self, frame: DataFrame) -> None:
        self.extend((frame,))

    def _write(self, blocks: list[np.ndarray]) -> None:
        if not blocks:
            return
        block = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=1)
        n = total_n = block.shape[1]
        start = self.total
        if n >= self.capacity:
            block = block[:, -self.capacity:]
            start += n - self.capacity
            n = self.capacity
        pos = start % self.capacity
        first = min(n, self.capacity - pos)
        self.data[:, pos:pos + first] = block[:, :first]
        if first < n:
            self.data[:, :n - first] = block[:, first:]
        self.total += total_n

    def _rate_from(self, frame: DataFrame, n: int) -> None:
        meta = frame.metadata.get("sample_rate")
        if meta:
            try:
                self.rate = float(meta)
                return
            except ValueError:
                pass
        ts = frame.timestamp
        if self._last_ts is not None and ts > self._last_ts and self._last_n:
            est = self._last_n / ((ts - self._last_ts) / 1e6)
            # smoothed: one late frame does not move the time axis
            self.rate = est if self.rate is None else 0.9 * self.rate + 0.1 * est
        self._last_ts, self._last_n = ts, n

    def window(self, samples: int) -> np.ndarray:
        """The newest ``samples`` samples per channel (fewer while the buffer fills)."""
        n = min(samples, self.total, self.capacity)
        if n <= 0:
            return np.zeros((len(self.names), 0), dtype=np.float32)
        end = self.total % self.capacity
        if end >= n:
            return self.data[:, end - n:end]
        return np.concatenate([self.data[:, self.capacity - (n - end):], self.data[:, :end]], axis=1)

    def decimate(self, width: int, seconds: float) -> tuple[dict[str, Any], np.ndarray]:
        """``(header, data)``: data is float32 ``(channels, 2, columns)``: min then max per
        column; ``columns <= width`` (one sample per column while there are fewer samples)."""
        width = max(1, int(width))
        rate = self.rate or 0.0
        want = round(seconds * rate) if rate > 0 else self.capacity
        want = max(1, min(want, self.capacity))
        w = self.window(want)
        n = w.shape[1]
        if n == 0:
            out = np.zeros((len(self.names), 2, 0), dtype=np.float32)
        elif n <= width:
            out = np.stack([w, w], axis=1)
        else:
            # Whole columns of k samples each; the oldest n % width samples are left out.
            k = n // width
            w = w[:, n - k * width:]
            out = np.empty((w.shape[0], 2, width), dtype=np.float32)
            if k <= 64:  # numpy reduces a short innermost axis slowly: k elementwise passes
                cols = w.reshape(w.shape[0], width, k)
                out[:, 0, :] = cols[:, :, 0]
                out[:, 1, :] = cols[:, :, 0]
                for j in range(1, k):
                    np.minimum(out[:, 0, :], cols[:, :, j], out=out[:, 0, :])
                    np.maximum(out[:, 1, :], cols[:, :, j], out=out[:, 1, :])
            else:
                starts = np.arange(width, dtype=np.int64) * k
                out[:, 0, :] = np.minimum.reduceat(w, starts, axis=1)
                out[:, 1, :] = np.maximum.reduceat(w, starts, axis=1)
            n = k * width
        first = self.total - n
        events = [{"x": (s - first) / max(n, 1), "label": label, "value": value}
                  for s, label, value in self.events if first <= s < self.total]
        header = {"kind": "trace", "channels": list(self.names), "columns": int(out.shape[2]),
                  "samples": int(n), "window_samples": want, "sample_rate": rate or None,
                  "seconds": n / rate if rate > 0 else None, "total": self.total,
                  "events": events}
        return header, np.ascontiguousarray(out, dtype=np.float32)

    def spectrum(self, max_bins: int = 256) -> tuple[dict[str, Any], np.ndarray]:
        """``(header, data)``: data is float32 ``(channels, bins)`` in dB (max over the bins
        that fold into one display bin)."""
        n = min(self.total, self.capacity, 1024)
        size = 1 << max(0, n.bit_length() - 1) if n >= 16 else 0
        if size == 0:
            return ({"kind": "spectrum", "channels": list(self.names), "bins": 0,
                     "max_hz": None}, np.zeros((len(self.names), 0), dtype=np.float32))
        w = self.window(size)
        w = (w - w.mean(axis=1, keepdims=True)) * np.hanning(size).astype(np.float32)
        mag = np.abs(np.fft.rfft(w, axis=1)) / (size / 4)
        db = 20 * np.log10(mag + 1e-12)
        bins = db.shape[1]
        if bins > max_bins:
            edges = (np.arange(max_bins) * bins) // max_bins
            db = np.maximum.reduceat(db, edges, axis=1)
        rate = self.rate or 0.0
        header = {"kind": "spectrum", "channels": list(self.names), "bins": int(db.shape[1]),
                  "max_hz": rate / 2 if rate > 0 else None}
        return header, np.ascontiguousarray(db, dtype=np.float32)


def encode(header: dict[str, Any], data: np.ndarray) -> bytes:
    """One binary message (see the module docstring)."""
    head = json.dumps(header, separators=(",", ":")).encode()
    pad = (-(4 + len(head))) % 4
    return struct.pack("<I", len(head)) + head + b" " * pad + data.astype("<f4").tobytes()


def decode(message: bytes) -> tuple[dict[str, Any], np.ndarray]:
    """The inverse of :func:`encode` (tests, clients)."""
    (hlen,) = struct.unpack_from("<I", message)
    header = json.loads(message[4:4 + hlen])
    start = 4 + hlen + ((-(4 + hlen)) % 4)
    return header, np.frombuffer(message[start:], dtype="<f4")
