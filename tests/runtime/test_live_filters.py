"""A live cutoff change keeps a streaming filter running without a restart transient.

Method (docs/live.md): a signal with a DC offset, a slow sine and some mains is filtered in
frames of 32 samples; after frame k the cutoff changes. Three outputs after the change are
compared with the *ideal* one, the new filter that had been running from the start:

* live: the node that took the change in place (``on_update``);
* fresh: a fresh filter with the new cutoff started at frame k (what a restart does: zero
  state), whose start-up transient is of the order of the DC offset.

Live and ideal start from the steady state of the first sample (``initial_state="steady"``)
so that they differ only by the change. The live output must stay within 1e-6 of the ideal
(it had the filter's settling length of history), while the fresh one is off by more than
0.01 and 1000 times more.
"""

import numpy as np
import pytest

from streamlab.nodes.filters import DCRemoval, FIRFilter, IIRFilter, NotchFilter
from streamlab.testing import make_frame

FS, SPF, N, K = 1000.0, 32, 120, 50
T = np.arange(N * SPF) / FS
X = 1.0 + 0.2 * np.sin(2 * np.pi * 3 * T) + 0.05 * np.sin(2 * np.pi * 60 * T)


def frames(lo, hi):
    return [make_frame(sequence_id=i, a=X[i * SPF:(i + 1) * SPF], b=-X[i * SPF:(i + 1) * SPF])
            for i in range(lo, hi)]


def out(node, fr, ch="a"):
    return np.concatenate([node.process(f).payload[ch] for f in fr])


CASES = [
    (IIRFilter, {"btype": "lowpass", "order": 4}, {"cutoff": 10.0}, {"cutoff": 20.0}),
    (IIRFilter, {"btype": "bandpass", "order": 2}, {"cutoff": [1.0, 10.0]},
     {"cutoff": [2.0, 15.0]}),
    (IIRFilter, {"btype": "highpass", "order": 2, "design": "cheby1"}, {"cutoff": 5.0},
     {"cutoff": 8.0}),
    (NotchFilter, {}, {"frequency": 60.0}, {"frequency": 50.0}),
    (FIRFilter, {"numtaps": 31}, {"cutoff": 10.0}, {"cutoff": 25.0}),
    (DCRemoval, {"method": "ema"}, {"cutoff": 0.5}, {"cutoff": 2.0}),
]


@pytest.mark.parametrize("cls, base, before, after", CASES)
def test_cutoff_change_has_no_restart_transient(cls, base, before, after):
    def cfg(change, initial="steady"):
        return cls.Config.model_validate({**base, **change, "sample_rate": FS,
                                          "initial_state": initial})

    live = cls.create(cfg(before))
    out(live, frames(0, K))
    assert live.on_update(live.config, cfg(after)) is True
    assert live.config == cfg(after)
    y_live = np.concatenate([live.process(f).block() for f in frames(K, N)], axis=1)
    ideal = cls.create(cfg(after))
    y_ideal = np.concatenate([ideal.process(f).block() for f in frames(0, N)], axis=1)
    fresh = cls.create(cfg(after, "zero"))
    y_fresh = np.concatenate([fresh.process(f).block() for f in frames(K, N)], axis=1)
    c = K * SPF
    live_dev = np.abs(y_live - y_ideal[:, c:]).max()
    fresh_dev = np.abs(y_fresh - y_ideal[:, c:]).max()
    assert live_dev < 1e-6, live_dev
    if cls is not DCRemoval:  # the ema starts from the first sample: no restart step to beat
        assert fresh_dev > 0.01 and fresh_dev > 1000 * live_dev, fresh_dev


def test_structure_change_asks_for_a_fresh_instance_and_keeps_the_old():
    node = IIRFilter.create({"cutoff": 10.0, "order": 4, "sample_rate": FS})
    out(node, frames(0, 3))
    old_cfg, old_sos, old_stream = node.config, node.sos, node._stream
    new = IIRFilter.Config.model_validate({"cutoff": 10.0, "order": 2, "sample_rate": FS})
    assert node.on_update(old_cfg, new) is False
    assert node.config is old_cfg and node.sos is old_sos and node._stream is old_stream


def test_sample_rate_change_asks_for_a_fresh_instance():
    node = IIRFilter.create({"cutoff": 10.0, "sample_rate": FS})
    new = IIRFilter.Config.model_validate({"cutoff": 10.0, "sample_rate": 500.0})
    assert node.on_update(node.config, new) is False


def test_cutoff_from_metadata_rate_is_checked_on_update():
    node = IIRFilter.create({"cutoff": 10.0})
    frame = make_frame(x=[1.0] * 8, metadata={"sample_rate": "100"})
    node.process(frame)
    new = IIRFilter.Config.model_validate({"cutoff": 60.0})   # above 100/2: refused
    with pytest.raises(ValueError, match="sample_rate/2"):
        node.on_update(node.config, new)
    assert node.config.cutoff == 10.0
    node.process(frame)  # still runs with the old design


def test_filters_of_another_stream_kind_ask_for_a_fresh_instance():
    from streamlab.nodes.features import RMS

    node = RMS.create({"window": 4})
    node.process(make_frame(x=[1.0] * 8))
    assert node.on_update(node.config, RMS.Config.model_validate({"window": 8})) is False
    node.process(make_frame(x=[1.0] * 8))  # unchanged and still running
