"""A whole conversation in software: the bundled recording talks to the local server.

The device's loop closed without hardware (DESIGN: "a room in software"): each
10 ms the speaker plays what the playback buffer holds, that sound goes through
a room response into the microphone on top of the recorded user, the frame loop
(echo canceller, detector, gate) decides, and the Realtime session carries the
turns over a real WebSocket to edged's local server, whose spoken replies come
back into the playback buffer. The user in the recording does not wait for the
replies, so some sentences interrupt the device: barge-in, for real.

The sample clock drives everything; `speed` is how much faster than real time
it runs, so latencies are reported on the conversation's own clock. With the
local server the conversation is the same on every run: the server answers as
fast as it can (the service, too, generates audio faster than real time), and
the clock waits for whatever was asked of it (connecting, each reply) before it
moves on, so no reply lands a frame earlier or later because the machine was busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field, replace
from typing import TextIO

import numpy as np
from scipy.signal import lfilter

from .config import Config
from .cost import always_streaming_usd, cost_usd, prices_for
from .feed import feed
from .frames import FRAME_MS, RATE_HZ
from .gate import Action, Commit, Discard, Start
from .pipeline import Pipeline
from .playback import RATE_HZ as PLAY_RATE_HZ
from .playback import Playback
from .realtime.core import TurnDone
from .realtime.local_server import LocalRealtimeServer
from .realtime.session import RealtimeSession, price_table, usages
from .resample import StreamingResampler

PLAY_FRAME = PLAY_RATE_HZ * FRAME_MS // 1000
BATCH_FRAMES = 5  # frames run between yields to the network
SETTLE_MAX_S = 10.0  # longest wall-clock wait for the local server before the clock moves on
DRAIN_MS = 6000  # after the recording ends, let the last reply play out
MAX_DRAIN_MS = 30000  # ... and longer while a turn still waits for its reply (a slow machine)


class Room:
    """Speaker → microphone: a fixed synthetic room response (direct path plus a decaying
    diffuse tail, RT60 about 0.3 s), streaming, at the microphone's rate."""

    def __init__(self, echo_gain_db: float, seed: int = 3) -> None:
        rng = np.random.default_rng(seed)
        n = int(0.25 * RATE_HZ)
        t = np.arange(n) / RATE_HZ
        h = rng.standard_normal(n) * np.exp(-6.9 * t / 0.3) * 0.15
        h[:32] = 0.0
        h[32] = 1.0  # 2 ms: the speaker sits a few cm from the microphone
        self.h = (h / np.sqrt(np.sum(h**2)) * 10 ** (echo_gain_db / 20)).astype(np.float64)
        self._zi = np.zeros(n - 1)
        self._rs = StreamingResampler(PLAY_RATE_HZ, RATE_HZ)

    def process(self, played_24k: np.ndarray) -> np.ndarray:
        x = self._rs.process(played_24k)
        y, self._zi = lfilter(self.h, [1.0], x, zi=self._zi)
        return y.astype(np.float32)


@dataclass
class TurnRow:
    number: int
    start_s: float
    speech_end_s: float
    commit_s: float
    barge_in: bool
    uploaded_s: float
    decided_s: float = 0.0  # when the gate opened the turn (on barge-in: when the speaker stopped)
    commit_to_audio_ms: float | None = None
    tokens: int = 0
    usd: float = 0.0
    status: str = "pending"


@dataclass
class ConversationResult:
    turns: list[TurnRow] = field(default_factory=list)
    duration_s: float = 0.0
    speaker: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    discards: int = 0
    always_streaming_usd: float = 0.0  # the user-audio input of sending the whole recording
    uploaded_usd: float = 0.0  # the same for what edged sent
    reconnects: int = 0


