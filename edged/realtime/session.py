"""The Realtime session's I/O shell: one WebSocket, the playback buffer, tools, a trace.

Everything that decides lives in `core.SessionCore`; this file only carries its
commands out. Local effects (play, stop the speaker, log) happen at once, in the
caller's frame, so barge-in silences the speaker within the frame that decided
it. Network effects go through one bounded queue drained by one task, so events
leave in order; if the network stalls until that queue is full, the connection
is dropped and the core re-sends the whole turn on a fresh one — a stall never
turns into a silently truncated turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import date
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlencode

import websockets
from websockets.asyncio.client import ClientConnection

from ..config import CostConfig, RealtimeConfig, ToolsConfig
from ..cost import CostError, Ledger, Prices, Usage, parse_usage
from ..playback import Playback
from ..tools import Toolbox, ToolContext, discover
from . import core as c
from . import protocol as p

log = logging.getLogger("edged.realtime")

SEND_QUEUE_MAX = 2000  # 20 s of 10 ms appends: far beyond any healthy network
TICK_S = 0.05
TURNS_KEPT = 100
OPEN_TIMEOUT_S = 10.0
LEDGER_NAME = "cost-ledger.json"
MAX_MESSAGE_BYTES = 16 * 1024 * 1024  # the service's largest event (15 MiB audio) and then some

ToolRunner = Callable[[str, str], Awaitable[str]]  # (name, arguments JSON) -> output JSON


def core_config(cfg: RealtimeConfig, tools: tuple[dict[str, Any], ...] = ()) -> c.CoreConfig:
    settings = p.SessionSettings(
        instructions=cfg.instructions,
        voice=cfg.voice,
        transcription_model=cfg.transcription_model,
        transcription_language=cfg.transcription_language,
        noise_reduction=cfg.noise_reduction,
        tools=tools,
    )
    return c.CoreConfig(
        settings=settings,
        idle_disconnect_ms=cfg.idle_disconnect_s * 1000,
        reconnect_min_ms=cfg.reconnect_min_ms,
        reconnect_max_ms=cfg.reconnect_max_ms,
        bad_key_retry_ms=cfg.bad_key_retry_s * 1000,
        context_turns=cfg.context_turns,
        context_keep_ms=cfg.context_keep_s * 1000,
    )


def price_table(cfg: CostConfig) -> dict[str, Prices]:
    return {model: Prices(**dataclasses.asdict(p)) for model, p in cfg.prices.items()}


def tool_runner(cfg: ToolsConfig, ctx: ToolContext) -> tuple[tuple[dict[str, Any], ...], ToolRunner]:
    """The enabled tools' declarations for `session.update`, and how to call them."""
    box = Toolbox(discover().select(cfg.enabled))

    async def run(name: str, arguments: str) -> str:
        return await box.call(name, arguments, ctx, timeout_s=cfg.timeout_s)

    return tuple(box.declarations()), run


def usages(done: c.TurnDone) -> list[Usage]:
    """The turn's usage blocks; one the server garbled is logged and counted as nothing."""
    out = []
    for u in done.usage:
        try:
            out.append(parse_usage(u))
        except CostError as e:
            log.warning("turn %d: unreadable usage in response.done skipped: %s", done.turn, e)
    return out


def ledger_path(cfg: CostConfig, env: Mapping[str, str]) -> Path | None:
    """`cost.ledger_file`, else systemd's state directory (`StateDirectory=edged`), else none."""
    if cfg.ledger_file:
        return Path(cfg.ledger_file)
    state = env.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / LEDGER_NAME if state else None


