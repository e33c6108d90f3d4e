"""PeakDetector's refractory boundary (#9 item 21: a `<` -> `<=` mutant survived).

Semantic asserted: two peaks exactly one refractory period apart (``refractory * fs`` samples)
are BOTH reported; peaks closer than that are one event (the larger peak, or the first of
equal ones). The refractory period excludes peaks strictly less than ``refractory`` after a
peak, as the docstring says ("peaks less than ``refractory`` after an emitted peak are
ignored").
"""

from __future__ import annotations

import pytest

from streamlab.nodes.features import PeakDetector
from streamlab.testing import make_frame, run_node

FS = 10.0  # refractory 0.3 s = 3 samples
META = {"sample_rate": repr(FS)}


def peaks_at(samples: list[float], *, split: int | None = None, refractory: float = 0.3) -> list[float]:
    """Event times (µs) for ``samples`` (one frame, or two split at ``split``)."""
    if split is None:
        frames = [make_frame(x=samples, metadata=META, timestamp=0)]
    else:
        frames = [make_frame(x=samples[:split], metadata=META, timestamp=0),
                  make_frame(x=samples[split:], metadata=META, sequence_id=1,
                             timestamp=round(split * 1e6 / FS))]
    out = run_node(PeakDetector, {"height": 0.5, "refractory": refractory}, frames)
    return [t for f in out for t in f.payload["x"].tolist()]


def signal(peaks: dict[int, float], n: int = 20) -> list[float]:
    return [peaks.get(i, 0.0) for i in range(n)]


@pytest.mark.parametrize("split", [None, 4, 5, 6])
@pytest.mark.parametrize("second", [1.0, 2.0])  # equal, then larger
def test_peaks_exactly_one_refractory_period_apart_are_both_reported(split, second):
    assert peaks_at(signal({2: 1.0, 5: second}), split=split) == [200_000.0, 500_000.0]


@pytest.mark.parametrize("split", [None, 4])
def test_peaks_closer_than_the_refractory_period_are_one_event(split):
    assert peaks_at(signal({2: 1.0, 4: 1.0}), split=split) == [200_000.0]  # equal: the first
    assert peaks_at(signal({2: 1.0, 4: 2.0}), split=split) == [400_000.0]  # the larger wins


def test_a_chain_of_peaks_one_period_apart_all_count():
    assert peaks_at(signal({2: 1.0, 5: 1.0, 8: 1.0, 11: 1.0})) == [
        200_000.0, 500_000.0, 800_000.0, 1_100_000.0]


def test_an_event_is_emitted_as_soon_as_one_refractory_period_has_passed():
    # peak at sample 2; sample 5 (3 samples later) is evaluated once sample 6 arrives: the
    # first frame (samples 0..6) already reports it, not the next one
    x = signal({2: 1.0})
    frames = [make_frame(x=x[:7], metadata=META, timestamp=0),
              make_frame(x=x[7:], metadata=META, sequence_id=1, timestamp=700_000)]
    out = run_node(PeakDetector, {"height": 0.5, "refractory": 0.3}, frames)
    assert [f.payload["x"].tolist() for f in out] == [[200_000.0], []]
