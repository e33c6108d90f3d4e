"""A pipeline and its control server running in a background thread (their own event loop),
so that tests can talk to them over real HTTP, from ctl, schemathesis or a browser."""

from __future__ import annotations

import asyncio
import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

pytest.importorskip("aiohttp", reason="the control API needs aiohttp (pip install 'streamlab[web]')")

from streamlab.runtime.async_pipeline import AsyncPipeline  # noqa: E402
from streamlab.web.server import ControlServer  # noqa: E402


def spec(channels: int = 4, rate: float = 1000.0, per_frame: int = 20, gain: float = 2.0,
         constant: bool = False, **pipeline_config: Any) -> dict[str, Any]:
    """A free-running, paced sine (or a constant 1.0) through a Gain (the node the tests
    retune)."""
    wave = {"type": "ConstantGenerator", "config": {"value": 1.0}} if constant else {
        "type": "SineGenerator", "config": {"frequency": 10.0}}
    return {"name": "live-test", "pipeline_config": {"channel_capacity": 16, **pipeline_config},
            "nodes": [
                {"id": "sine", "type": wave["type"],
                 "config": {**wave["config"], "mode": "free", "realtime": True,
                            "sample_rate": rate, "samples_per_frame": per_frame,
                            "channels": [f"ch{i:02d}" for i in range(channels)]}},
                {"id": "gain", "type": "Gain", "config": {"gain": gain}}],
            "connections": [{"from": "sine", "to": "gain"}]}


class LiveServer:
    """``start()``: pipeline + server in a thread; ``close()`` stops both (bounded)."""

    def __init__(self, config: dict[str, Any], tmp_path: Any, **server_kw: Any) -> None:
        self.config = config
        self.token_file = tmp_path / "control.json"
        self.server_kw = server_kw
        self.ready = threading.Event()
        self.closing = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pipe: AsyncPipeline | None = None
        self.server: ControlServer | None = None
        self.error: BaseException | None = None
        self.sink_values: list[float] = []  # per frame at the sink: its largest |sample|
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            pipe = AsyncPipeline(self.config, outputs="stream")
            server = ControlServer(pipe, token_file=self.token_file, **self.server_kw)
            await server.start()
            await pipe.start()
            self.pipe, self.server, self.loop = pipe, server, asyncio.get_running_loop()
            self.ready.set()
            try:
                async for _, frame in pipe.outputs():
                    self.sink_values.append(float(abs(frame.block()).max()))
                await pipe.join()
                # the server outlives the run until close(), as with --ui-linger
                await asyncio.get_running_loop().run_in_executor(None, self.closing.wait, 60)
            finally:
                await server.stop()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test that waits on ready
            self.error = exc
            self.ready.set()

    def start(self) -> LiveServer:
        self.thread.start()
        assert self.ready.wait(30), "the server did not start"
        if self.error is not None:
            raise self.error
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def token(self) -> str:
        assert self.server is not None
        return self.server.token

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` (a coroutine function or a plain one) on the server's loop."""
        assert self.loop is not None

        async def wrapper() -> Any:
            r = fn(*args)
            return await r if asyncio.iscoroutine(r) else r

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None, auth: bool = True) -> tuple[int, Any]:
        h = {"Content-Type": "application/json"}
        if auth:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def close(self) -> None:
        self.closing.set()
        if self.loop is not None and self.pipe is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.pipe.request_stop)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the pipeline did not stop"


@pytest.fixture
def live(tmp_path):
    servers: list[LiveServer] = []

    def make(config: dict[str, Any] | None = None, **kw: Any) -> LiveServer:
        s = LiveServer(config or spec(), tmp_path / f"s{len(servers)}", **kw)
        s.token_file.parent.mkdir()
        s.start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()