async def run_conversation(
    cfg: Config,
    user: np.ndarray,
    *,
    speed: float = 4.0,
    echo_gain_db: float | None = 0.0,
    trace: TextIO | None = None,
    api_key: str | None = None,
) -> ConversationResult:
    """Play `user` (16 kHz mono) into the closed loop; returns each turn and the speaker's output.

    Without `api_key` the turns go to an in-process local server; with one, to
    `realtime.url` (the service, at real time). `echo_gain_db=None` leaves the room out:
    for a recording whose replies were never played into it.
    """
    prices = prices_for(cfg.realtime.model, price_table(cfg.cost))
    result = ConversationResult(duration_s=len(user) / RATE_HZ)
    frame = RATE_HZ * FRAME_MS // 1000
    position_ms = [0.0]
    rows: dict[int, TurnRow] = {}

    def turn_done(done: TurnDone) -> None:
        row = rows.get(done.turn)
        if row is None:
            return
        row.commit_to_audio_ms = done.commit_to_audio_ms
        usage = usages(done)
        row.tokens = sum(u.total_tokens for u in usage)
        row.usd = sum(cost_usd(u, prices) for u in usage)
        row.status = done.status

    async with contextlib.AsyncExitStack() as stack:
        rt = cfg.realtime
        if api_key is None:
            server = await stack.enter_async_context(LocalRealtimeServer(pace=0))
            rt = replace(rt, url=server.url)
        playback = Playback(prebuffer_ms=rt.playback_prebuffer_ms)
        session = RealtimeSession(
            rt,
            api_key or "local-demo",
            playback,
            on_turn_done=turn_done,
            trace=trace,
            clock_ms=lambda: position_ms[0],
        )
        session.start()
        pipeline = Pipeline(cfg, RATE_HZ, PLAY_RATE_HZ)

        def on_action(a: Action) -> None:
            number = session.core.turns
            if isinstance(a, Start):
                decided_s = (a.at + pipeline.delay_samples + frame) / RATE_HZ
                start_s = pipeline.to_input_ms(a.upload_start) / 1000
                rows[number] = TurnRow(number, start_s, 0, 0, a.barge_in, 0, decided_s=decided_s)
            elif isinstance(a, Commit):
                row = rows[number]
                row.speech_end_s = pipeline.to_input_ms(a.speech_end) / 1000
                row.commit_s = pipeline.to_input_ms(a.at) / 1000
                row.uploaded_s = a.uploaded_samples / RATE_HZ
            elif isinstance(a, Discard):
                rows.pop(number, None)
                result.discards += 1

        room = Room(echo_gain_db) if echo_gain_db is not None else None
        speaker: list[np.ndarray] = []
        total = len(user) + DRAIN_MS * RATE_HZ // 1000
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        limit = len(user) + MAX_DRAIN_MS * RATE_HZ // 1000

        def more(n: int) -> bool:
            waiting = any(r.status == "pending" for r in rows.values())
            return n + frame <= total or (waiting and n + frame <= limit)

        for k, n in enumerate(itertools.takewhile(more, itertools.count(0, frame))):
            played = playback.pull(PLAY_FRAME)
            speaker.append(played)
            mic = user[n : n + frame] if n + frame <= len(user) else np.zeros(frame, np.float32)
            if room is not None:
                mic = mic + room.process(played)
            for res in pipeline.process(mic, played):
                feed(session, res, on_action)
            position_ms[0] = (n + frame) * 1000 / RATE_HZ
            if k % BATCH_FRAMES == BATCH_FRAMES - 1:
                # keep the loop at `speed` × real time, and let the network run
                ahead = t0 + position_ms[0] / 1000 / speed - loop.time()
                await asyncio.sleep(max(0.0, ahead))
                if api_key is None:
                    await _settle(session)
        await session.stop()
        result.speaker = np.concatenate(speaker) if speaker else np.zeros(0, np.float32)
        result.reconnects = session.core.reconnects
    result.turns = [rows[k] for k in sorted(rows)]
    result.always_streaming_usd = always_streaming_usd(result.duration_s, prices)
    result.uploaded_usd = always_streaming_usd(sum(r.uploaded_s for r in result.turns), prices)
    return result


async def _settle(session: RealtimeSession) -> None:
    """Let the local server finish what it was asked, the sample clock standing still."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + SETTLE_MAX_S
    while not session.core.settled and loop.time() < give_up:
        await asyncio.sleep(0.001)


def format_conversation(res: ConversationResult, speed: float) -> str:
    lines = [
        f"{'turn':>4}  {'speech':>13}  {'end→commit':>10}  {'commit→reply':>12}  {'uploaded':>8}  "
        f"{'tokens':>6}  {'cost':>9}  barge-in",
    ]
    for r in res.turns:
        reply = f"{r.commit_to_audio_ms:.0f} ms" if r.commit_to_audio_ms is not None else r.status
        end_to_commit_ms = 1000 * (r.commit_s - r.speech_end_s)
        lines.append(
            f"{r.number:>4}  {r.start_s:5.2f}–{r.speech_end_s:5.2f} s  {end_to_commit_ms:7.0f} ms"
            f"  {reply:>12}  {r.uploaded_s:6.2f} s  {r.tokens:>6}  ${r.usd:.5f}"
            f"  {'yes' if r.barge_in else ''}"
        )
    total = sum(r.usd for r in res.turns)
    up = sum(r.uploaded_s for r in res.turns)
    lines.append("")
    lines.append(
        f"replies: {len(res.turns)} turns, ${total:.4f} in all (the conversation is re-billed each turn)"
    )
    lines.append(
        f"audio sent: {up:.1f} s of {res.duration_s:.1f} s recorded, ${res.uploaded_usd:.4f}; streaming"
        f" everything would have sent {res.duration_s:.1f} s, ${res.always_streaming_usd:.4f}"
    )
    lines.append(f"clock: the conversation ran at {speed:g}× real time; latencies are on its own clock")
    return "\n".join(lines)


def replay_conversation(
    cfg: Config, path: str, service: bool, speed: float, trace_path: str | None, out_wav: str | None
) -> int:
    """`edged replay IN.wav --talk local|service`: the recording's turns sent for real.

    The recording plays as the microphone (no room: its replies were never played into
    it), every committed turn goes to the local server or the service and the replies
    play into a buffer. With the service the clock is real time, since replies arrive
    at the service's pace.
    """
    from .resample import resample_whole
    from .secrets import use_api_key
    from .wavio import read_mono, write_pcm16

    mic, rate = read_mono(path)
    user = resample_whole(mic, rate, RATE_HZ) if rate != RATE_HZ else mic
    key = None
    if service:
        key = use_api_key(cfg.realtime.api_key_file)
        speed = 1.0
    where = cfg.realtime.url if service else "edged's local server"
    print(f"{path}: {len(user) / RATE_HZ:.1f} s, every turn sent to {where}\n")
    with open(trace_path, "w", encoding="utf-8") if trace_path else contextlib.nullcontext() as trace:
        res = asyncio.run(
            run_conversation(cfg, user, speed=speed, echo_gain_db=None, trace=trace, api_key=key)
        )
    print(format_conversation(res, speed))
    if out_wav:
        write_pcm16(out_wav, res.speaker, PLAY_RATE_HZ)
        print(f"the speaker's output: {out_wav}")
    return 0
