"""Prometheus metrics: the exposition format (read back with prometheus_client's own
parser), the loopback endpoint over a real socket, the atomic textfile, the config rules."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from promtext import samples

from edged.config import ConfigError, listen_address, load_config
from edged.metrics import FAMILIES, Metrics, serve, write_textfile


def test_every_family_renders_and_parses_with_its_values() -> None:
    m = Metrics()
    m.add("edged_frames_total", 300)
    m.add("edged_frame_loop_seconds_total", 0.125)
    m.add("edged_xruns_total", 2, "input_overflows")
    m.add("edged_xruns_total", 1, "input_overflows")
    m.set("edged_tokens_total", 1234, "in")
    m.set("edged_cost_usd_today", 0.0042)
    text = m.render()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # the parser strips _total from counter family names
    assert {f.name.removesuffix("_total") for f in FAMILIES} == set(fams)
    got = samples(text)
    assert got[("edged_frames_total", ())] == 300
    assert got[("edged_frame_loop_seconds_total", ())] == 0.125
    assert got[("edged_xruns_total", (("kind", "input_overflows"),))] == 3
    assert got[("edged_tokens_total", (("direction", "in"),))] == 1234
    assert got[("edged_cost_usd_today", ())] == pytest.approx(0.0042)
    assert got[("edged_turns_total", ())] == 0  # unlabelled families start at zero
    assert fams["edged_cost_usd_today"].type == "gauge" and fams["edged_turns"].type == "counter"


def test_labels_are_required_where_the_family_has_one_and_refused_elsewhere() -> None:
    m = Metrics()
    with pytest.raises(ValueError, match="label required"):
        m.add("edged_xruns_total")
    with pytest.raises(ValueError, match="label not allowed"):
        m.add("edged_turns_total", 1, "x")
    with pytest.raises(KeyError):
        m.add("edged_no_such_total")


async def http_get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await reader.read()
    writer.close()
    return data


async def test_the_endpoint_serves_metrics_on_loopback_and_404s_the_rest() -> None:
    m = Metrics()
    m.add("edged_turns_total", 7)
    server = await serve(m.render, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ok = await http_get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = ok.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.0 200") and b"version=0.0.4" in head
        assert samples(body.decode())[("edged_turns_total", ())] == 7
        missing = await http_get(port, b"GET / HTTP/1.1\r\n\r\n")
        assert missing.startswith(b"HTTP/1.0 404")
        garbage = await http_get(port, b"\x00" * 9000 + b"\r\n\r\n")  # over the head limit
        assert garbage == b""  # dropped, and the server still answers the next one
        again = await http_get(port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
        assert again.startswith(b"HTTP/1.0 200")
    finally:
        server.close()
        await server.wait_closed()


async def test_idle_clients_beyond_the_limit_are_turned_away_and_the_endpoint_recovers() -> None:
    from edged.metrics import MAX_CLIENTS

    m = Metrics()
    server = await serve(m.render, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_CLIENTS)]
    try:
        await asyncio.sleep(0.1)
        try:  # full: closed at once, unanswered
            refused = await http_get(port, b"GET /metrics HTTP/1.0\r\n\r\n")
        except ConnectionResetError:
            refused = b""
        assert refused == b""
        for _, w in idle:
            w.close()
        await asyncio.sleep(0.1)
        assert (await http_get(port, b"GET /metrics HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 200")
    finally:
        server.close()
        await server.wait_closed()


def test_the_textfile_is_replaced_whole(tmp_path: Path) -> None:
    m = Metrics()
    path = tmp_path / "edged.prom"
    m.add("edged_turns_total", 1)
    assert write_textfile(m.render(), str(path))
    m.add("edged_turns_total", 1)
    assert write_textfile(m.render(), str(path))
    assert samples(path.read_text())[("edged_turns_total", ())] == 2
    assert path.stat().st_mode & 0o777 == 0o644  # node_exporter, another user, must read it
    assert [p.name for p in tmp_path.iterdir()] == ["edged.prom"]  # no temporary left behind
    assert not write_textfile(m.render(), str(tmp_path / "missing" / "edged.prom"))


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:9464", "192.168.1.5:9464", "127.0.0.1", "localhost:0", "x:1", "127.0.0.1:²"]
)
def test_metrics_listen_is_loopback_host_and_port_only(listen: str) -> None:
    with pytest.raises(ConfigError, match=r"metrics\.listen = .*127\.0\.0\.1"):
        load_config(None, [f"metrics.listen={listen}"])


def test_metrics_config_accepts_loopback_and_prom_files() -> None:
    cfg = load_config(None, ["metrics.listen=localhost:9464", "metrics.textfile=/tmp/x/edged.prom"])
    assert listen_address(cfg.metrics.listen) == ("localhost", 9464)
    assert listen_address("[::1]:9") == ("::1", 9)
    with pytest.raises(ConfigError, match=r"metrics\.textfile = .*\.prom"):
        load_config(None, ["metrics.textfile=/tmp/edged.txt"])
