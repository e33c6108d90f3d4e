"""Phase-1 Pipeline: the end of data is signalled (``exhausted``, then EndOfStream)."""

import numpy as np
import pytest

from streamlab import EndOfStream, Pipeline


def file_graph(path, extra_source=None):
    nodes = [{"id": "src", "type": "FileSource",
              "config": {"path": str(path), "samples_per_frame": 4, "sample_rate": 100.0}},
             {"id": "g", "type": "Gain", "config": {"gain": 2.0}}]
    conns = [{"from": "src", "to": "g"}]
    if extra_source:
        nodes.append(extra_source)
        conns.append({"from": extra_source["id"], "to": "g"})
    return {"nodes": nodes, "connections": conns}


def test_file_source_drains_then_signals_end(tmp_path):
    np.save(tmp_path / "x.npy", np.arange(10.0).reshape(10, 1))
    pipe = Pipeline(file_graph(tmp_path / "x.npy"))
    got = []
    calls = 0
    while not pipe.exhausted and calls < 100:  # the documented loop
        calls += 1
        got += [f.payload["ch0"].tolist() for f in pipe.process_sync()["g"]]
    assert got == [[0, 2, 4, 6], [8, 10, 12, 14], [16, 18]]
    assert calls == 4  # three frames, then the call that met the end (it returns no frame)
    assert pipe.ended_sources == {"src"}
    with pytest.raises(EndOfStream, match="every source has ended"):
        pipe.process_sync()
    pipe.close_sync()


def test_not_exhausted_while_a_source_still_produces(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 1)))
    sine = {"id": "sine", "type": "SineGenerator",
            "config": {"frequency": 1.0, "sample_rate": 100.0, "samples_per_frame": 4,
                       "channels": ["ch0"]}}
    pipe = Pipeline(file_graph(tmp_path / "x.npy", sine))
    for _ in range(5):
        pipe.process_sync()
    assert pipe.ended_sources == {"src"} and not pipe.exhausted  # the triggered sine goes on
    assert len(pipe.process_sync()["g"]) == 1
    pipe.close_sync()
