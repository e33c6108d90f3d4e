"""PlotSink (streamlab.nodes.plot): the PNG exists, has the configured size and shows data."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.image import imread  # noqa: E402

from streamlab.errors import ConfigError  # noqa: E402
from streamlab.frame import DataFrame  # noqa: E402
from streamlab.nodes.plot import PlotSink, spectrum  # noqa: E402
from streamlab.runtime import AsyncPipeline  # noqa: E402
from streamlab.testing import make_frame, run_node  # noqa: E402


def eeg_frames(n_channels: int, seconds: float = 4.0, rate: float = 250.0,
               spf: int = 125) -> list[DataFrame]:
    n = int(seconds * rate)
    t = np.arange(n) / rate
    rng = np.random.default_rng(0)
    data = np.vstack([20 * np.sin(2 * np.pi * (3 + k) * t) + rng.standard_normal(n)
                      for k in range(n_channels)])
    names = [f"E{k}" for k in range(n_channels)]
    return [DataFrame.from_block(names, data[:, i:i + spf].copy(), timestamp=round(i * 4000),
                                 sequence_id=i // spf, metadata={"sample_rate": repr(rate)})
            for i in range(0, n, spf)]


def assert_rich_png(path, width: int, height: int) -> None:
    img = imread(path)
    assert img.shape[:2] == (height, width)
    rgb = img[..., :3].reshape(-1, 3)
    ink = np.mean(np.any(rgb < 0.9, axis=1))  # share of pixels that are not background
    assert 0.02 < ink < 0.8
    packed = (rgb * 255).astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    assert len(np.unique(packed)) > 50  # lines, antialiased text, several colours


@pytest.mark.parametrize("n_channels, spectrum_panel", [(3, True), (12, False)])
def test_png_has_the_requested_size_and_content(tmp_path, n_channels, spectrum_panel):
    path = tmp_path / "plot.png"
    out = run_node(PlotSink, {"path": str(path), "width": 900, "height": 700, "units": "µV",
                              "spectrum": spectrum_panel}, eeg_frames(n_channels))
    assert out == []
    assert_rich_png(path, 900, 700)


def test_default_height_grows_with_panels(tmp_path):
    run_node(PlotSink, {"path": str(tmp_path / "a.png")}, eeg_frames(2))
    run_node(PlotSink, {"path": str(tmp_path / "b.png"), "spectrum": True}, eeg_frames(4))
    assert imread(tmp_path / "a.png").shape[:2] == (450, 1200)
    assert imread(tmp_path / "b.png").shape[:2] == (1050, 1200)


def test_memory_is_bounded_to_the_last_seconds(tmp_path):
    node = PlotSink.create({"path": str(tmp_path / "p.png"), "max_seconds": 1.0})
    for f in eeg_frames(2, seconds=20.0, spf=50):
        node.process(f)
        assert node.samples_kept <= 250
    assert node.samples_kept == 250
    node.on_stop()
    assert_rich_png(tmp_path / "p.png", 1200, 450)


def test_without_a_sample_rate_plots_sample_indices(tmp_path):
    frames = [make_frame(x=np.sin(np.arange(i, i + 100) / 5.0), sequence_id=i)
              for i in range(0, 500, 100)]
    run_node(PlotSink, {"path": str(tmp_path / "p.png"), "spectrum": True,
                        "max_samples": 300}, frames)
    assert_rich_png(tmp_path / "p.png", 1200, 300)  # no rate: no spectrum panel


def test_spectrum_peaks_at_the_tone():
    rate = 200.0
    t = np.arange(4000) / rate
    freqs, psd = spectrum(np.vstack([np.sin(2 * np.pi * 12.5 * t)]), rate)
    assert freqs[np.argmax(psd[0])] == pytest.approx(12.5, abs=0.5)
    # Parseval: the PSD integrates to the signal's power (0.5 for a unit sine)
    assert np.sum(psd[0]) * (freqs[1] - freqs[0]) == pytest.approx(0.5, rel=0.02)


def test_png_suffix_is_required():
    cfg = {"name": "t", "nodes": [{"id": "p", "type": "PlotSink", "config": {"path": "x.jpg"}}]}
    with pytest.raises(ConfigError, match=r"\$\.nodes\[0\]\.config.*PlotSink.*\.png"):
        AsyncPipeline(cfg)
