"""Opt-in Prometheus metrics: served on a loopback port, or written for node_exporter.

A speaker runs for months unattended; these counters are how a fleet owner sees that
it still hears (frames), hears cleanly (xruns), costs what it should (turns, uploaded
seconds, tokens, dollars) and keeps up (frame-loop seconds per audio second). Only
loopback is served: the numbers say when someone in the house speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("edged")

REQUEST_MAX_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
MAX_CLIENTS = 8  # scrapers at once; more are closed unanswered (the speaker comes first)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # "counter" | "gauge"
    help: str
    label: str = ""  # the one label this family is split by, if any


FAMILIES = (
    Metric("edged_frames_total", "counter", "10 ms microphone frames run through the detector"),
    Metric("edged_audio_seconds_total", "counter", "seconds of microphone audio captured"),
    Metric(
        "edged_frame_loop_seconds_total",
        "counter",
        "seconds spent running captured audio through the pipeline; over audio seconds: share of real time",
    ),
    Metric("edged_xruns_total", "counter", "audio stream problems by kind", "kind"),
    Metric("edged_turns_total", "counter", "user turns the gate committed (sent, queued or over budget)"),
    Metric("edged_false_starts_total", "counter", "starts discarded as too short to be speech"),
    Metric("edged_barge_ins_total", "counter", "turns that began while the device was speaking"),
    Metric(
        "edged_replies_resumed_total",
        "counter",
        "barge-ins that proved too short to be speech: the paused reply played on",
    ),
    Metric(
        "edged_turns_joined_total",
        "counter",
        "turns the user went on from before their reply played: it was cancelled, one reply answered both",
    ),
    Metric("edged_reconnects_total", "counter", "Realtime connections re-established after a loss"),
    Metric("edged_audio_reopens_total", "counter", "audio streams reopened after the device was lost"),
    Metric("edged_uploaded_seconds_total", "counter", "seconds of audio appended (billed input)"),
    Metric("edged_tokens_total", "counter", "tokens billed, by direction", "direction"),
    Metric("edged_cost_usd_total", "counter", "dollars spent since the daemon started"),
    Metric("edged_cost_usd_today", "gauge", "dollars spent today (the persistent ledger)"),
    Metric("edged_speaking", "gauge", "1 while the gate holds a user turn open"),
    Metric("edged_replying", "gauge", "1 while a reply plays"),
)
_BY_NAME = {m.name: m for m in FAMILIES}


class Metrics:
    """Values by (family, label value); the daemon adds and sets, exporters render."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], float] = {}
        for m in FAMILIES:
            if not m.label:
                self._values[(m.name, "")] = 0.0

    def add(self, name: str, amount: float = 1.0, label: str = "") -> None:
        self._check(name, label)
        key = (name, label)
        self._values[key] = self._values.get(key, 0.0) + amount

    def set(self, name: str, value: float, label: str = "") -> None:
        self._check(name, label)
        self._values[(name, label)] = float(value)

    def get(self, name: str, label: str = "") -> float:
        return self._values.get((name, label), 0.0)

    @staticmethod
    def _check(name: str, label: str) -> None:
        m = _BY_NAME[name]  # an unknown name is a programming error: KeyError
        if bool(m.label) != bool(label):
            raise ValueError(f"{name}: label {'required' if m.label else 'not allowed'}")

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines = []
        for m in FAMILIES:
            lines.append(f"# HELP {m.name} {m.help}")
            lines.append(f"# TYPE {m.name} {m.kind}")
            for (name, label), v in sorted(self._values.items()):
                if name == m.name:
                    labels = f'{{{m.label}="{label}"}}' if m.label else ""
                    lines.append(f"{name}{labels} {_number(v)}")
        return "\n".join(lines) + "\n"


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


async def serve(render: Callable[[], str], host: str, port: int) -> asyncio.Server:
    """A minimal HTTP/1.0 endpoint: GET /metrics, everything else 404. One small response
    per connection; a client that sends nothing is dropped after a few seconds, and at most
    MAX_CLIENTS are served at once."""
    clients = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal clients
        if clients >= MAX_CLIENTS:
            writer.close()
            return
        clients += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            parts = head.split(b" ", 2)
            ok = len(parts) >= 2 and parts[0] == b"GET" and parts[1].split(b"?")[0] == b"/metrics"
            body = render().encode() if ok else b"not found: try /metrics\n"
            status = b"200 OK" if ok else b"404 Not Found"
            ctype = b"text/plain; version=0.0.4; charset=utf-8" if ok else b"text/plain"
            writer.write(
                b"HTTP/1.0 " + status + b"\r\nContent-Type: " + ctype
                + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
            )  # fmt: skip
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            clients -= 1
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=REQUEST_MAX_BYTES)


def write_textfile(text: str, path: str) -> bool:
    """Atomically, so node_exporter never reads half a file. False (logged once by the
    caller) when the directory is not writable."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.chmod(0o644)  # node_exporter runs as another user; the service's umask is 077
        os.replace(tmp, target)
    except OSError as e:
        log.debug("cannot write metrics to %s: %s", path, e.strerror)
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    return True


__all__ = ["FAMILIES", "Metrics", "serve", "write_textfile"]
