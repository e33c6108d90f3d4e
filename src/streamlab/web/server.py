"""The control API and dashboard server, run inside the pipeline's process and event loop.

:class:`ControlServer` serves, on **127.0.0.1** unless another address is given:

* the JSON API under ``/api`` (see :mod:`streamlab.web.openapi`, served at
  ``/api/openapi.json``): graph, node configs and schemas, live statistics, parameter and
  topology changes, stop;
* with ``ui=True``, the dashboard page (``/``: plain JS and canvas, every asset in the package)
  and its WebSocket ``/api/ws``.

**Security model.** A random token (``secrets.token_urlsafe(32)``) is required on every
request, as ``Authorization: Bearer TOKEN`` or as the session cookie a browser gets from the
one-time login URL (``/login?code=...``: its GET page posts the code back; the code works
once). The token is printed at start and written with the URL to a file of mode 0600
(:attr:`ControlServer.token_file`), removed when the server stops. The ``Host`` header must
name the bound address, ``localhost`` or ``127.0.0.1``/``[::1]`` with the server's port (a DNS
rebinding page has another host name), and an ``Origin`` header, when present, must be this
server's own origin (no cross-site request, WebSocket included). GET never changes anything:
changes are PATCH, PUT, POST and DELETE.

**Live data.** One pump task, every ``1/fps`` s, moves the frames the taps saw into per-node
:class:`~streamlab.web.traces.TraceBuffer` rings, then offers each WebSocket client the newest
decimated trace (and, less often, spectrum and statistics). A client whose previous message
is still being written gets nothing this time: the update is counted as dropped for it
(latest-value semantics), so a slow or stalled browser never holds up the pipeline.

**Changes.** Parameter changes are applied by the runtime's ``update()``, which validates them
against the node's current config model (422 with the JSON paths relative to the request
body, nothing changed); topology
changes call ``replace_node()``, ``add_node()``, ``remove_node()`` (docs/live.md). Everything
the API shows comes from the runtime too: ``graph()``, ``node_config()``, ``node_schema()``,
``config_version()``, ``changes`` and ``tap(node, history=512)`` for the traces. ``stop()`` of the server cancels its tasks, closes the WebSockets, removes the
token file; it is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import secrets
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from streamlab.errors import ConfigError, StreamLabError, missing_extra
from streamlab.runtime.live import Tap
from streamlab.web.openapi import openapi_document
from streamlab.web.traces import TraceBuffer, encode

__all__ = ["ControlServer", "default_token_file"]

log = logging.getLogger("streamlab.web")

_STATIC = {"app.js": "text/javascript", "style.css": "text/css", "index.html": "text/html"}
_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
_HISTORY = 512  # frames a trace tap keeps between two pump ticks (references only)


def _web() -> Any:
    try:
        from aiohttp import web
    except ImportError as exc:
        raise missing_extra("aiohttp", "web") from exc
    return web


def default_token_file() -> Path:
    """Where the token file goes: ``$STREAMLAB_CONTROL_FILE``, else
    ``$XDG_RUNTIME_DIR/streamlab/control.json``, else ``~/.streamlab/control.json``."""
    env = os.environ.get("STREAMLAB_CONTROL_FILE")
    if env:
        return Path(env)
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "streamlab" if runtime else Path.home() / ".streamlab"
    return base / "control.json"


def _finite(x: Any) -> Any:
    """JSON-safe: NaN and infinities become None, recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


_NODE_PATH = re.compile(r"^\$\.nodes\[\d+\]")
_NODE_SUFFIX = re.compile(r" \[node '[^']*'\]$")


def _problems(exc: Exception, body_at: str = "", spec_at: str = "") -> list[dict[str, str]]:
    """The error's problems with paths relative to the request body: the runtime names
    ``$.nodes[i]<body_at>...`` of the pipeline's config (``body_at=".config"`` for a
    config change), the API the JSON that was sent, where the node spec is at ``spec_at``
    (``".spec"`` for an added node; its ``id`` is at the top). The "[node 'x']" suffix of
    the runtime's messages is dropped: the URL names the node."""
    out = []
    for p in getattr(exc, "problems", None) or []:
        path = str(getattr(p, "path", "$"))
        m = _NODE_PATH.match(path)
        if m is not None and path[m.end():].startswith(body_at):
            rest = path[m.end() + len(body_at):]
            path = "$" + ("" if rest == ".id" else spec_at) + rest
        out.append({"path": path,
                    "message": _NODE_SUFFIX.sub("", str(getattr(p, "message", p)))})
    return out


