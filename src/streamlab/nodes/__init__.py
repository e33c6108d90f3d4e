"""The built-in node library. Importing it registers every built-in node type.

One module per family:

* ``generators``: signal sources (sine, square, noise, chirp, ...)
* ``basic``: per-frame transforms (Gain, Passthrough)
* ``filters``, ``resample``, ``spectral``, ``features``: DSP (scipy, optional extra ``dsp``)
* ``channels``: selecting, renaming, combining channels and merging streams
* ``io``, ``sinks``, ``record``: reading files, writing files, recording and replay
* ``markers``: event sources and sinks (MarkerGenerator, EventsFileSource, EventsSink)
* ``lsl``: Lab Streaming Layer (optional extra ``lsl``); ``plot``: PNG plots (extra ``plot``)
* ``fault``: FaultInjector for chaos tests
* ``xdf``: XDF recordings (XdfSource, XdfSink; optional extra ``xdf``)

Nodes here use only StreamLab's public API, as a third-party node package would. Modules
that need an optional dependency import it when a node is created, not at import time, so
every type is listed (and documented) even where the extra is not installed.
"""

from streamlab.nodes import (
    align,
    attach,
    basic,
    channels,
    decode,
    edf,
    epoch_features,
    epochs,
    fault,
    features,
    filters,
    generators,
    io,
    lsl,
    markers,
    plot,
    record,
    resample,
    sinks,
    spectral,
    xdf,
)

__all__ = [
    "align",
    "attach",
    "basic",
    "channels",
    "decode",
    "edf",
    "epoch_features",
    "epochs",
    "fault",
    "features",
    "filters",
    "generators",
    "io",
    "lsl",
    "markers",
    "plot",
    "record",
    "resample",
    "sinks",
    "spectral",
    "xdf",
]
