"""Basic per-frame transforms: Gain, Passthrough."""

from __future__ import annotations

from pydantic import Field

from streamlab.frame import DataFrame
from streamlab.node import NodeConfig, ProcessingNode
from streamlab.registry import register_node

__all__ = ["Gain", "Passthrough"]


@register_node
class Gain(ProcessingNode):
    """Multiply every channel by a constant gain.

    >>> from streamlab.testing import run_node, make_frame
    >>> run_node(Gain, {"gain": 2.0}, [make_frame(x=[1.0, -0.5])])[0].payload["x"].tolist()
    [2.0, -1.0]
    """

    class Config(NodeConfig):
        gain: float = Field(..., description="Factor applied to every sample.")

    def on_create(self, config: Config) -> None:
        self.config = config
        self.gain = config.gain

    def process(self, frame: DataFrame) -> DataFrame:
        p = frame.payload
        if p.is_block:
            return frame.with_block(p.block() * self.gain)
        return frame.with_payload({n: a * self.gain for n, a in p.items()})


@register_node
class Passthrough(ProcessingNode):
    """Pass frames through unchanged (a tap point for metrics, or a placeholder).

    >>> from streamlab.testing import run_node, make_frame
    >>> f = make_frame(x=[1.0])
    >>> run_node(Passthrough, {}, [f])[0] is f
    True
    """

    def process(self, frame: DataFrame) -> DataFrame:
        return frame
