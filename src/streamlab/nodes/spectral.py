"""Windows and spectra (rechunk/window, FFT, Welch PSD, band power, spectrogram)."""

from __future__ import annotations

__all__: list[str] = []