class Budget:
    """Books every reply's usage on the caller's calendar day and tells the session when the
    day's budget is spent (and when a new day frees it again).

    With a `path` the ledger is read at start and rewritten after every reply, so a restart
    (a crash, a reload, an update) does not hand out the day's budget a second time.
    """

    def __init__(
        self,
        cfg: CostConfig,
        model: str,
        today: Callable[[], date],
        ledger: Ledger | None = None,
        path: Path | None = None,
    ):
        self.limit_usd = cfg.daily_budget_usd
        self.model = model
        self.today = today
        self.path = path
        if ledger is None:
            ledger = self._load(price_table(cfg)) if path is not None else Ledger(price_table(cfg))
        self.ledger = ledger
        self._save_failed = False

    def _load(self, prices: dict[str, Prices]) -> Ledger:
        assert self.path is not None
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Ledger(prices)
        except OSError as e:
            log.warning("cost ledger %s unreadable (%s); starting a fresh one", self.path, e.strerror)
            return Ledger(prices)
        return Ledger.from_json(text, prices)

    def book(self, usage: list[Usage]) -> float:
        day = self.today()
        usd = sum(self.ledger.add(day, u, self.model).total_usd for u in usage)
        if self.path is not None:
            self._save()
        return usd

    def _save(self) -> None:
        """Atomically: a power cut mid-write leaves the previous ledger, never half of one."""
        assert self.path is not None
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(self.ledger.to_json(), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as e:
            if not self._save_failed:  # once, not after every reply
                log.warning("cannot write the cost ledger %s: %s", self.path, e.strerror)
            self._save_failed = True
        else:
            self._save_failed = False

    def exhausted(self) -> bool:
        return self.ledger.over_budget(self.today(), self.limit_usd)


def turn_line(done: c.TurnDone, usage: list[Usage], usd: float | None) -> str:
    """The journal's one line per turn: how long it took, what it sent, what it cost."""
    reply = f"{done.commit_to_audio_ms:.0f} ms" if done.commit_to_audio_ms is not None else "none"
    end = f"speech end→commit {done.end_to_commit_ms:.0f} ms, " if done.end_to_commit_ms is not None else ""
    tokens_in = sum(u.input_tokens for u in usage)
    tokens_out = sum(u.output_tokens for u in usage)
    cost = f" ${usd:.5f}" if usd is not None else ""
    return (
        f"turn {done.turn} {done.status}{' (barge-in)' if done.barge_in else ''}: "
        f"uploaded {done.uploaded_ms / 1000:.2f} s, {end}commit→reply audio {reply}, "
        f"tokens in {tokens_in} out {tokens_out}{cost}"
    )


@dataclasses.dataclass
class Totals:
    """Since the session began: what the metrics count (the ledger keeps the days)."""

    uploaded_ms: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    usd: float = 0.0

    def add(self, done: c.TurnDone, usage: list[Usage], usd: float | None) -> None:
        self.uploaded_ms += done.uploaded_ms
        self.tokens_in += sum(u.input_tokens for u in usage)
        self.tokens_out += sum(u.output_tokens for u in usage)
        self.usd += usd or 0.0


class Tracer:
    """`--trace FILE`: every client and server event as a JSON line, audio payloads elided."""

    def __init__(self, out: TextIO, clock_ms: Callable[[], float]) -> None:
        self._out = out
        self._clock = clock_ms

    def write(self, direction: str, event: Any) -> None:
        line = {"t_ms": round(self._clock(), 1), "dir": direction, "event": p.elide_audio(event)}
        self._out.write(json.dumps(line) + "\n")


class RealtimeSession:
    def __init__(
        self,
        cfg: RealtimeConfig,
        api_key: str,
        playback: Playback,
        *,
        tools: tuple[dict[str, Any], ...] = (),
        run_tool: ToolRunner | None = None,
        on_turn_done: Callable[[c.TurnDone], None] | None = None,
        trace: TextIO | None = None,
        clock_ms: Callable[[], float] | None = None,
        rng: random.Random | None = None,
        budget: Budget | None = None,
        tool_context: ToolContext | None = None,
    ) -> None:
        self.cfg = cfg
        self.core = c.SessionCore(core_config(cfg, tools), rng)
        self.playback = playback
        self._key = api_key
        self._run_tool = run_tool
        self._on_turn_done = on_turn_done
        self.budget = budget
        self._tool_context = tool_context
        self._overflowed = False
        self._clock = clock_ms or (lambda: time.monotonic() * 1000)
        self._tracer = Tracer(trace, self._clock) if trace is not None else None
        self._queue: asyncio.Queue[c.Command] = asyncio.Queue(SEND_QUEUE_MAX)
        self._ws: ClientConnection | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.turns_done: deque[c.TurnDone] = deque(maxlen=TURNS_KEPT)  # the latest, for status and tests
        self.sent_events = 0
        self.received_events = 0
        self.totals = Totals()

    # -- inputs from the frame loop (called on the event loop's thread) ---------------------------
    def turn_started(self, barge_in: bool) -> None:
        if self.budget is not None and self.core.budget_exhausted:
            self._apply(self.core.set_budget_exhausted(self.budget.exhausted()))  # a new day?
        pb = self.playback
        item = pb.interrupted_item
        self._apply(self.core.turn_started(self._clock(), barge_in, item, pb.played_ms(item) if item else 0))

    def turn_confirmed(self) -> None:
        self._apply(self.core.turn_confirmed(self._clock()))

    def turn_audio(self, audio_b64: str) -> None:
        self._apply(self.core.turn_audio(self._clock(), audio_b64))

    def turn_committed(self, end_to_commit_ms: float | None = None) -> None:
        self._apply(self.core.turn_committed(self._clock(), end_to_commit_ms))

    def turn_discarded(self) -> None:
        self._apply(self.core.turn_discarded(self._clock()))

    def announce(self, instructions: str) -> None:
        self._apply(self.core.announce(self._clock(), instructions))

    # -- running ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Carry out network commands and keep time until cancelled."""
        ticker = asyncio.create_task(self._tick())
        try:
            while True:
                cmd = await self._queue.get()
                await self._network(cmd)
        finally:
            ticker.cancel()
            for t in list(self._tasks):
                t.cancel()
            if self._ws is not None:
                await self._ws.close()

    def start(self) -> asyncio.Task[None]:
        self._runner = asyncio.create_task(self.run())
        return self._runner

    async def stop(self, timeout_s: float = 1.5) -> None:
        """Shutdown: stop the speaker, cancel a reply in flight, close; bounded in time."""
        self.playback.flush()
        ws = self._ws
        if ws is not None and self.core._response:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.send(json.dumps(self.core.ev.response_cancel())), timeout_s / 3)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._runner, timeout_s)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._apply(self.core.tick(self._clock()))
            self._announce_timers()

    def _announce_timers(self) -> None:
        ctx = self._tool_context
        if ctx is None:
            return
        for timer in ctx.timers.due(ctx.monotonic_s()):
            log.info("timer %r finished", timer.label)
            self.announce(timer.announcement())

    # -- commands -------------------------------------------------------------------------------
    def _apply(self, cmds: list[c.Command]) -> None:
        for cmd in cmds:
            match cmd:
                case c.Play(item, pcm):
                    self.playback.push(item, pcm)
                case c.EndItem(item):
                    self.playback.end_item(item)
                case c.StopPlayback():
                    self.playback.flush()
                case c.PausePlayback():
                    self.playback.pause()
                case c.ResumePlayback():
                    self.playback.resume()
                case c.Log(level, message):
                    log.log(logging.getLevelName(level.upper()), "%s", message)
                case c.TurnDone():
                    self.turns_done.append(cmd)
                    usage, usd = usages(cmd), None
                    if self.budget is not None:
                        usd = self.budget.book(usage)
                        self._apply(self.core.set_budget_exhausted(self.budget.exhausted()))
                    self.totals.add(cmd, usage, usd)
                    log.info("%s", turn_line(cmd, usage, usd))
                    if self._on_turn_done is not None:
                        self._on_turn_done(cmd)
                case _:
                    self._enqueue(cmd)

    def _enqueue(self, cmd: c.Command) -> None:
        try:
            self._queue.put_nowait(cmd)
        except asyncio.QueueFull:
            # the network has stalled for seconds: start over on a new connection, the core
            # still holds the turn and re-sends it whole
            self._drain_queue()
            ws = self._ws
            if ws is not None and not self._overflowed:
                self._overflowed = True  # one close per stalled connection, not one per event
                log.warning("send queue full (%d events): dropping the connection", self._queue.maxsize)
                self._spawn(ws.close(code=1011, reason="client send queue overflow"))

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _network(self, cmd: c.Command) -> None:
        match cmd:
            case c.Connect():
                await self._connect()
            case c.Disconnect(reason):
                if self._ws is not None:
                    await self._ws.close(code=1000, reason=reason[:100])
            case c.Send(event):
                await self._send(event)
            case c.RunTool(call_id, name, arguments):
                self._spawn(self._tool(call_id, name, arguments))

    async def _send(self, event: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return  # the connection is gone; the core re-sends what matters on the next one
        try:
            await ws.send(json.dumps(event))
        except websockets.ConnectionClosed:
            return  # the reader reports the close
        self.sent_events += 1
        if self._tracer:
            self._tracer.write("out", event)

    async def _connect(self) -> None:
        url = f"{self.cfg.url}?{urlencode({'model': self.cfg.model})}"
        try:
            ws = await websockets.connect(
                url,
                additional_headers={"Authorization": f"Bearer {self._key}"},
                open_timeout=OPEN_TIMEOUT_S,
                max_size=MAX_MESSAGE_BYTES,
            )
        except websockets.InvalidStatus as e:
            status = e.response.status_code
            self._apply(self.core.connect_failed(self._clock(), f"HTTP {status}", auth=status in (401, 403)))
            return
        except (OSError, TimeoutError, websockets.WebSocketException) as e:
            self._apply(
                self.core.connect_failed(self._clock(), type(e).__name__ + (f": {e}" if str(e) else ""))
            )
            return
        self._ws = ws
        self._overflowed = False
        log.info("connected to %s (model %s)", self.cfg.url, self.cfg.model)
        self._spawn(self._read(ws))
        self._apply(self.core.connected(self._clock()))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self.received_events += 1
                if self._tracer:
                    self._trace_in(message)
                self._apply(self.core.server_message(self._clock(), message))
        except websockets.ConnectionClosed:
            pass
        finally:
            code = ws.close_code
            reason = (
                f"close {code} {ws.close_reason or ''}".strip() if code is not None else "connection lost"
            )
            if self._ws is ws:
                self._ws = None
                self._drain_queue_sends()
                self._apply(self.core.disconnected(self._clock(), reason))

    def _drain_queue_sends(self) -> None:
        """Events queued for a dead connection are stale; the core re-sends what matters."""
        keep = []
        while not self._queue.empty():
            cmd = self._queue.get_nowait()
            if not isinstance(cmd, c.Send):
                keep.append(cmd)
        for cmd in keep:
            self._queue.put_nowait(cmd)

    def _trace_in(self, message: str | bytes) -> None:
        assert self._tracer is not None
        try:
            self._tracer.write("in", json.loads(message))
        except ValueError:
            self._tracer.write("in", {"unparsed": str(message[:200])})

    async def _tool(self, call_id: str, name: str, arguments: str) -> None:
        if self._run_tool is None:
            output = json.dumps({"error": f"no tools are available (asked for {name})"})
        else:
            output = await self._run_tool(name, arguments)
        self._apply(self.core.tool_result(self._clock(), call_id, output))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (e := task.exception()) is not None:
            log.error("session task failed: %r", e, exc_info=e)
