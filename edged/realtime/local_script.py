"""The local server's knobs and its memory: scripted turns, injected faults, per-connection records.

Tests and the demo need to make the server misbehave at an exact moment
(drop the link at the next commit, expire the session three deltas into a
reply) and to check afterwards what the client really sent (how much audio,
which truncation, which function output). These are plain data, kept apart
from the socket code so a test can build and read them directly.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

RECORD_EVENTS = 2000  # received events (and commits, responses, errors) kept per connection

FaultAction = Literal["drop", "close", "error", "session_expired", "malformed"]
FaultTrigger = Literal["now", "connect", "commit", "response", "delta"]
MalformedKind = Literal["not_json", "no_type", "missing_field"]
FAULT_ACTIONS: tuple[str, ...] = ("drop", "close", "error", "session_expired", "malformed")
FAULT_TRIGGERS: tuple[str, ...] = ("now", "connect", "commit", "response", "delta")
MALFORMED_KINDS: tuple[str, ...] = ("not_json", "no_type", "missing_field")


@dataclass(frozen=True)
class Fault:
    """One misbehaviour, fired once when its trigger comes.

    trigger: `connect` (after session.created), `commit` / `response` (when the
    client sends input_audio_buffer.commit / response.create: the event is then
    answered by the fault instead of being processed, as a failing service
    would), `delta` (right after the `after_deltas`-th audio delta of a
    response; the stream goes on unless the connection ends), `now`
    (applied at once by `LocalRealtimeServer.inject`).
    action: `drop` (TCP abort, no close frame: the client sees 1006), `close`
    (a clean close with `close_code`), `error` (an `error` event with
    `error_type`/`code`/`message`), `session_expired` (the service's error
    then close 1001), `malformed` (`not_json`, `no_type` or `missing_field`:
    an audio delta without `item_id`).
    """

    action: FaultAction
    trigger: FaultTrigger = "now"
    after_deltas: int = 1
    code: str = "server_error"
    message: str = "The server had an error while processing your request (injected by the local server)."
    error_type: str = "server_error"
    close_code: int = 1011
    malformed: MalformedKind = "not_json"

    def __post_init__(self) -> None:
        if self.action not in FAULT_ACTIONS:
            raise ValueError(f"fault action {self.action!r}: expected one of {', '.join(FAULT_ACTIONS)}")
        if self.trigger not in FAULT_TRIGGERS:
            raise ValueError(f"fault trigger {self.trigger!r}: expected one of {', '.join(FAULT_TRIGGERS)}")
        if self.malformed not in MALFORMED_KINDS:
            raise ValueError(
                f"malformed kind {self.malformed!r}: expected one of {', '.join(MALFORMED_KINDS)}"
            )
        if self.after_deltas < 1:
            raise ValueError("after_deltas counts from 1")

    @classmethod
    def parse(cls, spec: str) -> Fault:
        """`ACTION[:ARG][@TRIGGER[:N]]`, e.g. `drop@commit`, `drop@delta:5`,
        `error:rate_limit_exceeded@response`, `malformed:no_type@delta:2`, `close:1011@connect`,
        `session_expired@response`. Without a trigger the fault is `now`."""
        head, _, when = spec.partition("@")
        action, _, arg = head.partition(":")
        trigger, _, n = (when or "now").partition(":")
        kwargs: dict[str, Any] = {"action": action, "trigger": trigger}
        if n:
            if trigger != "delta" or not n.isdigit():
                raise ValueError(f"fault {spec!r}: only @delta:N takes a count")
            kwargs["after_deltas"] = int(n)
        if arg:
            if action == "error":
                kwargs["code"] = arg
            elif action == "malformed":
                kwargs["malformed"] = arg
            elif action == "close" and arg.isdigit():
                kwargs["close_code"] = int(arg)
            else:
                raise ValueError(f"fault {spec!r}: {action} takes no argument {arg!r}")
        return cls(**kwargs)


@dataclass(frozen=True)
class Turn:
    """What one response does. `speak`: a bundled sentence (index or name; None rotates),
    said `repeat` times; `call`: a function call with `arguments`; `fail`: a failed
    response with that error code (e.g. a rate limit)."""

    speak: int | str | None = None
    repeat: int = 1
    call: str | None = None
    arguments: Mapping[str, Any] | str = field(default_factory=dict)
    fail: str | None = None
    message: str = "The response failed (scripted by the local server)."

    @classmethod
    def from_spec(cls, spec: Turn | Mapping[str, Any]) -> Turn:
        if isinstance(spec, Turn):
            return spec
        unknown = set(spec) - {"speak", "repeat", "call", "arguments", "fail", "message"}
        if unknown:
            raise ValueError(f"script entry {dict(spec)!r}: unknown keys {sorted(unknown)}")
        return cls(**spec)


@dataclass
class CommittedTurn:
    """A committed user turn as the server received it (audio kept only with keep_audio)."""

    item_id: str
    audio_ms: float
    sha256: str
    pcm: bytes | None = None


@dataclass
class ConnectionRecord:
    """What one connection received and did, for tests to assert on. Bounded: the logs
    keep the last `RECORD_EVENTS` entries (audio payloads replaced by byte counts);
    the counters keep counting."""

    index: int
    model: str | None
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_EVENTS))
    counts: Counter[str] = field(default_factory=Counter)
    sent_counts: Counter[str] = field(default_factory=Counter)
    appended_bytes: int = 0
    commits: deque[CommittedTurn] = field(default_factory=lambda: deque(maxlen=RECORD_EVENTS))
    truncations: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_EVENTS))
    function_outputs: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_EVENTS))
    responses: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_EVENTS))
    errors_sent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECORD_EVENTS))
    faults_fired: deque[str] = field(default_factory=lambda: deque(maxlen=RECORD_EVENTS))
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def received(self, event_type: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == event_type]

    def log_event(self, ev: dict[str, Any]) -> None:
        self.events.append(summarize(ev))


def summarize(ev: dict[str, Any]) -> dict[str, Any]:
    """The event without audio payloads or long strings, so the record stays small."""
    if ev.get("type") == "input_audio_buffer.append" and isinstance(ev.get("audio"), str):
        out = {k: v for k, v in ev.items() if k != "audio"}
        out["audio_bytes"] = len(ev["audio"]) * 3 // 4 - ev["audio"][-2:].count("=")
        return out
    return _shrink(ev)


def _shrink(v: Any) -> Any:
    if isinstance(v, str) and len(v) > 1024:
        return f"<{len(v)} characters>"
    if isinstance(v, dict):
        return {k: _shrink(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_shrink(x) for x in v]
    return v
