"""The Realtime session's decisions, without sockets or clocks.

Fed with what happens — the turn gate's actions, server events, the connection
coming and going, tool results, the passing of time (`now_ms`, from whatever
clock the shell uses) — it returns commands for the shell: connect, send this
event, play this audio, stop the speaker, run this tool, log this. Because it
never blocks and never reads a clock, every reconnect, barge-in and expiry
path is tested exactly, and the shell stays a few lines of asyncio.

What it guarantees:
- a user turn is never lost: its audio is kept until the service answered it,
  and re-sent in full on a new connection if the old one died first;
- barge-in pauses the speaker at once; once the turn holds enough speech to
  be the user's, the reply is cancelled and the assistant's item truncated at
  what was actually played, and if the turn is discarded instead (a cough,
  the device's own echo) the reply resumes where it paused;
- a new session (after `session_expired`, the 60-minute limit or an idle
  disconnect) is seeded with the recent conversation as text items;
- reconnects back off exponentially with jitter; a rejected key waits long.
"""

from __future__ import annotations

import base64
import random
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ..backoff import backoff_ms
from . import protocol as p

# one turn's audio kept for a re-send: 75 s of 24 kHz PCM16 as base64, above the gate's longest
# turn (gate.max_turn_ms is at most 60 s) plus its pre-roll
MAX_TURN_B64_CHARS = 75 * p.API_RATE_HZ * 2 * 4 // 3
# announcements (fired timers) waiting for the connection
MAX_PENDING_ANNOUNCEMENTS = 8
RESEND_CHUNK_BYTES = 2 * p.API_RATE_HZ * 2  # 2 s per append when a whole turn goes at once


@dataclass(frozen=True)
class CoreConfig:
    settings: p.SessionSettings = field(default_factory=p.SessionSettings)
    idle_disconnect_ms: int = 120_000  # no turn and nothing playing this long: hang up
    renew_after_ms: int = 55 * 60_000  # the service ends sessions at 60 min; renew while idle
    reconnect_min_ms: int = 500
    reconnect_max_ms: int = 30_000
    bad_key_retry_ms: int = 300_000  # a rejected key: retry rarely, it needs a human
    context_turns: int = 10  # past turns re-sent as text into a new session
    context_keep_ms: int = 600_000  # older conversation is not carried into a new session


# -- commands for the shell ---------------------------------------------------------------------


@dataclass(frozen=True)
class Connect:
    pass


@dataclass(frozen=True)
class Disconnect:
    reason: str


@dataclass(frozen=True)
class Send:
    event: dict[str, Any]


@dataclass(frozen=True)
class Play:
    item_id: str
    pcm: bytes = field(repr=False)


@dataclass(frozen=True)
class EndItem:
    item_id: str


@dataclass(frozen=True)
class StopPlayback:
    pass


@dataclass(frozen=True)
class PausePlayback:
    pass


@dataclass(frozen=True)
class ResumePlayback:
    pass


@dataclass(frozen=True)
class RunTool:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class Log:
    level: str  # "debug" | "info" | "warning" | "error"
    message: str


@dataclass(frozen=True)
class TurnDone:
    """One user turn answered (or given up): the per-turn journal line and the cost ledger."""

    turn: int
    uploaded_ms: float
    commit_to_audio_ms: float | None  # commit sent → first reply audio
    end_to_commit_ms: float | None  # the user's last voiced frame → the gate's commit (audio clock)
    usage: tuple[dict[str, Any], ...]  # `response.done` usage of each response it took
    status: str  # the last response's status, or why there was none
    barge_in: bool


Command = (
    Connect
    | Disconnect
    | Send
    | Play
    | EndItem
    | StopPlayback
    | PausePlayback
    | ResumePlayback
    | RunTool
    | Log
    | TurnDone
)


class Link(Enum):
    DOWN = "down"
    CONNECTING = "connecting"
    UP = "up"


@dataclass
class _Interruption:
    """A reply held by a turn that may be the user: the reply's item, what of it was played,
    and whether the user is going on before it played (then it is cancelled unheard)."""

    item: str
    played_ms: int
    went_on: bool = False


