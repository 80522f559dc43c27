"""The GA Realtime wire format: client events built, server events parsed.

Sans-I/O: plain dicts in, typed records out, no sockets. The 2024 beta shape is
rejected by the service, so nothing here speaks it; tests check every client
event against the `openai` SDK's own GA types. Parsing is strict about what
edged relies on (ids, audio) and lenient about everything else, so a server
that adds fields keeps working while a malformed event is reported, not
half-applied.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from ..upload import API_RATE_HZ

BYTES_PER_MS = API_RATE_HZ * 2 // 1000  # PCM16 mono
MIN_COMMIT_MS = 100  # shorter commits get `input_audio_buffer_commit_empty`


def b64_pcm_ms(audio_b64: str) -> float:
    """Length of base64 PCM16 audio, from the text alone: nothing is decoded."""
    n_bytes = len(audio_b64) // 4 * 3 - audio_b64[-2:].count("=")
    return n_bytes / BYTES_PER_MS


class ProtocolError(ValueError):
    """A server event edged cannot use; logged and skipped, never fatal."""


@dataclass(frozen=True)
class SessionSettings:
    """What `session.update` tells the service; from the YAML `realtime` section."""

    instructions: str = ""
    voice: str = "marin"
    transcription_model: str = ""  # empty: no transcript of the user's audio
    transcription_language: str = ""
    noise_reduction: str = "far_field"  # "near_field", "far_field" or "off"
    tools: tuple[dict[str, Any], ...] = ()


class ClientEvents:
    """Builds client events, each with its own `event_id` so errors can be traced back."""

    def __init__(self, prefix: str = "edged") -> None:
        self._ids = itertools.count(1)
        self._prefix = prefix

    def _event(self, kind: str, **body: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"{self._prefix}_{next(self._ids)}", **body}

    def session_update(self, s: SessionSettings) -> dict[str, Any]:
        pcm = {"type": "audio/pcm", "rate": API_RATE_HZ}
        audio_in: dict[str, Any] = {"format": pcm, "turn_detection": None}
        if s.transcription_model:
            tr = {"model": s.transcription_model}
            if s.transcription_language:
                tr["language"] = s.transcription_language
            audio_in["transcription"] = tr
        audio_in["noise_reduction"] = None if s.noise_reduction == "off" else {"type": s.noise_reduction}
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "audio": {"input": audio_in, "output": {"format": dict(pcm), "voice": s.voice}},
        }
        if s.instructions:
            session["instructions"] = s.instructions
        if s.tools:
            session["tools"] = [dict(t) for t in s.tools]
            session["tool_choice"] = "auto"
        return self._event("session.update", session=session)

    def append(self, audio_b64: str) -> dict[str, Any]:
        return self._event("input_audio_buffer.append", audio=audio_b64)

    def commit(self) -> dict[str, Any]:
        return self._event("input_audio_buffer.commit")

    def clear(self) -> dict[str, Any]:
        return self._event("input_audio_buffer.clear")

    def response_create(self, instructions: str = "") -> dict[str, Any]:
        if instructions:
            return self._event("response.create", response={"instructions": instructions})
        return self._event("response.create")

    def response_cancel(self, response_id: str = "") -> dict[str, Any]:
        return self._event("response.cancel", **({"response_id": response_id} if response_id else {}))

    def truncate(self, item_id: str, audio_end_ms: int) -> dict[str, Any]:
        return self._event(
            "conversation.item.truncate", item_id=item_id, content_index=0, audio_end_ms=int(audio_end_ms)
        )

    def function_output(self, call_id: str, output: str) -> dict[str, Any]:
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        return self._event("conversation.item.create", item=item)

    def message(self, role: str, text: str) -> dict[str, Any]:
        """A past turn as text, to seed a new session with the conversation so far."""
        kind = "output_text" if role == "assistant" else "input_text"
        item = {"type": "message", "role": role, "content": [{"type": kind, "text": text}]}
        return self._event("conversation.item.create", item=item)


# -- server events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionReady:
    kind: str  # "session.created" or "session.updated"


@dataclass(frozen=True)
class Committed:
    item_id: str


@dataclass(frozen=True)
class Cleared:
    pass


@dataclass(frozen=True)
class ResponseCreated:
    response_id: str


@dataclass(frozen=True)
class AudioDelta:
    response_id: str
    item_id: str
    pcm: bytes = field(repr=False)  # PCM16 LE mono at API_RATE_HZ


@dataclass(frozen=True)
class AudioDone:
    response_id: str
    item_id: str


@dataclass(frozen=True)
class AssistantTranscript:
    response_id: str
    item_id: str
    transcript: str


@dataclass(frozen=True)
class UserTranscript:
    item_id: str
    transcript: str


@dataclass(frozen=True)
class FunctionCall:
    response_id: str
    item_id: str
    call_id: str
    name: str
    arguments: str  # JSON text, as the model wrote it


@dataclass(frozen=True)
class ResponseDone:
    response_id: str
    status: str  # completed | cancelled | failed | incomplete
    reason: str
    usage: dict[str, Any]
    function_calls: int  # calls in this response's output: the client must answer them


@dataclass(frozen=True)
class Truncated:
    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class ServerError:
    code: str
    message: str
    kind: str  # the error's `type`
    client_event_id: str  # the client event that caused it, if the server says
    event_id: str


@dataclass(frozen=True)
class Ignored:
    """An event edged does not act on (rate limits, content parts, …)."""

    kind: str


ServerEvent = (
    SessionReady
    | Committed
    | Cleared
    | ResponseCreated
    | AudioDelta
    | AudioDone
    | AssistantTranscript
    | UserTranscript
    | FunctionCall
    | ResponseDone
    | Truncated
    | ServerError
    | Ignored
)


def _str(ev: dict[str, Any], key: str) -> str:
    v = ev.get(key)
    if not isinstance(v, str) or not v:
        raise ProtocolError(f"{ev.get('type')}: missing or empty {key!r}")
    return v


def _opt_str(d: Any, key: str) -> str:
    v = d.get(key) if isinstance(d, dict) else None
    return v if isinstance(v, str) else ""


def _audio(ev: dict[str, Any]) -> bytes:
    try:
        pcm = base64.b64decode(_str(ev, "delta"), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError(f"{ev.get('type')}: audio is not base64 ({e})") from None
    if len(pcm) % 2:
        raise ProtocolError(f"{ev.get('type')}: odd number of PCM16 bytes ({len(pcm)})")
    return pcm


def _response_done(ev: dict[str, Any]) -> ResponseDone:
    r = ev.get("response")
    if not isinstance(r, dict):
        raise ProtocolError("response.done: missing 'response'")
    details = r.get("status_details")
    usage = r.get("usage")
    output = r.get("output")
    calls = (
        sum(1 for o in output if isinstance(o, dict) and o.get("type") == "function_call")
        if isinstance(output, list)
        else 0
    )
    return ResponseDone(
        _str(r, "id"),
        _opt_str(r, "status") or "completed",
        _opt_str(details, "reason"),
        usage if isinstance(usage, dict) else {},
        calls,
    )


def _error(ev: dict[str, Any]) -> ServerError:
    e = ev.get("error")
    if not isinstance(e, dict):
        raise ProtocolError("error: missing 'error'")
    return ServerError(
        _opt_str(e, "code") or "unknown",
        _opt_str(e, "message"),
        _opt_str(e, "type"),
        _opt_str(e, "event_id"),
        _opt_str(ev, "event_id"),
    )


_PARSERS: dict[str, Any] = {
    "session.created": lambda ev: SessionReady("session.created"),
    "session.updated": lambda ev: SessionReady("session.updated"),
    "input_audio_buffer.committed": lambda ev: Committed(_str(ev, "item_id")),
    "input_audio_buffer.cleared": lambda ev: Cleared(),
    "response.created": lambda ev: ResponseCreated(_str(ev.get("response") or {}, "id")),
    "response.output_audio.delta": lambda ev: AudioDelta(
        _str(ev, "response_id"), _str(ev, "item_id"), _audio(ev)
    ),
    "response.output_audio.done": lambda ev: AudioDone(_str(ev, "response_id"), _str(ev, "item_id")),
    "response.output_audio_transcript.done": lambda ev: AssistantTranscript(
        _str(ev, "response_id"), _str(ev, "item_id"), _opt_str(ev, "transcript")
    ),
    "conversation.item.input_audio_transcription.completed": lambda ev: UserTranscript(
        _str(ev, "item_id"), _opt_str(ev, "transcript")
    ),
    "response.function_call_arguments.done": lambda ev: FunctionCall(
        _str(ev, "response_id"),
        _str(ev, "item_id"),
        _str(ev, "call_id"),
        _str(ev, "name"),
        _opt_str(ev, "arguments"),
    ),
    "response.done": _response_done,
    "conversation.item.truncated": lambda ev: Truncated(
        _str(ev, "item_id"), int(ev.get("audio_end_ms") or 0)
    ),
    "error": _error,
}


def parse_server_event(text: str | bytes) -> ServerEvent:
    """One WebSocket message → a typed event; `ProtocolError` if edged cannot use it."""
    try:
        ev = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(f"not JSON: {e}") from None
    if not isinstance(ev, dict):
        raise ProtocolError(f"not a JSON object: {type(ev).__name__}")
    kind = ev.get("type")
    if not isinstance(kind, str):
        raise ProtocolError("event without a 'type'")
    parser = _PARSERS.get(kind)
    if parser is None:
        return Ignored(kind)
    try:
        return parser(ev)
    except (TypeError, AttributeError, ValueError) as e:
        if isinstance(e, ProtocolError):
            raise
        raise ProtocolError(f"{kind}: malformed ({e})") from None


def elide_audio(event: Any) -> Any:
    """The event as a trace line: audio payloads (`audio`, audio `delta`) replaced by their size."""
    if isinstance(event, list):
        return [elide_audio(v) for v in event]
    if not isinstance(event, dict):
        return event
    audio_delta = str(event.get("type", "")).endswith("audio.delta")
    out = {}
    for k, v in event.items():
        if isinstance(v, str) and (k == "audio" or (k == "delta" and audio_delta)):
            out[k] = f"<{len(v) * 3 // 4} bytes>"
        else:
            out[k] = elide_audio(v)
    return out
