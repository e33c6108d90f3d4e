"""DistributedPool: :class:`~streamlab.runtime.PipelinePool` with a backend by default.

There is one admission machine, :class:`~streamlab.runtime.PipelinePool` (see its module for
admission, cancellation, failure and close behaviour). ``DistributedPool(config, backend,
max_concurrent)`` is ``PipelinePool(config, max_concurrent, backend=backend or
InProcessBackend())``, kept for its positional argument order and its name:

* with ``backend=None`` it makes an :class:`InProcessBackend` and closes it when it leaves;
  a backend passed in is the caller's to close unless ``close_backend=True``;
* :meth:`execute` tasks give a :class:`~streamlab.runtime.PoolResult` whose ``report`` is
  ``RunReport.to_dict()`` and ``worker`` names where the instance ran;
* :meth:`statistics` gives a :class:`~streamlab.runtime.PoolStatistics`
  (``DistributedStatistics`` is the same class).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from streamlab.config import PipelineSpec
from streamlab.distributed.backend import Backend, InProcessBackend
from streamlab.runtime.pool import PipelinePool, PoolStatistics

__all__ = ["DistributedPool", "DistributedStatistics"]

#: The statistics of any pool (one shape); kept under its old name.
DistributedStatistics = PoolStatistics


class DistributedPool(PipelinePool):
    """A :class:`PipelinePool` whose instances always run on a :class:`Backend`."""

    _kind = "DistributedPool"

    def __init__(
        self,
        config: PipelineSpec | Mapping[str, Any] | str | os.PathLike[str],
        backend: Backend | None = None,
        max_concurrent: int = 4,
        *,
        close_backend: bool | None = None,
        **pipeline_options: Any,
    ) -> None:
        owned = backend is None
        super().__init__(config, max_concurrent,
                         backend=InProcessBackend() if backend is None else backend,
                         close_backend=owned if close_backend is None else close_backend,
                         **pipeline_options)