@dataclass
class _Turn:
    number: int
    barge_in: bool
    chunks: list[str] = field(default_factory=list)
    chars: int = 0
    uploaded_ms: float = 0.0
    committed: bool = False  # the gate ended it: commit once the audio is all sent
    sent_commit: bool = False
    commit_at_ms: float | None = None
    end_to_commit_ms: float | None = None
    first_audio_ms: float | None = None
    heard_reply: bool = False  # reply audio arrived: a re-send would answer twice
    reply_item: str = ""  # the item of the reply's first audio
    full: bool = False  # reached the resend buffer's cap: later audio is dropped, not holed
    responses: int = 0
    usage: list[dict[str, Any]] = field(default_factory=list)


def _coalesce(chunks: list[str], max_bytes: int) -> list[str]:
    """A turn sent at once (after connecting or reconnecting) goes in few large appends, so a
    long turn never needs more events than the shell's bounded send queue holds."""
    out: list[str] = []
    group: list[bytes] = []
    size = 0
    for chunk in chunks:
        pcm = base64.b64decode(chunk)
        if group and size + len(pcm) > max_bytes:
            out.append(base64.b64encode(b"".join(group)).decode("ascii"))
            group, size = [], 0
        group.append(pcm)
        size += len(pcm)
    if group:
        out.append(base64.b64encode(b"".join(group)).decode("ascii"))
    return out


