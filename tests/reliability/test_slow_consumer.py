"""A fast source into a slow sink: bounded queue, bounded memory, the source mostly blocked."""

from __future__ import annotations

import tracemalloc

from streamlab import AsyncPipeline
from tests.reliability.harness import run_guarded


def config(frames: int) -> dict:
    # 10 kHz source (one sample per frame, not paced: at least as fast as 10 kHz) into a
    # 1 kHz sink (1 ms per frame), capacity 16
    return {
        "name": "slow-consumer",
        "pipeline_config": {"channel_capacity": 16, "debug": True},
        "nodes": [
            {"id": "src", "type": "SineGenerator",
             "config": {"mode": "free", "max_frames": frames, "frequency": 50.0,
                        "sample_rate": 10_000.0, "samples_per_frame": 1}},
            {"id": "sink", "type": "RelSleep", "config": {"delay": 0.001}},
        ],
        "connections": [{"from": "src", "to": "sink"}],
    }


def run(frames: int) -> tuple[object, int]:
    async def go():
        pipe = AsyncPipeline(config(frames), outputs="discard")
        await pipe.start()
        report = await pipe.join()
        return report

    tracemalloc.start()
    try:
        report = run_guarded(go)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return report, peak


def test_queue_depth_memory_and_blocking_are_bounded():
    small, peak_small = run(100)
    report, peak = run(400)
    ch = report.channels["src->sink"]
    assert ch.capacity == 16 and ch.peak_depth <= 16
    assert ch.sent == ch.received == 400 and ch.dropped == 0
    assert report.fates()["sink"]["delivered"] == 400
    # the source spends most of the run waiting for room (backpressure, not buffering)
    assert ch.blocked_seconds > 0.5 * report.duration_s
    # memory does not grow with the number of frames: 4x the frames, about the same peak
    assert peak < 2 * peak_small + 256 * 1024
