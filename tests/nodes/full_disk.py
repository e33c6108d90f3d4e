"""FullDisk: a stand-in for AppendFile's write call on a disk that fills up."""
from __future__ import annotations

import errno
import os


class FullDisk:
    """Replaces AppendFile's write call: ``budget`` bytes fit, then a short write, then ENOSPC
    (what a real full disk does)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __call__(self, fd: int, data) -> int:
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = os.write(fd, bytes(data[:self.budget]))
        self.budget -= n
        return n