class SessionCore:
    def __init__(self, cfg: CoreConfig, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self._rng = rng or random.Random()
        self.ev = p.ClientEvents()
        self.link = Link.DOWN
        self._attempts = 0
        self._retry_at: float | None = None
        self._session_start_ms = 0.0
        self._last_activity_ms = 0.0
        self._turn: _Turn | None = None  # the turn being spoken or awaiting its answer
        self._queue: deque[_Turn] = deque(maxlen=4)  # finished turns waiting for the previous answer
        self._turns = 0
        self._response: str = ""  # the active response id
        self._silenced: str = ""  # the response the user interrupted: its late audio is dropped
        # a barge-in not yet confirmed: the paused reply's item and what of it was played
        self._interruption: _Interruption | None = None
        self.resumed_replies = 0  # barge-ins that proved too short to be the user
        self.joined_turns = 0  # turns whose reply was cancelled unplayed because the user went on
        self._response_pending = False  # response.create sent, not yet created
        self._cancel_created = False  # cancel the pending response as soon as it is created
        self._calls_pending: set[str] = set()
        self._outputs_ready: list[dict[str, Any]] = []
        self._announcements: deque[str] = deque(maxlen=MAX_PENDING_ANNOUNCEMENTS)
        self._history: deque[tuple[float, str, str]] = deque(maxlen=max(1, cfg.context_turns * 2))
        self.budget_exhausted = False
        self.dropped_turns = 0
        self.reconnects = 0
        self._closing = ""  # why we asked the shell to hang up, until it reports the close
        self.errors: dict[str, int] = {}

    # -- the user's turns (from the turn gate) ----------------------------------------------------
    def turn_started(self, now_ms: float, barge_in: bool, playing_item: str, played_ms: int) -> list[Command]:
        """A turn opened. On barge-in the speaker pauses at once; the reply is cancelled only
        when the turn is confirmed (see `turn_confirmed`)."""
        out: list[Command] = []
        if barge_in or playing_item:
            out.append(PausePlayback())
            self._interruption = _Interruption(playing_item, played_ms)
        elif self._reply_on_its_way():
            # the user goes on before the reply to their last words was heard (a pause read as
            # the end): the reply waits, and once this turn proves to be speech it is
            # cancelled, so both turns are answered together instead of half a sentence
            assert self._turn is not None
            out.append(PausePlayback())
            self._interruption = _Interruption(self._turn.reply_item, 0, went_on=True)
        self._turns += 1
        if self.budget_exhausted:
            self.dropped_turns += 1
            out.append(Log("warning", "daily budget reached: the turn is not sent (no session is opened)"))
            return out
        t = _Turn(self._turns, barge_in)
        if self._turn is not None and self._turn.committed:
            if len(self._queue) == self._queue.maxlen:
                self.dropped_turns += 1
                out.append(Log("warning", f"turn {self._queue[0].number} dropped: too many turns unanswered"))
            self._queue.append(t)  # the previous turn still awaits its answer
        else:
            self._turn = t
        self._last_activity_ms = now_ms
        return out + self._ensure_link(now_ms)

    def _reply_on_its_way(self) -> bool:
        """A committed turn's reply is being generated and none of it has played."""
        t = self._turn
        return (
            t is not None
            and t.sent_commit
            and not self._queue
            and (bool(self._response) or self._response_pending)
            and self._interruption is None
            and not self._calls_pending
            and not self._outputs_ready
        )

    @property
    def settled(self) -> bool:
        """Nothing asked of the other side is outstanding: no connection being opened, no
        response asked for or still arriving, no tool call running. A simulation that waits
        for this before its clock moves on gets the same conversation every time."""
        return (
            self.link is not Link.CONNECTING
            and not self._response
            and not self._response_pending
            and not self._calls_pending
        )

    @property
    def turns(self) -> int:
        """Turns opened so far; `TurnDone.turn` numbers them."""
        return self._turns

    def turn_audio(self, now_ms: float, audio_b64: str) -> list[Command]:
        """Appended audio: base64 PCM16 at the API's rate, kept for a re-send."""
        t = self._speaking()
        if t is None:
            return []
        if t.full or t.chars + len(audio_b64) > MAX_TURN_B64_CHARS:
            # the gate commits at gate.max_turn_ms (at most 60 s), so this is a caller's bug
            if t.full:
                return []
            t.full = True
            return [
                Log("warning", f"turn {t.number}: longer than the resend buffer; audio beyond it dropped")
            ]
        t.chunks.append(audio_b64)
        t.chars += len(audio_b64)
        t.uploaded_ms += p.b64_pcm_ms(audio_b64)
        self._last_activity_ms = now_ms
        if self.link is Link.UP and t is self._turn:
            return [Send(self.ev.append(audio_b64))]
        return []

    def turn_confirmed(self, now_ms: float) -> list[Command]:
        """The turn holds enough speech to be the user's: an interrupted reply is stopped for
        good, cancelled, and its item truncated at what the user actually heard."""
        if self._interruption is None:
            return []
        held, self._interruption = self._interruption, None
        item, played_ms = held.item, held.played_ms
        if held.went_on:
            self.joined_turns += 1
            why = "the user went on speaking: the reply is cancelled before it played; one answers both turns"
        else:
            heard = f"after {played_ms} ms of it" if item else "before it played"
            why = f"barge-in: the reply is cut {heard}"
        out: list[Command] = [StopPlayback(), Log("info", why)]
        # the rest of this reply, still arriving, must not restart the speaker
        self._silenced = self._response or self._silenced
        if self.link is Link.UP:
            if self._response:
                out.append(Send(self.ev.response_cancel()))
            elif self._response_pending:
                self._cancel_created = True  # asked for, not yet created: cancel it once it is
            if item:
                out.append(Send(self.ev.truncate(item, played_ms)))
        return out

    def turn_committed(self, now_ms: float, end_to_commit_ms: float | None = None) -> list[Command]:
        out = self.turn_confirmed(now_ms)  # a gate always confirms first; this keeps it so
        t = self._speaking()
        if t is None:
            return out
        t.committed = True
        t.end_to_commit_ms = end_to_commit_ms
        self._last_activity_ms = now_ms
        if self.link is Link.UP and t is self._turn:
            return out + self._commit(now_ms, t)
        return out

    def turn_discarded(self, now_ms: float) -> list[Command]:
        """Too short to be speech: whatever was appended is cleared, nothing is billed further,
        and a reply it paused plays on."""
        out: list[Command] = []
        if self._interruption is not None:
            self._interruption = None
            self.resumed_replies += 1
            out += [ResumePlayback(), Log("info", "reply resumed: the interruption was too short for speech")]
        t = self._speaking()
        if t is None:
            return out
        if t is self._turn:
            self._turn = None
            if self.link is Link.UP and t.chunks:
                out.append(Send(self.ev.clear()))
        else:
            self._queue.remove(t)
        return out

    def announce(self, now_ms: float, instructions: str) -> list[Command]:
        """Something to say unprompted (a timer fired): a response with these instructions."""
        self._announcements.append(instructions)
        self._last_activity_ms = now_ms
        return self._ensure_link(now_ms) + self._maybe_announce()

    def _speaking(self) -> _Turn | None:
        """The turn the gate is currently feeding: the newest one not yet committed."""
        if self._queue:
            return None if self._queue[-1].committed else self._queue[-1]
        t = self._turn
        return t if t is not None and not t.committed else None

    def _commit(self, now_ms: float, t: _Turn) -> list[Command]:
        if t.uploaded_ms < p.MIN_COMMIT_MS:
            # the service refuses commits under 100 ms; such a turn was noise anyway
            self._turn = None
            return [
                Send(self.ev.clear()),
                Log("info", f"turn {t.number}: under 100 ms, cleared"),
                *self._next_turn(now_ms),
            ]
        t.sent_commit = True
        t.commit_at_ms = now_ms
        return [Send(self.ev.commit()), *self._maybe_respond()]

    def _maybe_respond(self) -> list[Command]:
        t = self._turn
        if t is None or not t.sent_commit or self._response or self._response_pending or t.responses:
            return []
        self._response_pending = True
        t.responses += 1
        return [Send(self.ev.response_create())]

    def _maybe_announce(self) -> list[Command]:
        if self.link is not Link.UP or self._response or self._response_pending or self._turn is not None:
            return []
        if not self._announcements:
            return []
        self._response_pending = True
        return [Send(self.ev.response_create(self._announcements.popleft()))]

    def _next_turn(self, now_ms: float) -> list[Command]:
        """The current turn is answered: the next queued one goes out."""
        self._turn = self._queue.popleft() if self._queue else None
        out: list[Command] = []
        if self._turn is not None and self.link is Link.UP:
            out += self._send_turn(now_ms, self._turn)
        return out + self._maybe_announce()

    def _send_turn(self, now_ms: float, t: _Turn) -> list[Command]:
        out: list[Command] = [Send(self.ev.append(c)) for c in _coalesce(t.chunks, RESEND_CHUNK_BYTES)]
        t.sent_commit = False
        t.responses = 0
        if t.committed:
            out += self._commit(now_ms, t)
        return out

    # -- the connection ----------------------------------------------------------------------------
    def _ensure_link(self, now_ms: float) -> list[Command]:
        if self.link is not Link.DOWN or self.budget_exhausted:
            return []
        if self._retry_at is not None and now_ms < self._retry_at:
            return []  # backing off; `tick` connects when it is time
        self.link = Link.CONNECTING
        return [Connect()]

    def connected(self, now_ms: float) -> list[Command]:
        """The WebSocket is open: configure the session, seed it, send what waited."""
        if self._attempts:
            self.reconnects += 1
        self.link = Link.UP
        self._attempts = 0
        self._retry_at = None
        self._session_start_ms = now_ms
        self._last_activity_ms = now_ms
        self._response = ""
        self._response_pending = False
        self._cancel_created = False
        self._calls_pending.clear()
        self._outputs_ready.clear()
        out: list[Command] = [Send(self.ev.session_update(self.cfg.settings))]
        for at, role, text in self._history:
            if now_ms - at <= self.cfg.context_keep_ms:
                out.append(Send(self.ev.message(role, text)))
        if self._turn is not None:
            if self._turn.heard_reply:
                # it was answered, only the end of the answer was lost
                out += self._finish_turn(now_ms, "interrupted by disconnect")
            else:
                out += self._send_turn(now_ms, self._turn)
        return out + self._maybe_announce()

    def connect_failed(self, now_ms: float, reason: str, auth: bool = False) -> list[Command]:
        self.link = Link.DOWN
        self._attempts += 1
        if auth:
            return [self._key_rejected(now_ms, reason)]
        wait = self._backoff_ms()
        return [
            Log("warning", f"connection failed ({reason}); retry in {wait:.0f} ms"),
            *self._schedule(now_ms, wait),
        ]

    def disconnected(self, now_ms: float, reason: str) -> list[Command]:
        """The connection ended: dropped, closed by the server, or closed because we asked."""
        requested, self._closing = self._closing, ""
        self.link = Link.DOWN
        self._response = ""
        self._response_pending = False
        self._cancel_created = False
        why = requested or reason
        if self._turn is None and not self._announcements:
            return [Log("info", f"disconnected ({why})")]
        if self._retry_at is not None and self._retry_at > now_ms:
            return [Log("info", f"disconnected ({why})")]  # a retry is already set (a rejected key)
        if requested == "session expired":
            self._attempts = 0
            wait = 0.0  # a fresh session right away, seeded with the conversation
        else:
            self._attempts += 1
            wait = self._backoff_ms() if self._attempts > 1 else 0.0
        out: list[Command] = [Log("warning", f"disconnected ({why}) with a turn in flight; reconnecting")]
        return out + self._schedule(now_ms, wait)

    def _hang_up(self, reason: str) -> Disconnect:
        """Ask the shell to close; it reports back through `disconnected`."""
        self._closing = reason
        return Disconnect(reason)

    def _key_rejected(self, now_ms: float, reason: str) -> Log:
        """A rejected key needs a human: the next attempt waits long, whichever way it was refused."""
        wait = self.cfg.bad_key_retry_ms
        self._retry_at = now_ms + wait
        return Log(
            "error", f"the API key was rejected ({reason}); retrying in {wait / 1000:.0f} s — fix the key"
        )

    def _backoff_ms(self) -> float:
        return backoff_ms(self._attempts, self.cfg.reconnect_min_ms, self.cfg.reconnect_max_ms, self._rng)

    def _schedule(self, now_ms: float, wait_ms: float) -> list[Command]:
        self._retry_at = now_ms + wait_ms
        if wait_ms <= 0:
            self._retry_at = None
            return self._ensure_link(now_ms)
        return []

    def tick(self, now_ms: float) -> list[Command]:
        """Time passed: retry a connection, hang up when idle, renew an old session."""
        if self.link is Link.DOWN:
            wanted = self._turn is not None or bool(self._announcements)
            if wanted and self._retry_at is not None and now_ms >= self._retry_at:
                self._retry_at = None
                return self._ensure_link(now_ms)
            return []
        if self.link is not Link.UP or not self._idle():
            return []
        if now_ms - self._last_activity_ms >= self.cfg.idle_disconnect_ms:
            return [self._hang_up("idle")]
        if now_ms - self._session_start_ms >= self.cfg.renew_after_ms:
            return [self._hang_up("session renewal before the 60-minute limit")]
        return []

    def _idle(self) -> bool:
        return (
            self._turn is None
            and not self._queue
            and not self._response
            and not self._response_pending
            and not self._calls_pending
        )

    def set_budget_exhausted(self, exhausted: bool) -> list[Command]:
        if exhausted == self.budget_exhausted:
            return []
        self.budget_exhausted = exhausted
        if exhausted:
            return [Log("warning", "daily budget reached: no new sessions until tomorrow")]
        return [Log("info", "daily budget available again")]

    # -- server events -------------------------------------------------------------------------
    def server_message(self, now_ms: float, text: str | bytes) -> list[Command]:
        try:
            ev = p.parse_server_event(text)
        except p.ProtocolError as e:
            return [Log("warning", f"malformed server event skipped: {e}")]
        return self.server_event(now_ms, ev)

    def server_event(self, now_ms: float, ev: p.ServerEvent) -> list[Command]:
        self._last_activity_ms = now_ms
        t = self._turn
        match ev:
            case p.ResponseCreated(rid):
                self._response = rid
                self._response_pending = False
                if self._cancel_created:
                    self._cancel_created = False
                    self._silenced = rid
                    return [Send(self.ev.response_cancel())]
            case p.AudioDelta(rid, item, pcm):
                if rid == self._silenced:
                    return []
                if t is not None and not t.heard_reply:
                    t.heard_reply = True
                    t.first_audio_ms = now_ms
                    t.reply_item = item
                    held = self._interruption
                    if held is not None and held.went_on:
                        held.item = item  # arrived while held: cut at 0 ms
                return [Play(item, pcm)]
            case p.AudioDone(rid, item):
                return [] if rid == self._silenced else [EndItem(item)]
            case p.UserTranscript(_, text):
                self._remember(now_ms, "user", text)
                return [Log("info", f"user: {text}")]
            case p.AssistantTranscript(_, _, text):
                self._remember(now_ms, "assistant", text)
                return [Log("info", f"assistant: {text}")]
            case p.FunctionCall(_, _, call_id, name, args):
                self._calls_pending.add(call_id)
                return [RunTool(call_id, name, args)]
            case p.ResponseDone():
                return self._response_done(now_ms, ev)
            case p.ServerError():
                return self._error(now_ms, ev)
        return []

    def _remember(self, now_ms: float, role: str, text: str) -> None:
        if text.strip():
            self._history.append((now_ms, role, text.strip()))

    def _response_done(self, now_ms: float, ev: p.ResponseDone) -> list[Command]:
        self._response = ""
        self._response_pending = False
        t = self._turn
        out: list[Command] = []
        if t is not None and t.sent_commit and ev.usage:
            t.usage.append(ev.usage)
        if ev.status == "failed":
            out.append(Log("error", f"response {ev.response_id} failed ({ev.reason or 'no reason given'})"))
        if ev.function_calls and ev.status == "completed":
            out += self._flush_outputs()
            return out
        if t is not None and t.sent_commit:
            out += self._finish_turn(now_ms, ev.status)
        else:
            out += self._maybe_respond() + self._maybe_announce()
        return out

    def tool_result(self, now_ms: float, call_id: str, output: str) -> list[Command]:
        if call_id not in self._calls_pending:
            return [Log("warning", f"tool result for unknown call {call_id} dropped")]
        self._outputs_ready.append(self.ev.function_output(call_id, output))
        self._calls_pending.discard(call_id)
        return self._flush_outputs()

    def _flush_outputs(self) -> list[Command]:
        """All calls of a response answered: send the outputs, then ask for the spoken answer."""
        if self._calls_pending or not self._outputs_ready or self._response or self.link is not Link.UP:
            return []
        out: list[Command] = [Send(e) for e in self._outputs_ready]
        self._outputs_ready.clear()
        self._response_pending = True
        if self._turn is not None:
            self._turn.responses += 1
        return [*out, Send(self.ev.response_create())]

    def _finish_turn(self, now_ms: float, status: str) -> list[Command]:
        t = self._turn
        assert t is not None
        latency = None
        if t.first_audio_ms is not None and t.commit_at_ms is not None:
            latency = t.first_audio_ms - t.commit_at_ms
        done = TurnDone(
            t.number, t.uploaded_ms, latency, t.end_to_commit_ms, tuple(t.usage), status, t.barge_in
        )
        return [done, *self._next_turn(now_ms)]

    def _error(self, now_ms: float, e: p.ServerError) -> list[Command]:
        self.errors[e.code] = self.errors.get(e.code, 0) + 1
        where = f" (client event {e.client_event_id})" if e.client_event_id else ""
        line = f"server error {e.code}{where} [{e.event_id}]: {e.message}"
        if e.code == "response_cancel_not_active":
            return [Log("debug", line)]  # the reply had already been generated: harmless
        if e.code == "session_expired":
            return [Log("warning", line), self._hang_up("session expired")]
        if e.code in ("invalid_api_key", "authentication_error"):
            return [Log("error", line), self._key_rejected(now_ms, e.code), self._hang_up("API key rejected")]
        if e.code == "input_audio_buffer_commit_empty" and self._turn is not None and self._turn.sent_commit:
            return [Log("warning", line), *self._finish_turn(now_ms, "commit_empty")]
        return [Log("error", line)]
