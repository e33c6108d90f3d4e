"""Scale beyond one process: many pipeline instances run by a pluggable backend.

:class:`DistributedPool` is :class:`~streamlab.runtime.PipelinePool` (the one pool: ``execute``,
``join``, ``aclose``/``close``, ``statistics``) with a backend by default; it hands each
instance to a :class:`Backend`:
:class:`InProcessBackend` (the default, this event loop), :class:`RayBackend` (Ray actors,
one whole pipeline instance per actor call) or :class:`FakeBackend` (a controllable test
double). Importing this package imports no optional dependency; Ray is imported when a
RayBackend starts. See docs/distributed.md.
"""

from streamlab.distributed.backend import (
    Backend,
    FakeBackend,
    InProcessBackend,
    InstanceResult,
    InstanceSnapshot,
    PackedFrames,
    RunRequest,
    pack_frames,
    unpack_frames,
)
from streamlab.distributed.pool import DistributedPool, DistributedStatistics
from streamlab.distributed.ray_backend import RayBackend, init_local_ray

__all__ = [
    "Backend",
    "DistributedPool",
    "DistributedStatistics",
    "FakeBackend",
    "InProcessBackend",
    "InstanceResult",
    "InstanceSnapshot",
    "PackedFrames",
    "RayBackend",
    "RunRequest",
    "init_local_ray",
    "pack_frames",
    "unpack_frames",
]
