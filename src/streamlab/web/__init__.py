"""The control API, ``streamlab ctl``'s server side and the web dashboard (issue 13).

:class:`~streamlab.web.server.ControlServer` runs in the pipeline's process and event loop
(``streamlab run CONFIG --ui [PORT]`` or ``--control [PORT]``; needs ``pip install
'streamlab[web]'``, aiohttp). See docs/dashboard.md for the security model.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ControlServer"]


def __getattr__(name: str) -> Any:
    if name == "ControlServer":  # lazily: importing streamlab.web needs no aiohttp
        from streamlab.web.server import ControlServer

        return ControlServer
    raise AttributeError(name)
