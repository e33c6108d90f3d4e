"""Signal generators: sources that emit the next block of samples per trigger (or freely).

Every generator counts samples with an integer ``n`` carried across frames, so consecutive
frames join without a discontinuity, and stamps each frame with the time of its first sample:
``t0 + n * 1e6 / sample_rate`` µs, where ``t0`` is the first trigger's timestamp (or the clock's
time at the first frame, in free mode). ``metadata["sample_rate"]`` is set on every frame.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field, model_validator

from streamlab.frame import DataFrame, Payload
from streamlab.node import SourceConfig, SourceNode
from streamlab.registry import register_node

__all__ = ["SineGenerator", "GeneratorConfig", "Generator"]


class GeneratorConfig(SourceConfig):
    """Settings shared by generators."""

    sample_rate: float = Field(..., gt=0, le=1e9, description="Samples per second (Hz).")
    samples_per_frame: int = Field(..., ge=1, le=10_000_000, description="Samples per output frame.")
    channels: list[str] = Field(
        default_factory=lambda: ["ch0"], min_length=1, max_length=4096,
        description="Channel names; every channel carries the same signal.")

    @model_validator(mode="after")
    def _unique_channels(self) -> GeneratorConfig:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channel names must be unique, got {self.channels}")
        return self


class Generator(SourceNode):
    """Base of generators: sample counter, timestamps, sequence ids, payload layout.

    Subclasses implement ``samples(n)`` returning one 1-D float64 array for sample indices
    ``n`` (an int64 array).
    """

    Config = GeneratorConfig

    def on_create(self, config: GeneratorConfig) -> None:  # type: ignore[override]
        self.config = config
        self._n = 0
        self._seq = 0
        self._t0: int | None = None
        self._meta = {"sample_rate": repr(float(config.sample_rate))}
        self._names = tuple(config.channels)

    def frame_period(self) -> float | None:
        return self.config.samples_per_frame / self.config.sample_rate

    def samples(self, n: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def process(self, frame: DataFrame | None) -> DataFrame:  # type: ignore[override]
        cfg = self.config
        if self._t0 is None:
            self._t0 = frame.timestamp if frame is not None else self.context.clock.time_us()
        count = cfg.samples_per_frame
        n = np.arange(self._n, self._n + count, dtype=np.int64)
        row = self.samples(n)
        block = np.broadcast_to(row, (len(self._names), count))  # channels share one row
        ts = self._t0 + round(self._n * 1e6 / cfg.sample_rate)
        out = DataFrame(ts, self._seq, Payload.from_block(self._names, block), self._meta)
        self._n += count
        self._seq += 1
        return out


@register_node
class SineGenerator(Generator):
    """Sine wave: amplitude * sin(2*pi*frequency*n/sample_rate + phase), phase carried across frames.

    >>> from streamlab.testing import run_node
    >>> out = run_node(SineGenerator, {"frequency": 1.0, "sample_rate": 4.0,
    ...                                "samples_per_frame": 4}, triggers=1)
    >>> [round(v, 6) for v in out[0].payload["ch0"]]
    [0.0, 1.0, 0.0, -1.0]
    """

    class Config(GeneratorConfig):
        frequency: float = Field(..., ge=0, description="Frequency in Hz.")
        amplitude: float = Field(1.0, description="Peak amplitude.")
        phase: float = Field(0.0, description="Phase at sample 0, in radians.")

        @model_validator(mode="after")
        def _nyquist(self) -> SineGenerator.Config:
            if self.frequency > self.sample_rate / 2:
                raise ValueError(
                    f"frequency must be at most sample_rate/2 (got {self.frequency}, "
                    f"sample_rate={self.sample_rate})")
            return self

    def samples(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        return c.amplitude * np.sin(2 * math.pi * c.frequency * n / c.sample_rate + c.phase)
