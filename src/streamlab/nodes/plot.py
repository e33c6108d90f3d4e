"""Plot sink rendering time series and spectra to PNG (optional extra 'plot')."""

from __future__ import annotations

__all__: list[str] = []
