"""Signal generators: sources that emit the next block of samples per trigger (or freely).

Every generator counts samples with an integer ``n`` carried across frames, so consecutive
frames join without a discontinuity, and stamps each frame with the time of its first sample:
``t0 + n * 1e6 / sample_rate`` µs, where ``t0`` is the first trigger's timestamp (or the clock's
time at the first frame, in free mode). ``metadata["sample_rate"]`` is set on every frame.

Periodic and deterministic generators are pure functions of ``n``, so the stream equals one
batch evaluation over all samples whatever the frame size. Noise generators draw from one
seeded ``numpy.random.default_rng(seed)`` in sample-major order (``standard_normal((count,
channels))``), so the stream equals the batch draw ``standard_normal((total, channels)).T``
whatever the frame size; each channel gets independent noise. Pink noise filters that white
noise with a carried ``lfilter`` state (scipy, extra ``dsp``, imported when the node is created).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from streamlab.frame import DataFrame, Payload
from streamlab.node import SourceConfig, SourceNode
from streamlab.registry import register_node

__all__ = [
    "SineGenerator", "GeneratorConfig", "Generator", "SquareGenerator", "SawtoothGenerator",
    "ChirpGenerator", "WhiteNoiseGenerator", "PinkNoiseGenerator", "ConstantGenerator",
    "TestSignalGenerator", "SineComponent", "EcgGenerator",
]


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
    ``n`` (an int64 array), shared by every channel, or override ``samples_block(n)`` to
    return a channels x samples array (independent noise per channel).
    """

    Config = GeneratorConfig

    def on_create(self, config: GeneratorConfig) -> None:
        self.config = config
        self._n = 0
        self._seq = 0
        self._t0: int | None = None
        self._meta = {"sample_rate": repr(float(config.sample_rate))}
        self._names = tuple(config.channels)

    def on_update(self, old: Any, new: Any) -> bool:
        """A live change (docs/live.md): the stream goes on (sample counter, sequence ids and
        timestamps kept) and the other settings apply from the next frame (a noise generator
        restarts its draws from the new ``seed``). A new sample rate, frame size or channel
        list needs a fresh instance: False."""
        shape = ("sample_rate", "samples_per_frame", "channels", "mode")
        if any(getattr(old, k) != getattr(new, k) for k in shape):
            return False
        saved = dict(self.__dict__)
        try:
            self.on_create(new)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        self._n, self._seq, self._t0 = saved["_n"], saved["_seq"], saved["_t0"]
        return True

    def frame_period(self) -> float | None:
        return self.config.samples_per_frame / self.config.sample_rate

    def samples(self, n: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def samples_block(self, n: np.ndarray) -> np.ndarray:
        """Channels x samples for sample indices ``n``; default: every channel shares ``samples``."""
        return np.broadcast_to(self.samples(n), (len(self._names), len(n)))

    def process(self, frame: DataFrame | None) -> DataFrame:
        cfg = self.config
        if self._t0 is None:
            self._t0 = frame.timestamp if frame is not None else self.context.clock.time_us()
        count = cfg.samples_per_frame
        n = np.arange(self._n, self._n + count, dtype=np.int64)
        block = self.samples_block(n)
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
    >>> [round(v, 6) for v in out[0].payload["ch0"].tolist()]
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


def _nyquist(name: str, value: float, fs: float) -> None:
    if value > fs / 2:
        raise ValueError(f"{name} must be at most sample_rate/2 (got {value}, sample_rate={fs})")


class _Periodic(GeneratorConfig):
    frequency: float = Field(..., ge=0, description="Frequency in Hz.")
    amplitude: float = Field(1.0, description="Peak amplitude.")
    offset: float = Field(0.0, description="Constant added to every sample.")
    phase: float = Field(0.0, description="Phase at sample 0, in radians.")

    @model_validator(mode="after")
    def _check_nyquist(self) -> _Periodic:
        _nyquist("frequency", self.frequency, self.sample_rate)
        return self


def _cycle_fraction(c: Any, n: np.ndarray) -> np.ndarray:
    """Position within the period, in [0, 1), for sample indices ``n``."""
    return np.mod(c.frequency * n / c.sample_rate + c.phase / (2 * math.pi), 1.0)


@register_node
class SquareGenerator(Generator):
    """Square wave: +amplitude for the first ``duty`` fraction of each period, -amplitude after.

    >>> from streamlab.testing import run_node
    >>> out = run_node(SquareGenerator, {"frequency": 1.0, "sample_rate": 4.0,
    ...                                  "samples_per_frame": 4}, triggers=1)
    >>> out[0].payload["ch0"].tolist()
    [1.0, 1.0, -1.0, -1.0]
    """

    class Config(_Periodic):
        duty: float = Field(0.5, gt=0, lt=1, description="Fraction of the period at +amplitude.")

    def samples(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        high = _cycle_fraction(c, n) < c.duty
        return np.where(high, c.amplitude, -c.amplitude) + c.offset


@register_node
class SawtoothGenerator(Generator):
    """Sawtooth/triangle wave like ``scipy.signal.sawtooth``: rises -1 to 1 over ``width`` of a period.

    ``width=1`` is a rising ramp, ``0`` a falling ramp, ``0.5`` a triangle; scaled by
    ``amplitude`` and shifted by ``offset``.

    >>> from streamlab.testing import run_node
    >>> out = run_node(SawtoothGenerator, {"frequency": 1.0, "sample_rate": 4.0,
    ...                                    "samples_per_frame": 4}, triggers=1)
    >>> out[0].payload["ch0"].tolist()
    [-1.0, -0.5, 0.0, 0.5]
    """

    class Config(_Periodic):
        width: float = Field(1.0, ge=0, le=1, description="Fraction of the period spent rising.")

    def samples(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        frac = _cycle_fraction(c, n)
        w = c.width
        if w == 1.0:
            wave = 2 * frac - 1
        elif w == 0.0:
            wave = 1 - 2 * frac
        else:
            wave = np.where(frac < w, 2 * frac / w - 1, 1 - 2 * (frac - w) / (1 - w))
        return c.amplitude * wave + c.offset


@register_node
class ChirpGenerator(Generator):
    """Frequency sweep from ``f0`` to ``f1`` over ``duration`` seconds (``scipy.signal.chirp``).

    Sample n has ``chirp(t, f0, duration, f1, method, phi=phase_degrees)`` with ``t = n/fs``,
    or ``t = (n/fs) mod duration`` when ``repeat`` is true (the sweep restarts).

    >>> from streamlab.testing import run_node
    >>> out = run_node(ChirpGenerator, {"f0": 1.0, "f1": 10.0, "duration": 1.0,
    ...                                 "sample_rate": 100.0, "samples_per_frame": 10}, triggers=1)
    >>> out[0].payload["ch0"][0].item()
    1.0
    """

    class Config(GeneratorConfig):
        f0: float = Field(..., ge=0, description="Frequency at the start of the sweep, Hz.")
        f1: float = Field(..., ge=0, description="Frequency at the end of the sweep, Hz.")
        duration: float = Field(..., gt=0, description="Sweep length in seconds.")
        method: Literal["linear", "quadratic", "logarithmic", "hyperbolic"] = Field(
            "linear", description="Frequency law (scipy.signal.chirp method).")
        amplitude: float = Field(1.0, description="Peak amplitude.")
        phase_degrees: float = Field(0.0, description="Phase offset in degrees (chirp phi).")
        repeat: bool = Field(True, description="Restart the sweep every duration seconds.")

        @model_validator(mode="after")
        def _check(self) -> ChirpGenerator.Config:
            _nyquist("f0", self.f0, self.sample_rate)
            _nyquist("f1", self.f1, self.sample_rate)
            if self.method in ("logarithmic", "hyperbolic") and (self.f0 <= 0 or self.f1 <= 0):
                raise ValueError(f"method {self.method!r} needs f0 > 0 and f1 > 0")
            return self

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        from streamlab.nodes.filters import scipy_signal

        self._chirp = scipy_signal().chirp

    def samples(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        t = n / c.sample_rate
        if c.repeat:
            t = np.mod(t, c.duration)
        return c.amplitude * self._chirp(t, c.f0, c.duration, c.f1, method=c.method,
                                         phi=c.phase_degrees)


class _NoiseConfig(GeneratorConfig):
    std: float = Field(1.0, ge=0, description="Standard deviation.")
    mean: float = Field(0.0, description="Mean added to every sample.")
    seed: int | None = Field(0, description="Seed of numpy.random.default_rng (None: fresh entropy).")


@register_node
class WhiteNoiseGenerator(Generator):
    """Gaussian white noise, seeded, independent per channel; stream equals one batch draw.

    Sample n of channel c is ``mean + std * Z[n, c]`` with
    ``Z = numpy.random.default_rng(seed).standard_normal((total, channels))``.

    >>> from streamlab.testing import run_node
    >>> import numpy as np
    >>> out = run_node(WhiteNoiseGenerator, {"sample_rate": 10.0, "samples_per_frame": 3,
    ...                                      "seed": 1}, triggers=2)
    >>> z = np.random.default_rng(1).standard_normal((6, 1)).T
    >>> bool(np.array_equal(np.concatenate([f.block() for f in out], axis=1), z))
    True
    """

    class Config(_NoiseConfig):
        pass

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._rng = np.random.default_rng(config.seed)

    def draw(self, count: int) -> np.ndarray:
        """Standard normal noise, channels x count, continuing the seeded sequence."""
        return np.ascontiguousarray(self._rng.standard_normal((count, len(self._names))).T)

    def samples_block(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        z = self.draw(len(n))
        if c.std != 1.0:
            z *= c.std
        if c.mean != 0.0:
            z += c.mean
        return z


#: 1/f approximation (J. O. Smith, "Spectral Audio Signal Processing": pink noise filter).
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])


@register_node
class PinkNoiseGenerator(WhiteNoiseGenerator):
    """Pink (1/f) noise: seeded white noise through a 4-pole 1/f filter, state carried.

    Equals ``mean + std * g * lfilter(B, A, Z, axis=-1)`` over the whole stream, with ``Z`` the
    white noise draw of WhiteNoiseGenerator, ``B, A`` J. O. Smith's 1/f filter (-3 dB/octave
    over about three decades below Nyquist) and ``g`` the gain that gives the filtered noise unit
    variance (1 / sqrt of the sum of squares of the filter's impulse response).

    >>> from streamlab.testing import run_node
    >>> out = run_node(PinkNoiseGenerator, {"sample_rate": 1000.0, "samples_per_frame": 20000},
    ...                triggers=1)
    >>> 0.8 < float(out[0].payload["ch0"].std()) < 1.2
    True
    """

    class Config(_NoiseConfig):
        pass

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        from streamlab.nodes.filters import BaStream, scipy_signal

        signal = scipy_signal()
        impulse = np.zeros(1 << 16)
        impulse[0] = 1.0
        h = signal.lfilter(_PINK_B, _PINK_A, impulse)
        self.gain = 1.0 / float(np.sqrt(np.sum(h * h)))
        self._filter = BaStream(_PINK_B, _PINK_A, len(self._names), signal)

    def samples_block(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        y = self._filter.block(self.draw(len(n)))
        y *= c.std * self.gain
        if c.mean != 0.0:
            y += c.mean
        return y


@register_node
class ConstantGenerator(Generator):
    """Constant value on every sample: one value for all channels, or one per channel.

    >>> from streamlab.testing import run_node
    >>> out = run_node(ConstantGenerator, {"value": [1.0, 2.0], "channels": ["a", "b"],
    ...                                    "sample_rate": 10.0, "samples_per_frame": 2}, triggers=1)
    >>> out[0].block().tolist()
    [[1.0, 1.0], [2.0, 2.0]]
    """

    class Config(GeneratorConfig):
        value: float | list[float] = Field(
            0.0, description="The value, or a list with one value per channel.")

        @model_validator(mode="after")
        def _check(self) -> ConstantGenerator.Config:
            if isinstance(self.value, list) and len(self.value) != len(self.channels):
                raise ValueError(f"value lists one value per channel: got {len(self.value)} "
                                 f"values for {len(self.channels)} channels")
            return self

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        values = config.value if isinstance(config.value, list) else [config.value] * len(
            config.channels)
        self._column = np.array(values, dtype=float)[:, None]

    def samples_block(self, n: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._column, (len(self._names), len(n)))


class SineComponent(BaseModel):
    """One sine of a TestSignalGenerator."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    frequency: float = Field(..., ge=0, description="Frequency in Hz.")
    amplitude: float = Field(1.0, description="Peak amplitude.")
    phase: float = Field(0.0, description="Phase at sample 0, in radians.")


@register_node
class TestSignalGenerator(WhiteNoiseGenerator):
    """Test signal: a sum of sine components plus optional seeded Gaussian noise and an offset.

    Every channel carries the same sines; the noise (``noise_std``, seeded like
    WhiteNoiseGenerator) is independent per channel.

    >>> from streamlab.testing import run_node
    >>> out = run_node(TestSignalGenerator, {"components": [{"frequency": 1.0},
    ...                {"frequency": 2.0, "amplitude": 0.5}], "sample_rate": 8.0,
    ...                "samples_per_frame": 4}, triggers=1)
    >>> [round(v, 6) for v in out[0].payload["ch0"].tolist()]
    [0.0, 1.207107, 1.0, 0.207107]
    """

    __test__ = False  # not a pytest test class despite the name

    class Config(GeneratorConfig):
        components: list[SineComponent] = Field(
            default_factory=list, max_length=256, description="Sines summed into the signal.")
        noise_std: float = Field(0.0, ge=0, description="Standard deviation of added white noise.")
        offset: float = Field(0.0, description="Constant added to every sample.")
        seed: int | None = Field(0, description="Noise seed (numpy.random.default_rng).")

        @model_validator(mode="after")
        def _check(self) -> TestSignalGenerator.Config:
            for i, comp in enumerate(self.components):
                _nyquist(f"components[{i}].frequency", comp.frequency, self.sample_rate)
            return self

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._freqs = np.array([c.frequency for c in config.components])[:, None]
        self._amps = np.array([c.amplitude for c in config.components])
        self._phases = np.array([c.phase for c in config.components])[:, None]

    def samples_block(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        row = self._amps @ np.sin(2 * math.pi * self._freqs * n / c.sample_rate + self._phases)
        row = row + c.offset
        if c.noise_std > 0:
            z = self.draw(len(n))
            z *= c.noise_std
            z += row
            return z
        return np.broadcast_to(row, (len(self._names), len(n)))


# (amplitude, centre s, width s, scales with sqrt(RR)) relative to the R peak.
_ECG_WAVES = (
    (0.12, -0.20, 0.025, True),   # P
    (-0.12, -0.03, 0.008, False),  # Q
    (1.00, 0.00, 0.010, False),   # R
    (-0.20, 0.03, 0.008, False),   # S
    (0.30, 0.25, 0.040, True),    # T
)


@register_node
class EcgGenerator(WhiteNoiseGenerator):
    """Synthetic ECG-like signal with a fixed heart rate: Gaussian P, Q, R, S and T waves per beat.

    R peaks fall at ``first_beat + k * 60 / heart_rate`` seconds; P and T positions and widths
    scale with sqrt(RR). Optional seeded white noise (``noise_std``) and a sinusoidal baseline
    wander (``wander_amplitude`` at 0.25 Hz). Amplitudes are in mV (R = ``amplitude``).

    >>> from streamlab.testing import run_node
    >>> import numpy as np
    >>> out = run_node(EcgGenerator, {"heart_rate": 60.0, "sample_rate": 100.0,
    ...                               "samples_per_frame": 300}, triggers=1)
    >>> np.flatnonzero(out[0].payload["ch0"] > 0.9).tolist()   # R peaks at 0.2 s, 1.2 s, 2.2 s
    [20, 120, 220]
    """

    class Config(GeneratorConfig):
        heart_rate: float = Field(72.0, ge=20, le=300, description="Beats per minute.")
        amplitude: float = Field(1.0, description="R-wave amplitude (mV).")
        first_beat: float = Field(0.2, ge=0, description="Time of the first R peak, seconds.")
        noise_std: float = Field(0.0, ge=0, description="Standard deviation of added white noise.")
        wander_amplitude: float = Field(0.0, description="Baseline wander amplitude (0.25 Hz sine).")
        seed: int | None = Field(0, description="Noise seed (numpy.random.default_rng).")

    def on_create(self, config: Any) -> None:
        super().on_create(config)
        self._rr = 60.0 / config.heart_rate

    def samples_block(self, n: np.ndarray) -> np.ndarray:
        c = self.config
        rr = self._rr
        t = n / c.sample_rate
        d = np.mod(t - c.first_beat + rr / 2, rr) - rr / 2  # time from the nearest R peak
        scale = math.sqrt(rr)
        row = np.zeros(len(n))
        for amp, mu, sigma, scaled in _ECG_WAVES:
            if scaled:
                mu, sigma = mu * scale, sigma * scale
            row += amp * np.exp(-0.5 * ((d - mu) / sigma) ** 2)
        row *= c.amplitude
        if c.wander_amplitude:
            row += c.wander_amplitude * np.sin(2 * math.pi * 0.25 * t)
        if c.noise_std > 0:
            z = self.draw(len(n))
            z *= c.noise_std
            z += row
            return z
        return np.broadcast_to(row, (len(self._names), len(n)))