class _Client:
    """One WebSocket: what it watches and how its updates fared."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.node: str | None = None
        self.width = 800
        self.seconds = 5.0
        self.sending: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self.error: str | None = None


class _Watched:
    """A tapped node, shared by the clients that watch it."""

    def __init__(self, tap: Tap) -> None:
        self.tap = tap
        self.buffer = TraceBuffer()
        self.seen = 0
        self.users = 0
        self.missed = 0  # frames the tap saw that the pump could not fetch (fell behind)


class ControlServer:
    """See the module docstring. ``port=0`` picks a free port."""

    def __init__(self, pipe: Any, *, host: str = "127.0.0.1", port: int = 0,
                 ui: bool = True, token: str | None = None,
                 token_file: str | os.PathLike[str] | None = None, fps: float = 30.0,
                 write_token_file: bool = True) -> None:
        self.pipe = pipe
        self.host = host
        self.port = port
        self.ui = ui
        self.token = token or secrets.token_urlsafe(32)
        self.token_file = Path(token_file) if token_file else default_token_file()
        self.write_token_file = write_token_file
        self.fps = fps
        self._codes: set[str] = set()
        self._runner: Any = None
        self._clients: set[_Client] = set()
        self._watched: dict[str, _Watched] = {}
        self._pump: asyncio.Task[None] | None = None
        self._stats_cache: dict[str, Any] | None = None
        self._stats_at = 0.0
        self._collector: Any = None
        self._monitor: Any = None
        self.sent = 0
        self.dropped = 0
        self.pump_seconds = 0.0  # time the pump took from the pipeline's event loop
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def cookie_name(self) -> str:
        # Cookies are not isolated by port: one name per port keeps two servers apart.
        return f"streamlab_{self.port}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def login_url(self) -> str:
        """A new one-time URL that gives a browser the session cookie."""
        code = secrets.token_urlsafe(24)
        self._codes.add(code)
        return f"{self.url}/login?code={code}"

    async def start(self) -> ControlServer:
        """Bind and serve; writes the token file. OSError if the port cannot be bound."""
        web = _web()
        from streamlab.metrics.collector import MetricsCollector
        from streamlab.metrics.monitor import PipelineMonitor

        self._collector = MetricsCollector()
        self._collector.register(self.pipe)
        self._monitor = PipelineMonitor(self._collector)
        app = web.Application(middlewares=[self._guard], client_max_size=1 << 20)
        r = app.router
        r.add_get("/api", self._index)
        r.add_get("/api/openapi.json", self._openapi)
        r.add_get("/api/graph", self._graph)
        r.add_get("/api/stats", self._stats)
        r.add_get("/api/changes", self._changes)
        r.add_get("/api/nodes", self._nodes)
        r.add_post("/api/nodes", self._add_node)
        r.add_put("/api/nodes/{node}", self._replace_node)
        r.add_delete("/api/nodes/{node}", self._remove_node)
        r.add_get("/api/nodes/{node}/config", self._node_config)
        r.add_patch("/api/nodes/{node}/config", self._update)
        r.add_get("/api/nodes/{node}/schema", self._node_schema)
        r.add_post("/api/stop", self._stop)
        r.add_get("/favicon.ico", self._no_icon)
        r.add_get("/login", self._login_page)
        r.add_post("/login", self._login)
        if self.ui:
            r.add_get("/", self._page)
            r.add_get("/static/{name}", self._static)
            r.add_get("/api/ws", self._ws)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        sockets = site._server.sockets if site._server is not None else []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        if self.write_token_file:
            self._write_token_file()
        if self.ui:
            self._pump = asyncio.create_task(self._pump_loop(), name="streamlab:web-pump")
        return self

    def _write_token_file(self) -> None:
        path = self.token_file
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = {"url": self.url, "token": self.token, "pid": os.getpid(),
                "pipeline": getattr(self.pipe, "name", "")}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing file keeps its old mode otherwise
            os.write(fd, json.dumps(data).encode())
        finally:
            os.close(fd)

    async def stop(self) -> None:
        """Stop serving (idempotent): tasks cancelled, sockets closed, taps and file removed."""
        if self._stopped:
            return
        self._stopped = True
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        for c in list(self._clients):
            if c.sending is not None:
                c.sending.cancel()
            with contextlib.suppress(Exception):  # a peer already gone: nothing to close
                await asyncio.wait_for(c.ws.close(), 1.0)
        for w in self._watched.values():
            w.tap.close()
        self._watched.clear()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.write_token_file:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(self.token_file.read_text()).get("token") == self.token:
                    self.token_file.unlink()

    async def __aenter__(self) -> ControlServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # -- guard: host, origin, token ----------------------------------------------------------
    def _allowed_hosts(self) -> set[str]:
        p = self.port
        hosts = {f"127.0.0.1:{p}", f"localhost:{p}", f"[::1]:{p}"}
        hosts.add(f"[{self.host}]:{p}" if ":" in self.host else f"{self.host}:{p}")
        return hosts

    def _authorized(self, request: Any) -> bool:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and secrets.compare_digest(
                auth[7:].strip().encode(), self.token.encode()):
            return True
        cookie = request.cookies.get(self.cookie_name)
        return bool(cookie) and secrets.compare_digest(cookie.encode(), self.token.encode())

    @property
    def _guard(self) -> Any:
        web = _web()

        @web.middleware
        async def guard(request: Any, handler: Any) -> Any:
            host = (request.headers.get("Host") or "").lower()
            if host not in self._allowed_hosts():
                return self._error(403, f"Host {host!r} is not this server's address")
            origin = request.headers.get("Origin")
            if origin is not None and origin.lower() not in {f"http://{h}" for h in
                                                               self._allowed_hosts()}:
                return self._error(403, f"Origin {origin!r} is not allowed")
            if request.path != "/login" and not self._authorized(request):
                return self._error(401, "a token is required: Authorization: Bearer TOKEN "
                                   "(see the token file), or open the login URL printed at start")
            try:
                resp = await handler(request)
            except web.HTTPException as exc:
                if exc.status >= 400:  # aiohttp's own 404/405: the API's JSON error form
                    return self._error(exc.status, exc.reason)
                raise
            resp.headers.setdefault("Cache-Control", "no-store")
            resp.headers.setdefault("X-Content-Type-Options", "nosniff")
            resp.headers.setdefault("Referrer-Policy", "same-origin")  # no-referrer makes a form post send Origin: null
            resp.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; connect-src 'self'; "
                                    "frame-ancestors 'none'")
            return resp

        return guard

    def _error(self, status: int, message: str,
               problems: list[dict[str, str]] | None = None) -> Any:
        body: dict[str, Any] = {"error": message}
        if problems:
            body["problems"] = problems
        return _web().json_response(body, status=status)

    def _json(self, data: Any, status: int = 200) -> Any:
        return _web().json_response(_finite(data), status=status,
                                    dumps=lambda o: json.dumps(o, default=str))

    # -- login --------------------------------------------------------------------------------
    async def _login_page(self, request: Any) -> Any:
        """GET: a page that posts the code back (GET changes nothing, not even a session)."""
        code = request.query.get("code", "")
        html = ("<!doctype html><meta charset=utf-8><title>StreamLab login</title>"
                "<form method=post action=/login>"
                f"<input type=hidden name=code value=\"{_attr(code)}\">"
                "<button id=go>Open the StreamLab dashboard</button></form>")
        return _web().Response(text=html, content_type="text/html")

    async def _login(self, request: Any) -> Any:
        web = _web()
        form = await request.post()
        code = str(form.get("code", ""))
        if code not in self._codes:
            return self._error(401, "this login code is unknown or was already used: "
                               "use the token, or ask for a new login URL")
        self._codes.discard(code)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(self.cookie_name, self.token, httponly=True, samesite="Strict", path="/")
        raise resp

    async def _no_icon(self, request: Any) -> Any:
        return _web().Response(status=204)

    # -- pages --------------------------------------------------------------------------------
    async def _page(self, request: Any) -> Any:
        return self._asset("index.html")

    async def _static(self, request: Any) -> Any:
        name = request.match_info["name"]
        if name not in _STATIC:
            return self._error(404, f"no asset {name!r}")
        return self._asset(name)

    def _asset(self, name: str) -> Any:
        text = resources.files("streamlab.web").joinpath("static", name).read_text("utf-8")
        return _web().Response(text=text, content_type=_STATIC[name], charset="utf-8")

    # -- read-only endpoints ----------------------------------------------------------------
    async def _index(self, request: Any) -> Any:
        return self._json({"pipeline": self.pipe.name, "state": self.pipe.state,
                           "openapi": "/api/openapi.json"})

    async def _openapi(self, request: Any) -> Any:
        from streamlab import __version__

        return self._json(openapi_document(__version__, self.cookie_name))

    async def _graph(self, request: Any) -> Any:
        return self._json(self.pipe.graph())

    async def _nodes(self, request: Any) -> Any:
        g = self.pipe.graph()
        return self._json([{"id": n["id"], "type": n["type"], "version": n.get("version", 0)}
                           for n in g["nodes"]])

    def _node_type(self, node_id: str) -> str:
        for n in self.pipe.graph()["nodes"]:
            if n["id"] == node_id:
                return str(n["type"])
        self.pipe.node_config(node_id)  # raises the runtime's NodeNotFound
        raise AssertionError(node_id)

    async def _node_config(self, request: Any) -> Any:
        node = request.match_info["node"]
        try:
            return self._json({"node": node, "type": self._node_type(node),
                               "version": self.pipe.config_version(node),
                               "config": self.pipe.node_config(node)})
        except KeyError as exc:
            return self._error(404, str(exc))

    async def _node_schema(self, request: Any) -> Any:
        node = request.match_info["node"]
        try:
            return self._json(self.pipe.node_schema(node))
        except KeyError as exc:
            return self._error(404, str(exc))

    async def _changes(self, request: Any) -> Any:
        return self._json([c.to_dict() for c in self.pipe.changes])

    def stats(self) -> dict[str, Any]:
        """The live statistics (rates over the last half second at most)."""
        now = time.monotonic()
        if self._stats_cache is None or now - self._stats_at >= 0.5:
            report = self._monitor.update()
            snap = report.snapshot.pipelines.get(self.pipe.name)
            rows = []
            for r in report.rows:
                if r.pipeline != self.pipe.name:
                    continue
                d = asdict(r)
                d["version"] = _version(self.pipe, r.node)
                rows.append(d)
            edges = [asdict(e) for e in snap.edges] if snap is not None else []
            self._stats_cache = {
                "pipeline": self.pipe.name, "state": self.pipe.state,
                "duration_s": snap.duration_s if snap is not None else 0.0,
                "nodes": rows, "edges": edges}
            self._stats_at = now
        return {**self._stats_cache, "state": self.pipe.state, "web": self.web_stats()}

    def web_stats(self) -> dict[str, Any]:
        return {"clients": len(self._clients),
                "sent": self.sent + sum(c.sent for c in self._clients),
                "dropped": self.dropped + sum(c.dropped for c in self._clients),
                "pump_s": self.pump_seconds}

    async def _stats(self, request: Any) -> Any:
        return self._json(self.stats())

    # -- changes ------------------------------------------------------------------------------
    async def _body(self, request: Any) -> Any:
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise _BadBody(f"the body is not JSON: {exc}") from None

    def _running(self) -> Any:
        if self.pipe.state != "running":
            return self._error(409, f"pipeline {self.pipe.name!r} is {self.pipe.state}, "
                               "not running")
        return None

    async def _apply(self, method: str, *args: Any, status: int = 200, body_at: str = "",
                     spec_at: str = "", **kw: Any) -> Any:
        fn = getattr(self.pipe, method)
        not_running = self._running()
        if not_running is not None:
            return not_running
        try:
            record = await fn(*args, **kw)
        except ConfigError as exc:
            return self._error(422, f"node {args[0]!r}: invalid change: nothing was changed",
                               _problems(exc, body_at, spec_at))
        except KeyError as exc:
            return self._error(404, str(exc))
        except StreamLabError as exc:
            return self._error(422, str(exc), _problems(exc, body_at, spec_at))
        return self._json(record.to_dict(), status=status)

    async def _update(self, request: Any) -> Any:
        node = request.match_info["node"]
        try:
            changes = await self._body(request)
        except _BadBody as exc:
            return self._error(400, str(exc))
        if not isinstance(changes, dict):
            return self._error(400, "the body must be a JSON object of settings to change, "
                               f"got {type(changes).__name__}")
        missing = self._missing(node)
        if missing is not None:
            return missing
        return await self._apply("update", node, changes, body_at=".config")

    async def _replace_node(self, request: Any) -> Any:
        node = request.match_info["node"]
        try:
            spec = await self._body(request)
        except _BadBody as exc:
            return self._error(400, str(exc))
        problem = _spec_problem(spec)
        if problem:
            return self._error(400, problem)
        missing = self._missing(node)
        if missing is not None:
            return missing
        return await self._apply("replace_node", node, spec)

    async def _add_node(self, request: Any) -> Any:
        try:
            body = await self._body(request)
        except _BadBody as exc:
            return self._error(400, str(exc))
        if not isinstance(body, dict):
            return self._error(400, "the body must be a JSON object {id, spec, after, before}")
        node, spec, after, before = (body.get("id"), body.get("spec"), body.get("after"),
                                     body.get("before"))
        if not isinstance(node, str) or not node or not isinstance(after, str) or not after \
                or not (before is None or isinstance(before, str)):
            return self._error(400, "id and after must be node ids (strings), before a node "
                               "id or null")
        problem = _spec_problem(spec)
        if problem:
            return self._error(400, problem)
        missing = self._missing(after, before)
        if missing is not None:
            return missing
        return await self._apply("add_node", node, spec, after=after, before=before,
                                 status=201, spec_at=".spec")

    async def _remove_node(self, request: Any) -> Any:
        node = request.match_info["node"]
        missing = self._missing(node)
        if missing is not None:
            return missing
        return await self._apply("remove_node", node)

    def _missing(self, *nodes: str | None) -> Any:
        """A 404 answer (the runtime's NodeNotFound message) for the first unknown node."""
        for node in nodes:
            if node is not None:
                try:
                    self.pipe.config_version(node)
                except KeyError as exc:
                    return self._error(404, str(exc))
        return None

    async def _stop(self, request: Any) -> Any:
        if self.pipe.state in ("created", "running"):
            self.pipe.request_stop()
        return self._json({"state": self.pipe.state}, status=202)

    # -- WebSocket: latest-value live data ---------------------------------------------------
    async def _ws(self, request: Any) -> Any:
        web = _web()
        # No compression: deflating 100s of kB per update costs more than loopback bandwidth.
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=1 << 16, compress=False)
        await ws.prepare(request)
        client = _Client(ws)
        self._clients.add(client)
        try:
            self._offer(client, {"type": "hello", "pipeline": self.pipe.name,
                                 "graph": self.pipe.graph()})
            async for msg in ws:
                if msg.type != web.WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    continue  # not JSON: ignored (the page only sends JSON)
                if isinstance(data, dict):
                    self._on_message(client, data)
        finally:
            self._clients.discard(client)
            self.sent += client.sent
            self.dropped += client.dropped
            if client.sending is not None and not client.sending.done():
                client.sending.cancel()
            self._unwatch(client)
        return ws

    def _on_message(self, client: _Client, data: dict[str, Any]) -> None:
        if data.get("type") == "subscribe":
            node = data.get("node")
            width, seconds = data.get("width", 800), data.get("seconds", 5.0)
            if isinstance(width, (int, float)) and 16 <= width <= 4096:
                client.width = int(width)
            if isinstance(seconds, (int, float)) and 0.1 <= seconds <= 60:
                client.seconds = float(seconds)
            if node != client.node:
                self._unwatch(client)
                client.error = None
                if isinstance(node, str) and node:
                    try:
                        self._watch(client, node)
                    except (KeyError, StreamLabError) as exc:
                        client.error = str(exc)
                        self._offer(client, {"type": "error", "message": str(exc)})

    def _watch(self, client: _Client, node: str) -> None:
        w = self._watched.get(node)
        if w is None:
            w = self._watched[node] = _Watched(self.pipe.tap(node, history=_HISTORY))
        w.users += 1
        client.node = node

    def _unwatch(self, client: _Client) -> None:
        node, client.node = client.node, None
        w = self._watched.get(node) if node else None
        if w is not None:
            w.users -= 1
            if w.users <= 0:
                w.tap.close()
                del self._watched[node]  # type: ignore[arg-type]

    def _offer(self, client: _Client, message: Any) -> bool:
        """Send ``message`` (or a list of messages, in order) unless the previous update is
        still being written: then the update is dropped and counted. Never waits."""
        if client.sending is not None and not client.sending.done():
            client.dropped += 1
            return False
        batch = message if isinstance(message, list) else [message]
        client.sending = asyncio.create_task(self._send(client, batch))
        return True

    async def _send(self, client: _Client, batch: list[Any]) -> None:
        try:
            for message in batch:
                if isinstance(message, bytes):
                    await client.ws.send_bytes(message)
                else:
                    await client.ws.send_str(json.dumps(_finite(message), default=str))
            client.sent += 1
        except (ConnectionError, RuntimeError):
            client.dropped += 1  # the peer went away mid-send: its loop ends the client

    def _fetch(self, w: _Watched) -> None:
        before = w.seen
        frames, w.seen = w.tap.frames_since(w.seen)
        w.missed += max(0, w.seen - before - len(frames))
        w.buffer.extend(frames)

    async def _pump_loop(self) -> None:
        period = 1.0 / self.fps
        tick = 0
        while True:
            await asyncio.sleep(period)
            tick += 1
            if not self._clients:
                continue
            t0 = time.perf_counter()
            try:
                self._pump_once(tick)
            finally:
                self.pump_seconds += time.perf_counter() - t0

    def _pump_once(self, tick: int) -> None:
        """One tick: fetch tapped frames, offer each client its next update (never waits)."""
        for w in self._watched.values():
            self._fetch(w)
        cache: dict[tuple[str, int, float], bytes] = {}
        spectra: dict[str, bytes] = {}
        want_spectrum = tick % 10 == 0
        want_stats = tick % max(1, int(self.fps / 2)) == 0
        stats = self.stats() if want_stats else None
        for c in list(self._clients):
            batch: list[Any] = [{"type": "stats", **stats}] if stats is not None else []
            watched = self._watched.get(c.node) if c.node is not None else None
            if watched is not None:
                buf = watched.buffer
                node = c.node or ""
                if want_spectrum:
                    msg = spectra.get(node)
                    if msg is None:
                        h, d = buf.spectrum()
                        msg = spectra[node] = encode({**h, "node": node}, d)
                    batch.append(msg)
                key = (node, c.width, c.seconds)
                msg = cache.get(key)
                if msg is None:
                    h, d = buf.decimate(c.width, c.seconds)
                    msg = cache[key] = encode({**h, "node": c.node, "missed": watched.missed,
                                               "skipped": buf.skipped}, d)
                batch.append(msg)
            if batch:
                self._offer(c, batch)


class _BadBody(Exception):
    pass


def _spec_problem(spec: Any) -> str | None:
    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str) or not spec["type"]:
        return 'the node spec must be a JSON object {"type": ..., "config": {...}}'
    if "config" in spec and not isinstance(spec["config"], dict):
        return "the node spec's config must be a JSON object"
    return None


def _version(pipe: Any, node: str) -> int:
    try:
        return int(pipe.config_version(node))
    except KeyError:
        return 0


def _attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))
