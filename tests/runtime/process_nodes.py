"""Node classes for process-executor tests: importable at module level, as the worker needs."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np

from streamlab import DataFrame, NodeConfig, ProcessingNode
from streamlab.errors import EndOfStream


class RunningSum(ProcessingNode):
    """Cumulative sum per channel, state carried across frames; fails where told."""

    class Config(NodeConfig):
        fail_on: list[int] = []
        kill_on: int = -1          # the worker kills itself (SIGKILL) at this sequence id
        end_on: int = -1           # raises EndOfStream at this sequence id
        delay: float = 0.0         # seconds slept per frame (for forced stops)

    def on_create(self, config):
        self.config = config
        self.total = None

    def process(self, frame: DataFrame) -> DataFrame:
        seq = frame.sequence_id
        if seq == self.config.kill_on:
            os.kill(os.getpid(), signal.SIGKILL)
        if seq == self.config.end_on:
            raise EndOfStream("no more")
        if seq in self.config.fail_on:
            raise KeyError(f"no luck at {seq}")
        if self.config.delay:
            time.sleep(self.config.delay)
        block = frame.block()
        if self.total is None:
            self.total = np.zeros(block.shape[0])
        out = np.cumsum(block, axis=1) + self.total[:, None]
        self.total = out[:, -1].copy()
        return frame.with_block(out).with_metadata(worker="yes")


class KeepInputs(ProcessingNode):
    """Keeps every input frame (state that holds input slots); outputs input + previous input."""

    def on_create(self, config):
        self.config = config
        self.kept: list[DataFrame] = []

    def process(self, frame: DataFrame) -> DataFrame:
        prev = self.kept[-1].block() if self.kept else np.zeros_like(frame.block())
        self.kept.append(frame)
        # every kept input must still hold its own data (slots not reused under it)
        for f in self.kept:
            if float(f.block()[0, 0]) != float(f.sequence_id):
                raise AssertionError(f"input of frame {f.sequence_id} was overwritten")
        return frame.with_block(frame.block() + prev)


class Shapeshifter(ProcessingNode):
    """Outputs that cannot go through a block slot: ragged channels, lists, larger blocks."""

    def process(self, frame: DataFrame):
        seq = frame.sequence_id
        x = frame.block()[0]
        if seq % 3 == 0:
            return frame.with_channels({"short": x[:3], "long": x})
        if seq % 3 == 1:
            return [frame.with_metadata(part="a"), frame.with_metadata(part="b")]
        return frame.with_block(np.tile(frame.block(), (1, 4)))


class Scale(ProcessingNode):
    """Multiplies every channel by 2 (works on dict payloads too)."""

    def process(self, frame: DataFrame) -> DataFrame:
        return frame.with_channels({n: a * 2 for n, a in frame.payload.items()})


class AsyncTriple(ProcessingNode):
    """An async node: multiplies by 3 after yielding to its event loop."""

    async def process(self, frame: DataFrame) -> DataFrame:
        await asyncio.sleep(0)
        return frame.with_block(frame.block() * 3)


class Busy(ProcessingNode):
    """Sleeps ``delay`` s per frame; writes the worker's pid to ``pid_file`` once it is busy."""

    class Config(NodeConfig):
        pid_file: str
        delay: float = 2.0

    def on_create(self, config):
        self.config = config

    def process(self, frame: DataFrame) -> DataFrame:
        if not os.path.exists(self.config.pid_file):
            tmp = self.config.pid_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(str(os.getpid()))
            os.replace(tmp, self.config.pid_file)  # whole or absent, never half written
        time.sleep(self.config.delay)
        return frame
