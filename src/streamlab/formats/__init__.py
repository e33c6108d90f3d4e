"""Readers and writers of the field's recording formats, independent of the node graph.

* :mod:`streamlab.formats.xdf`: XDF (Lab Streaming Layer's LabRecorder format): a streaming
  writer, a bounded chunk scanner that validates a file before pyxdf reads it, ``repair``.
* :mod:`streamlab.formats.edf`: EDF+/BDF+: a streaming writer (header count rewritten every
  flush interval), a bounded reader, ``repair``.

The nodes that use them live in :mod:`streamlab.nodes` (``XdfSource``, ``XdfSink``,
``EdfSource``, ``EdfSink``).
"""
