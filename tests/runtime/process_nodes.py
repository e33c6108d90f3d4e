"""Node classes for process-executor tests: importable at module level, as the worker needs."""

from __future__ import annotations

import numpy as np

from streamlab import DataFrame, NodeConfig, ProcessingNode


class RunningSum(ProcessingNode):
    """Cumulative sum per channel, state carried across frames; fails where told."""

    class Config(NodeConfig):
        fail_on: list[int] = []

    def on_create(self, config):
        self.config = config
        self.total = None

    def process(self, frame: DataFrame) -> DataFrame:
        if frame.sequence_id in self.config.fail_on:
            raise KeyError(f"no luck at {frame.sequence_id}")
        block = frame.block()
        if self.total is None:
            self.total = np.zeros(block.shape[0])
        out = np.cumsum(block, axis=1) + self.total[:, None]
        self.total = out[:, -1].copy()
        return frame.with_block(out).with_metadata(worker="yes")
