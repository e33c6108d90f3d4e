"""The built-in node library. Importing it registers every built-in node type.

One module per family: ``generators`` (sources), ``basic`` (per-frame transforms).
Nodes here use only StreamLab's public API, as a third-party node package would.
"""

from streamlab.nodes import basic, generators
from streamlab.nodes.basic import Gain, Passthrough
from streamlab.nodes.generators import SineGenerator

__all__ = ["Gain", "Passthrough", "SineGenerator", "basic", "generators"]
