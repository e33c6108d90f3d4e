"""Pipeline throughput with the dashboard open in a browser vs without (issue 13 target: within
10 %).

    python -m benchmarks.dashboard [--frames 20000] [--repeats 3] [--channels 64]

The pipeline: SineGenerator (``--channels`` channels at 1 kHz, 10 samples per frame, free
running as fast as it can, ``max_frames``) -> IIRFilter (4th-order low-pass) -> Gain -> discard,
unfused (every edge a queue). Three modes, interleaved ``--repeats`` times, median reported:

* ``none``: no server;
* ``server``: the control server and dashboard serving, no client;
* ``client``: a Python WebSocket client (another thread) that reads every update without
  drawing it: the server's cost alone;
* ``browser``: headless Debian chromium (Playwright, ``executable_path``) logged in, watching the
  traces and spectrum of ``gain`` (the server taps it and decimates 64 channels for the page
  at up to 30 updates/s) from before the first frame to the end of the run.

Throughput is frames through the sink per second of the run (the report's duration). The
server runs in the pipeline's event loop, so its work (taps, decimation, sending) is what the
browser costs the pipeline; the browser's own rendering is another process (on this 2-core
machine it competes for the CPU too). Not asserted anywhere (wall-clock, shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import threading
import time
from typing import Any

from streamlab.runtime import AsyncPipeline


def config(frames: int, channels: int) -> dict[str, Any]:
    return {
        "name": "dashboard-bench",
        "pipeline_config": {"channel_capacity": 16, "fusion": False},
        "nodes": [
            {"id": "sine", "type": "SineGenerator",
             "config": {"mode": "free", "max_frames": frames, "frequency": 10.0,
                        "sample_rate": 1000.0, "samples_per_frame": 10,
                        "channels": [f"ch{i:02d}" for i in range(channels)]}},
            {"id": "lowpass", "type": "IIRFilter",
             "config": {"btype": "lowpass", "cutoff": 40.0, "order": 4, "sample_rate": 1000.0}},
            {"id": "gain", "type": "Gain", "config": {"gain": 2.0}},
        ],
        "connections": [{"from": "sine", "to": "lowpass"}, {"from": "lowpass", "to": "gain"}],
    }


class _Client:
    """An aiohttp WebSocket client in a thread, reading updates until ``done`` is set."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token
        self.ready = threading.Event()
        self.done = threading.Event()
        self.stats: dict[str, Any] = {"draws": 0, "traces": 0}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        import json

        import aiohttp

        try:
            async with aiohttp.ClientSession(
                    headers={"Authorization": f"Bearer {self.token}"}) as session:
                ws = await session.ws_connect(self.url + "/api/ws", max_msg_size=0)
                await ws.send_str(json.dumps({"type": "subscribe", "node": "gain",
                                              "width": 840}))
                await asyncio.sleep(0.3)
                self.ready.set()
                while not self.done.is_set():
                    try:
                        msg = await ws.receive(timeout=0.2)
                    except TimeoutError:
                        continue
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        self.stats["traces"] += 1
                await ws.close()
        except BaseException as exc:  # reported by the benchmark
            self.error = exc
            self.ready.set()


class _Browser:
    """A headless chromium in a thread, watching the dashboard until ``done`` is set."""

    def __init__(self, login_url: str) -> None:
        self.login_url = login_url
        self.ready = threading.Event()
        self.done = threading.Event()
        self.stats: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=shutil.which("chromium"),
                                      args=["--no-sandbox"])
                page = b.new_page(viewport={"width": 1600, "height": 900})
                page.goto(self.login_url)
                page.click("#go")
                page.wait_for_selector("#nodes tbody tr[data-node=gain]", timeout=60_000)
                page.click("#nodes tbody tr[data-node=gain]")
                time.sleep(0.5)  # the subscription reaches the server: the tap is open
                self.ready.set()
                self.done.wait(600)
                self.stats = page.evaluate(
                    "() => ({draws: streamlab.draws, traces: streamlab.traceMessages})")
                b.close()
        except BaseException as exc:  # reported by the benchmark
            self.error = exc
            self.ready.set()


async def one(mode: str, frames: int, channels: int) -> dict[str, Any]:
    pipe = AsyncPipeline(config(frames, channels), outputs="discard")
    server: Any = None
    browser: Any = None
    if mode != "none":
        from streamlab.web.server import ControlServer

        server = await ControlServer(pipe, write_token_file=False).start()
    if mode in ("client", "browser"):
        assert server is not None
        browser = (_Browser(server.login_url()) if mode == "browser"
                   else _Client(server.url, server.token))
        await asyncio.get_running_loop().run_in_executor(None, browser.ready.wait, 120)
        if browser.error is not None:
            raise browser.error
    report = await pipe.run(triggers=0)
    out: dict[str, Any] = {"mode": mode, "fps": report.outputs["gain"] / report.duration_s,
                           "seconds": report.duration_s}
    if browser is not None:
        browser.done.set()
        await asyncio.get_running_loop().run_in_executor(None, browser.thread.join, 60)
        assert server is not None
        out.update(browser.stats, web=server.web_stats())
    if server is not None:
        await server.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--channels", type=int, default=64)
    args = ap.parse_args()
    modes = ["none", "server", "client"] + (["browser"] if shutil.which("chromium") else [])
    if "browser" not in modes:
        print("no chromium on PATH: the browser mode is skipped")
    results: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for _ in range(args.repeats):
        for m in modes:
            results[m].append(asyncio.run(one(m, args.frames, args.channels)))
    base = statistics.median(r["fps"] for r in results["none"])
    print(f"{args.channels} channels at 1 kHz, 10 samples/frame, {args.frames} frames, "
          f"median of {args.repeats}:")
    for m in modes:
        fps = statistics.median(r["fps"] for r in results[m])
        line = f"  {m:<8} {fps:10.0f} frames/s  ({fps / base - 1:+.1%} vs none)"
        if m in ("client", "browser"):
            last = results[m][-1]
            pump = statistics.median(r["web"]["pump_s"] / r["seconds"] for r in results[m])
            line += (f"; server pump {pump:.1%} of the run; last run: {last['traces']} trace "
                     f"updates drawn, {last['web']['dropped']} dropped (latest value)")
        print(line)


if __name__ == "__main__":
    main()
