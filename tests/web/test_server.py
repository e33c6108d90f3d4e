"""The control API over real HTTP: token, Host/Origin checks, read-only GETs, validation,
changes through the live runtime (AsyncPipeline.update etc.), the token file,
the one-time login, and latest-value WebSocket updates."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
import urllib.request

import pytest

from tests.web.conftest import spec


def test_every_request_needs_the_token(live):
    s = live()
    for path in ("/api", "/api/graph", "/api/stats", "/api/openapi.json", "/", "/static/app.js",
                 "/api/nodes/gain/config"):
        status, body = s.request("GET", path, auth=False)
        assert status == 401, path
        assert "token" in body["error"]
    status, _ = s.request("GET", "/api", headers={"Authorization": "Bearer wrong"}, auth=False)
    assert status == 401
    status, _ = s.request("POST", "/api/stop", auth=False)
    assert status == 401
    assert s.pipe.state == "running"


def test_host_and_origin_are_checked(live):
    s = live()
    # DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1
    status, body = s.request("GET", "/api", headers={"Host": f"evil.example:{s.server.port}"})
    assert status == 403 and "Host" in body["error"]
    status, body = s.request("POST", "/api/stop", headers={"Origin": "http://evil.example"})
    assert status == 403 and "Origin" in body["error"]
    assert s.pipe.state == "running"
    status, _ = s.request("GET", "/api", headers={"Host": f"localhost:{s.server.port}",
                                                  "Origin": f"http://localhost:{s.server.port}"})
    assert status == 200


def test_gets_change_nothing(live):
    s = live()
    before = s.request("GET", "/api/nodes/gain/config")[1]
    for path in ("/api", "/api/graph", "/api/stats", "/api/changes", "/api/nodes",
                 "/api/nodes/gain/schema", "/api/openapi.json"):
        assert s.request("GET", path)[0] == 200, path
    assert s.request("GET", "/api/stop")[0] == 405  # stop is a POST only
    assert s.pipe.state == "running"
    assert s.request("GET", "/api/nodes/gain/config")[1] == before


def test_graph_config_schema_and_stats(live):
    s = live(spec(fusion=False))
    status, g = s.request("GET", "/api/graph")
    assert status == 200
    assert [(n["id"], n["type"], n["version"]) for n in g["nodes"]] == [
        ("sine", "SineGenerator", 0), ("gain", "Gain", 0)]
    (edge,) = g["edges"]
    assert (edge["from"], edge["to"], edge["capacity"], edge["fused"]) == ("sine", "gain", 16, False)
    assert s.request("GET", "/api/nodes/gain/config")[1] == {
        "node": "gain", "type": "Gain", "version": 0, "config": {"gain": 2.0}}
    schema = s.request("GET", "/api/nodes/gain/schema")[1]
    assert schema["properties"]["gain"]["type"] == "number" and schema["required"] == ["gain"]
    deadline = time.monotonic() + 20
    while True:  # statistics are live: the sink's count grows
        stats = s.request("GET", "/api/stats")[1]
        gain = next(r for r in stats["nodes"] if r["node"] == "gain")
        if gain["received"] >= 3:
            break
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert gain["fates"]["delivered"] >= 1 and gain["rate_hz"] > 0
    assert stats["state"] == "running"
    assert stats["web"] == {"clients": 0, "sent": 0, "dropped": 0, "pump_s": 0.0}
    assert s.request("GET", "/api/nodes/nope/config") == (
        404, {"error": "pipeline 'live-test' has no node 'nope'; nodes: sine, gain"})
    assert s.request("GET", "/api/nodes/nope/schema")[0] == 404


def test_a_bad_change_is_refused_with_its_path_and_changes_nothing(live):
    s = live()
    status, body = s.request("PATCH", "/api/nodes/gain/config", {"gain": "abc"})
    assert status == 422
    assert body["problems"] == [{"path": "$.gain", "message": "Input should be a valid number, "
                                 "unable to parse string as a number (got 'abc')"}]
    status, body = s.request("PATCH", "/api/nodes/gain/config", {"gian": 3})
    assert status == 422 and body["problems"][0]["path"] == "$.gian"
    assert s.request("PATCH", "/api/nodes/gain/config", [1, 2])[0] == 400
    assert s.request("PATCH", "/api/nodes/gain/config", b"{not json")[0] == 400
    assert s.request("PATCH", "/api/nodes/nope/config", {"gain": 1})[0] == 404
    assert s.request("GET", "/api/nodes/gain/config")[1]["config"] == {"gain": 2.0}


def test_changes_go_through_the_live_runtime(live):
    s = live()
    status, rec = s.request("PATCH", "/api/nodes/gain/config", {"gain": 3})
    assert status == 200 and (rec["node_id"], rec["kind"], rec["version"]) == ("gain", "update", 1)
    assert s.request("GET", "/api/nodes/gain/config")[1] == {
        "node": "gain", "type": "Gain", "version": 1, "config": {"gain": 3.0}}
    status, rec = s.request("PUT", "/api/nodes/gain", {"type": "Gain", "config": {"gain": 1}})
    assert status == 200 and rec["kind"] == "replace"
    status, body = s.request("PUT", "/api/nodes/gain", {"type": "NoSuchType"})
    assert status == 422 and body["problems"] == [
        {"path": "$.type", "message": "unknown node type 'NoSuchType'; run 'streamlab nodes' "
         "to list the registered types"}]
    status, body = s.request("PUT", "/api/nodes/gain", {"type": "Gain", "config": {"gain": "x"}})
    assert status == 422 and [p["path"] for p in body["problems"]] == ["$.config.gain"]
    assert s.request("PUT", "/api/nodes/gain", {"config": {}})[0] == 400
    assert s.request("PUT", "/api/nodes/nope", {"type": "Gain"})[0] == 404
    status, body = s.request("POST", "/api/nodes", {"id": "g2", "spec": {"type": "Gain",
                             "config": {"gain": 1}}, "after": "gain"})  # gain is the output
    assert status == 422 and [p["path"] for p in body["problems"]] == ["$.connections"]
    status, rec = s.request("POST", "/api/nodes", {"id": "g2", "spec": {"type": "Gain",
                            "config": {"gain": 1}}, "after": "sine", "before": "gain"})
    assert status == 201 and rec["kind"] == "add"
    g = s.request("GET", "/api/graph")[1]
    assert sorted((e["from"], e["to"]) for e in g["edges"] if not e["dead_letter"]) == [
        ("g2", "gain"), ("sine", "g2")]
    assert s.request("POST", "/api/nodes", {"id": "g3", "spec": {"type": "Gain"},
                                            "after": "nope"})[0] == 404
    status, rec = s.request("DELETE", "/api/nodes/g2")
    assert status == 200 and rec["kind"] == "remove"
    assert [n["id"] for n in s.request("GET", "/api/graph")[1]["nodes"]] == ["sine", "gain"]
    changes = s.request("GET", "/api/changes")[1]
    assert [(c["kind"], c["ok"]) for c in changes] == [
        ("update", True), ("replace", True), ("replace", False), ("replace", False),
        ("add", False), ("add", True), ("remove", True)]


def test_stop_stops_the_pipeline_gracefully(live):
    s = live()
    status, body = s.request("POST", "/api/stop")
    assert status == 202
    deadline = time.monotonic() + 30
    while s.pipe.report is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert s.pipe.state == "stopped"
    assert s.pipe.report.nodes["gain"].received == sum(s.pipe.report.nodes["gain"].fates.values())


def test_token_file_is_private_and_removed_at_the_end(live):
    s = live()
    path = s.token_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = json.loads(path.read_text())
    assert data == {"url": s.url, "token": s.token, "pid": os.getpid(), "pipeline": "live-test"}
    assert len(s.token) >= 40
    s.close()
    assert not path.exists()


def test_the_login_url_works_once_and_its_get_changes_nothing(live):
    s = live()
    url = s.server.login_url()
    code = url.split("code=")[1]
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    page = opener.open(url, timeout=30).read().decode()
    assert 'method=post' in page and code in page
    # the GET did not use the code: posting it gives the cookie, which opens the page
    resp = opener.open(urllib.request.Request(
        s.url + "/login", data=f"code={code}".encode(), method="POST",
        headers={"Origin": s.url}), timeout=30)
    assert resp.status == 200 and "StreamLab dashboard" in resp.read().decode()
    # a second use of the same code is refused
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(
            s.url + "/login", data=f"code={code}".encode(), method="POST"), timeout=30)
    assert err.value.code == 401


def test_a_stalled_websocket_client_never_slows_the_pipeline(live):
    """A client that never reads: its updates are dropped (counted), the pipeline runs on."""
    aiohttp = pytest.importorskip("aiohttp")
    s = live(spec(channels=64, per_frame=20))

    async def stalled() -> tuple[int, int]:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {s.token}"}) as c:
            ws = await c.ws_connect(s.url + "/api/ws", max_msg_size=0)
            await ws.send_str(json.dumps({"type": "subscribe", "node": "gain", "width": 2000}))
            # read nothing for a while: the socket buffers fill up, the server must not wait
            before = s.request("GET", "/api/stats")[1]
            await asyncio.sleep(3.0)
            after = s.request("GET", "/api/stats")[1]
            await ws.close()
            return received(after) - received(before), after["web"]["dropped"]

    def received(stats: dict) -> int:
        return next(r for r in stats["nodes"] if r["node"] == "gain")["received"]

    grown, dropped = asyncio.run(stalled())
    assert grown >= 50  # 50 frames/s paced: the pipeline ran on (generous on a busy machine)
    assert dropped > 0
