"""PlotSink: render the channels a pipeline produced to a PNG at the end of a run.

Optional extra ``plot`` (matplotlib); the spectrum panel uses scipy's Welch estimate when
scipy is installed, else a Hann-windowed numpy periodogram. The figure is drawn with
matplotlib's object API and the Agg canvas (no pyplot, no global backend switch), so a
library user's own matplotlib settings are left alone.

Memory is bounded: the sink keeps the most recent ``max_seconds`` (when the sample rate is
known) and never more than ``max_samples`` samples per channel, dropping the oldest frames.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from streamlab.errors import missing_extra
from streamlab.frame import DataFrame
from streamlab.nodes.io import require_suffix
from streamlab.nodes.sinks import FileSink, FileSinkConfig, frame_source_name
from streamlab.registry import register_node

__all__ = ["PlotSink", "spectrum"]

_MAX_SUBPLOTS = 8


def spectrum(x: np.ndarray, sample_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Power spectral density of each row of ``x``: ``(freqs, psd)``, psd in units²/Hz.

    scipy.signal.welch (Hann, up to 2 s segments, 50 % overlap) if scipy is installed, else a
    Hann-windowed periodogram over the whole signal (numpy FFT), scaled the same way.
    """
    n = x.shape[-1]
    try:
        from scipy.signal import welch
    except ImportError:
        win = np.hanning(n)
        spec = np.abs(np.fft.rfft(x * win, axis=-1)) ** 2 / (sample_rate * np.sum(win ** 2))
        spec[..., 1:(n + 1) // 2] *= 2  # one-sided: fold negative frequencies (not DC/Nyquist)
        return np.fft.rfftfreq(n, 1 / sample_rate), spec
    return welch(x, fs=sample_rate, nperseg=min(n, max(256, int(2 * sample_rate))), axis=-1)


class PlotSinkConfig(FileSinkConfig):
    """Settings of PlotSink."""

    max_seconds: float | None = Field(10.0, gt=0, description="Plot the last this many seconds "
                                      "(needs the sample rate); None: up to max_samples.")
    max_samples: int = Field(200_000, ge=2, le=10_000_000,
                             description="Never keep more than this many samples per channel.")
    sample_rate: float | None = Field(None, gt=0, description="Hz (default: "
                                      "metadata['sample_rate']; without one, the x axis is "
                                      "the sample index).")
    units: str = Field("", description="Unit of the samples, shown on the y axes (e.g. 'µV').")
    title: str | None = Field(None, description="Figure title (default: the upstream node, "
                              "channel count and sample rate).")
    layout: Literal["auto", "subplots", "stacked"] = Field(
        "auto", description="One subplot per channel, or all channels stacked with offsets "
        f"on one axis; 'auto' stacks more than {_MAX_SUBPLOTS} channels.")
    spectrum: bool = Field(False, description="Add a power spectral density panel (needs the "
                           "sample rate).")
    width: int = Field(1200, ge=200, le=8000, description="Image width in pixels.")
    height: int | None = Field(None, ge=200, le=8000, description="Image height in pixels "
                               "(default: grows with the number of panels).")

    @model_validator(mode="after")
    def _check(self) -> PlotSinkConfig:
        require_suffix(self.path, (".png",), "PlotSink")
        return self


@register_node
class PlotSink(FileSink):
    """Render the received channels (and optionally their spectrum) to a PNG when the run ends.

    One subplot per channel (or stacked traces with offsets when there are many), time in
    seconds from the first plotted sample, channel labels, units and a title. The PNG is
    written in ``on_stop``; no frame, no file. Frames must keep the first frame's channels.

    >>> import tempfile, os
    >>> from streamlab.testing import run_node, make_frame
    >>> path = os.path.join(tempfile.mkdtemp(), "plot.png")
    >>> frame = make_frame(x=[0.0, 1.0, 0.0, -1.0] * 8, metadata={"sample_rate": "32.0"})
    >>> run_node(PlotSink, {"path": path, "width": 400, "height": 300}, [frame])
    []
    >>> open(path, "rb").read(8) == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """

    Config = PlotSinkConfig

    def on_create(self, config: PlotSinkConfig) -> None:
        super().on_create(config)
        try:
            import matplotlib  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise missing_extra("matplotlib", "plot") from exc
        self._blocks: deque[tuple[int, np.ndarray]] = deque()
        self._kept = 0
        self._rate: float | None = None
        self._source = ""

    def _open(self, frame: DataFrame) -> None:
        self._rate = self._sample_rate(frame, self.config.sample_rate)
        self._source = frame_source_name(self)
        limit = self.config.max_samples
        if self._rate is not None and self.config.max_seconds is not None:
            limit = min(limit, max(2, round(self.config.max_seconds * self._rate)))
        self._limit = limit

    def _write(self, frame: DataFrame) -> None:
        block = frame.block()
        if block.shape[1] == 0:
            return
        self._blocks.append((frame.timestamp, block))
        self._kept += block.shape[1]
        while self._kept - self._blocks[0][1].shape[1] >= self._limit:
            self._kept -= self._blocks.popleft()[1].shape[1]

    @property
    def samples_kept(self) -> int:
        """Samples per channel currently held for the plot (bounded by the limits)."""
        return min(self._kept, self._limit) if self._blocks else 0

    def _series(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, data): x in seconds (or sample index) and data (channels x samples), trimmed."""
        names = self._names or ()
        if not self._blocks:
            return np.empty(0), np.empty((len(names), 0))
        data = np.concatenate([b for _, b in self._blocks], axis=1)[:, -self._limit:]
        if self._rate is None:
            return np.arange(data.shape[1], dtype=np.float64), data
        parts = [(ts - self._blocks[0][0]) / 1e6 + np.arange(b.shape[1]) / self._rate
                 for ts, b in self._blocks]
        x = np.concatenate(parts)[-self._limit:]
        return x - x[0], data

    def _finish(self) -> None:
        x, data = self._series()
        fig = self._figure(x, data)
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig).print_png(str(self.path))
        self._blocks.clear()

    def _figure(self, x: np.ndarray, data: np.ndarray) -> Any:
        from matplotlib.figure import Figure

        cfg = self.config
        names = list(self._names or ())
        stacked = cfg.layout == "stacked" or (cfg.layout == "auto" and len(names) > _MAX_SUBPLOTS)
        rows = 1 if stacked or not names else len(names)
        show_spec = cfg.spectrum and self._rate is not None and data.shape[1] >= 2
        panel_px = max(300, 28 * len(names)) if stacked else 150
        height_px = cfg.height or min(2400, 150 + panel_px * rows + (300 if show_spec else 0))
        dpi = 100
        fig = Figure(figsize=(cfg.width / dpi, height_px / dpi), dpi=dpi, layout="constrained")
        grid = fig.add_gridspec(rows + (1 if show_spec else 0), 1,
                                height_ratios=[1.0] * rows + ([1.6] if show_spec else []))
        axes = [fig.add_subplot(grid[0, 0])]
        axes += [fig.add_subplot(grid[i, 0], sharex=axes[0]) for i in range(1, rows)]
        unit = f" [{cfg.units}]" if cfg.units else ""
        if stacked:
            self._draw_stacked(axes[0], x, data, names, cfg.units)
        else:
            for k, (ax, name, row) in enumerate(zip(axes, names, data, strict=False)):
                ax.plot(x, row, linewidth=0.8, color=f"C{k % 10}")  # same colours as the PSD
                ax.set_ylabel(f"{name}{unit}")
                ax.grid(True, alpha=0.3)
                ax.margins(x=0)
        for ax in axes[:-1]:
            ax.tick_params(labelbottom=False)
        axes[-1].set_xlabel("time [s]" if self._rate is not None else "sample")
        if show_spec:
            self._draw_spectrum(fig.add_subplot(grid[rows, 0]), data, names, cfg.units)
        fig.suptitle(cfg.title or self._default_title(data), fontsize=13)
        return fig

    def _default_title(self, data: np.ndarray) -> str:
        rate = f" at {self._rate:g} Hz" if self._rate is not None else ""
        dur = f", last {data.shape[1] / self._rate:.3g} s" if self._rate else ""
        return f"{self._source}: {data.shape[0]} channel(s){rate}{dur}"

    @staticmethod
    def _draw_stacked(ax: Any, x: np.ndarray, data: np.ndarray, names: list[str],
                      units: str) -> None:
        centred = data - np.nanmedian(data, axis=1, keepdims=True) if data.size else data
        spread = np.nanpercentile(np.abs(centred), 99, axis=1) if data.size else np.ones(1)
        step = 2.2 * float(np.nanmax(spread)) if data.size and np.nanmax(spread) > 0 else 1.0
        offsets = -step * np.arange(len(names))
        for k, row in enumerate(centred):
            ax.plot(x, row + offsets[k], linewidth=0.7, color=f"C{k % 10}")
        ax.set_yticks(offsets, names)
        ax.set_ylabel(f"channels (offset {step:.3g}{' ' + units if units else ''} apart)")
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0)

    def _draw_spectrum(self, ax: Any, data: np.ndarray, names: list[str], units: str) -> None:
        assert self._rate is not None
        freqs, psd = spectrum(np.nan_to_num(data), self._rate)
        for k, name in enumerate(names):
            ax.semilogy(freqs[1:], psd[k, 1:] + 1e-300, linewidth=0.9, label=name,
                        color=f"C{k % 10}")
        top = float(np.nanmax(psd[:, 1:])) if psd.shape[1] > 1 else 0.0
        if top > 0:  # show 100 dB below the peak; a pure tone's numerical floor is noise
            ax.set_ylim(bottom=max(float(np.nanmin(psd[:, 1:])) + 1e-300, top * 1e-10))
        ax.set_xlabel("frequency [Hz]")
        ax.set_ylabel(f"PSD [{units}²/Hz]" if units else "PSD [1/Hz]")
        ax.set_title("power spectral density", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0)
        if len(names) <= 10:
            ax.legend(loc="upper right", fontsize=8, ncols=min(len(names), 5))
