"""A local server that speaks the OpenAI Realtime API (GA shape) over a real WebSocket.

Development, tests and the demo need the service's behaviour without its
bill, its network or its moods, and they need its moods on request: dropped
connections, errors, `session_expired`, slow and malformed frames. This
server implements the manual-turn subset edged uses (`turn_detection: null`):
session.update, appended audio, commits with the 100 ms minimum, responses
streamed as `response.output_audio.delta` of real recorded speech with their
transcripts and `usage`, cancel, truncate and function-call round trips.
It stands on plain dicts and JSON, independent of edged's own protocol code,
so the two check each other; its events parse with the `openai` SDK's types.

Known differences from the service: no real recognition (transcripts are
scripted or a placeholder), no server VAD, PCM at 24 kHz only, no prompt
caching, and the handshake is simplified (see `LocalRealtimeServer`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import itertools
import json
import logging
import signal
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .local_checks import (
    EVENT_KEYS,
    ClientError,
    check_event_keys,
    check_item,
    check_response_params,
    check_session,
    check_truncate,
    expect,
    invalid_type,
    invalid_value,
    missing,
)
from .local_conversation import (
    Conversation,
    Item,
    assistant_audio_tokens,
    default_session,
    item_from_client,
    merge_session,
    usage,
)
from .local_script import CommittedTurn, ConnectionRecord, Fault, FaultTrigger, MalformedKind, Turn
from .local_voice import (
    BYTES_PER_MS,
    RATE_HZ,
    Reply,
    bundled_replies,
    chunk_pcm,
    text_tokens,
    transcript_schedule,
)

__all__ = ["CommittedTurn", "ConnectionRecord", "Fault", "LocalRealtimeServer", "Turn", "serve"]

log = logging.getLogger(__name__)
# websockets logs every handshake header at DEBUG, the Authorization key included, and every
# frame; its logger for this server stays at INFO whatever the root level is.
_ws_log = logging.getLogger(f"{__name__}.websockets")
_ws_log.setLevel(logging.INFO)

PATH = "/v1/realtime"
DEFAULT_PORT = 8765
MIN_COMMIT_MS = 100  # the service's minimum (realtime-protocol.md §3)
MAX_APPEND_BYTES = 15 * 1024 * 1024  # the service's limit per input_audio_buffer.append
MAX_BUFFER_BYTES = 15 * 1024 * 1024  # local cap on the uncommitted buffer (about 5.5 minutes)
SESSION_MAX_S = 3600.0
RECORD_CONNECTIONS = 64

CLOSE_GOING_AWAY = 1001  # session_expired, server shutdown
CLOSE_POLICY_VIOLATION = 1008  # wrong API key
CLOSE_INTERNAL_ERROR = 1011
CLOSE_BETA_SHAPE = 4000  # OpenAI-Beta header (realtime-protocol.md §1)

BETA_MESSAGE = "The Realtime Beta API is no longer supported. Please use /v1/realtime for the GA API."
API_KEY_MESSAGE = (
    "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys."
)
EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
COMMIT_EMPTY_MESSAGE = (
    "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
    "but buffer only has {ms:.2f}ms of audio."
)
ACTIVE_RESPONSE_MESSAGE = (
    "Conversation already has an active response in progress: {id}. "
    "Wait until the response is finished before creating a new one."
)
CANCEL_NOT_ACTIVE_MESSAGE = "Cancellation failed: no active response found"
PLACEHOLDER_TRANSCRIPT = "[{s:.2f} s of audio; the local server does not transcribe]"


class _Ended(Exception):
    """The connection was dropped or closed by a fault; stop handling it."""


@dataclass
class _Response:
    id: str
    turn: Turn
    modalities: list[str]
    in_conversation: bool
    max_output_tokens: int | str
    metadata: Any
    input_usage: dict[str, int]
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    status: str = "in_progress"
    audio_bytes: int = 0
    text: str = ""
    item: Item | None = None  # the output item once it is in the conversation

    def over_budget(self, audio_bytes: int, text: str) -> bool:
        """max_output_tokens reached: the service ends the response `incomplete`."""
        if self.max_output_tokens == "inf":
            return False
        spent = assistant_audio_tokens(audio_bytes / BYTES_PER_MS) + text_tokens(text)
        return spent > int(self.max_output_tokens)


def _message_item(item_id: str, role: str, status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": item_id,
        "object": "realtime.item",
        "type": "message",
        "status": status,
        "role": role,
        "content": content,
    }


def _bearer(headers: Any) -> str | None:
    value = headers.get("Authorization") if headers else None
    if not value or not value.startswith("Bearer "):
        return None
    return value[len("Bearer ") :].strip() or None


# --------------------------------------------------------------------------- one connection


class _Connection:
    """One client: its session, buffer, conversation and at most one streaming response."""

    def __init__(self, server: LocalRealtimeServer, ws: ServerConnection, record: ConnectionRecord) -> None:
        self.server = server
        self.ws = ws
        self.record = record
        self.session = default_session(record.model or "")
        self.buffer = bytearray()
        self.conversation = Conversation()
        self.active: _Response | None = None
        self.ended = False
        self.assistant_audio_sent = False
        self.conversation_id = server.new_id("conv")
        self._handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "session.update": self._session_update,
            "input_audio_buffer.append": self._append,
            "input_audio_buffer.commit": self._commit,
            "input_audio_buffer.clear": self._clear,
            "response.create": self._response_create,
            "response.cancel": self._response_cancel,
            "conversation.item.create": self._item_create,
            "conversation.item.truncate": self._truncate,
            "conversation.item.delete": self._item_delete,
            "conversation.item.retrieve": self._item_retrieve,
            "output_audio_buffer.clear": self._output_clear,
        }

    # ---- sending

    async def send(self, ev: dict[str, Any]) -> None:
        """Every server event gets a unique event_id; nothing is sent once a fault ended us."""
        if self.ended:
            raise _Ended
        ev = {"event_id": self.server.new_id("event"), **ev}
        self.record.sent_counts[ev["type"]] += 1
        await self.ws.send(json.dumps(ev))

    async def send_error(self, e: ClientError, client_event_id: str | None = None) -> None:
        err = {"type": e.error_type, "code": e.code, "message": e.message, "param": e.param}
        err["event_id"] = client_event_id
        self.record.errors_sent.append({"code": e.code, "param": e.param, "client_event_id": client_event_id})
        log.info("error to client #%d: %s (%s)", self.record.index, e.code, e.message)
        await self.send({"type": "error", "error": err})

    # ---- lifecycle

    async def run(self) -> None:
        headers = self.ws.request.headers if self.ws.request else {}
        if "OpenAI-Beta" in headers:
            await self.send_error(ClientError("beta_api_shape_disabled", BETA_MESSAGE))
            await self.ws.close(CLOSE_BETA_SHAPE, "beta API shape disabled")
            return
        if self.server.api_key is not None and _bearer(headers) != self.server.api_key:
            await self.send_error(ClientError("invalid_api_key", API_KEY_MESSAGE))
            await self.ws.close(CLOSE_POLICY_VIOLATION, "invalid API key")
            return
        expiry = asyncio.get_running_loop().call_later(
            self.server.max_session_s, lambda: self.server.spawn(self.expire())
        )
        try:
            await self.send({"type": "session.created", "session": self.session})
            await self.fire("connect")
            async for message in self.ws:
                await self.on_message(message)
        except (_Ended, ConnectionClosed):
            pass
        finally:
            expiry.cancel()
            await self._stop_response()

    async def expire(self) -> None:
        """The service's 60-minute limit: session_expired, then close 1001."""
        await self.apply(Fault("session_expired"))

    async def _stop_response(self) -> None:
        resp = self.active
        if resp is not None and resp.task is not None and resp.task is not asyncio.current_task():
            resp.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, _Ended, ConnectionClosed):
                await resp.task

    # ---- faults

    async def fire(self, trigger: FaultTrigger, deltas: int = 0) -> bool:
        """Apply the armed fault for this moment, if any; True if it answered the client event."""
        fault = self.server.take_fault(trigger, deltas)
        if fault is None:
            return False
        await self.apply(fault)
        return True

    async def apply(self, fault: Fault) -> None:
        self.record.faults_fired.append(f"{fault.action}@{fault.trigger}")
        log.warning("fault on connection #%d: %s at %s", self.record.index, fault.action, fault.trigger)
        if fault.action == "error":
            await self.send_error(ClientError(fault.code, fault.message, None, fault.error_type))
        elif fault.action == "malformed":
            await self._send_malformed(fault.malformed)
        elif fault.action == "drop":
            self.ended = True
            if self.ws.transport is not None:
                self.ws.transport.abort()
            raise _Ended
        else:
            if fault.action == "session_expired":
                await self._stop_response()
                await self.send_error(ClientError("session_expired", EXPIRED_MESSAGE))
                code, reason = CLOSE_GOING_AWAY, "session expired"
            else:
                code, reason = fault.close_code, "closed by fault injection"
            self.ended = True
            await self.ws.close(code, reason)
            raise _Ended

    async def _send_malformed(self, kind: str) -> None:
        self.record.sent_counts[f"(malformed:{kind})"] += 1
        if kind == "not_json":
            await self.ws.send('{"type": "response.output_audio.delta", "delta": ')
            return
        ev: dict[str, Any] = {"event_id": self.server.new_id("event")}
        if kind == "no_type":
            ev["note"] = "an event without a type (injected by the local server)"
        else:  # an audio delta without item_id: a client must not crash on it
            rid = self.active.id if self.active else "resp_none"
            ev.update(
                type="response.output_audio.delta", response_id=rid, output_index=0, content_index=0, delta=""
            )
        await self.ws.send(json.dumps(ev))

    # ---- receiving

    async def on_message(self, message: str | bytes) -> None:
        client_event_id = None
        try:
            ev = self._decode(message)
            client_event_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
            self.record.log_event(ev)
            ev_type = ev.get("type")
            if "type" not in ev:
                raise missing("type")
            if not isinstance(ev_type, str):
                raise invalid_type("type", "a string", ev_type)
            if ev_type not in self._handlers:
                self.record.counts["(unknown type)"] += 1
                raise invalid_value("type", ev_type, ", ".join(f"'{t}'" for t in EVENT_KEYS))
            self.record.counts[ev_type] += 1
            check_event_keys(ev)
            await self._handlers[ev_type](ev)
        except ClientError as e:
            await self.send_error(e, client_event_id)

    def _decode(self, message: str | bytes) -> dict[str, Any]:
        """The parsed JSON object; anything else is an error event and the connection stays open."""
        if isinstance(message, bytes):
            problem = "binary frames are not supported; send JSON text frames"
        else:
            try:
                ev = json.loads(message)
            except ValueError as e:
                problem = f"the message is not valid JSON ({e.msg} at position {e.pos})"
            else:
                if isinstance(ev, dict):
                    return ev
                problem = f"expected a JSON object, got {type(ev).__name__}"
        self.record.counts["(malformed)"] += 1
        raise ClientError("invalid_json", f"Invalid event: {problem}.")

    # ---- session

    async def _session_update(self, ev: dict[str, Any]) -> None:
        if "session" not in ev:
            raise missing("session")
        update = check_session(ev["session"])
        voice = ((update.get("audio") or {}).get("output") or {}).get("voice")
        if self.assistant_audio_sent and voice not in (None, self.session["audio"]["output"]["voice"]):
            raise ClientError(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                "session.audio.output.voice",
            )
        self.session = merge_session(self.session, update)
        await self.send({"type": "session.updated", "session": self.session})

    # ---- input audio

    async def _append(self, ev: dict[str, Any]) -> None:
        audio = expect(ev, "audio", str, "a string")
        limit = self.server.max_append_bytes
        if len(audio) * 3 // 4 > limit + 2:  # judged before decoding, so an oversized chunk costs nothing
            raise ClientError(
                "invalid_value",
                f"Audio chunk too large: at most {limit} bytes per input_audio_buffer.append.",
                "audio",
            )
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise ClientError(
                "invalid_value", "Invalid 'audio': expected base64-encoded PCM16.", "audio"
            ) from None
        if len(pcm) % 2:
            raise ClientError(
                "invalid_value", f"Invalid 'audio': {len(pcm)} bytes is not whole PCM16 samples.", "audio"
            )
        cap = self.server.max_buffer_bytes
        if len(self.buffer) + len(pcm) > cap:
            raise ClientError(
                "input_audio_buffer_full",
                f"The input audio buffer holds at most {cap} bytes ({cap / BYTES_PER_MS / 1000:.1f} s); "
                "commit or clear it before appending more. This chunk was dropped.",
                "audio",
            )
        self.buffer += pcm
        self.record.appended_bytes += len(pcm)

    async def _clear(self, ev: dict[str, Any]) -> None:
        self.buffer.clear()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _commit(self, ev: dict[str, Any]) -> None:
        if await self.fire("commit"):
            return
        audio_ms = len(self.buffer) / BYTES_PER_MS
        if audio_ms < MIN_COMMIT_MS:
            raise ClientError("input_audio_buffer_commit_empty", COMMIT_EMPTY_MESSAGE.format(ms=audio_ms))
        pcm = bytes(self.buffer)
        self.buffer.clear()
        item = _message_item(
            self.server.new_id("item"), "user", "completed", [{"type": "input_audio", "transcript": None}]
        )
        previous = self.conversation.insert(Item(item, audio_ms=audio_ms))
        keep = pcm if self.server.keep_audio else None
        self.record.commits.append(CommittedTurn(item["id"], audio_ms, hashlib.sha256(pcm).hexdigest(), keep))
        await self.send(
            {"type": "input_audio_buffer.committed", "item_id": item["id"], "previous_item_id": previous}
        )
        await self.send({"type": "conversation.item.added", "item": item, "previous_item_id": previous})
        await self.send({"type": "conversation.item.done", "item": item, "previous_item_id": previous})
        if self.session["audio"]["input"].get("transcription"):
            await self._transcribe(item, audio_ms)

    async def _transcribe(self, item: dict[str, Any], audio_ms: float) -> None:
        transcript = self.server.next_transcript(audio_ms)
        item["content"][0]["transcript"] = transcript
        base = {"item_id": item["id"], "content_index": 0}
        await self.send(
            {"type": "conversation.item.input_audio_transcription.delta", **base, "delta": transcript}
        )
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                **base,
                "transcript": transcript,
                "usage": {"type": "duration", "seconds": round(audio_ms / 1000, 3)},
            }
        )

    # ---- conversation items

    async def _item_create(self, ev: dict[str, Any]) -> None:
        if "item" not in ev:
            raise missing("item")
        raw = check_item(ev["item"])
        if raw["type"] == "function_call_output" and not self.conversation.has_call(raw["call_id"]):
            raise ClientError(
                "invalid_value",
                f"No function call with call_id '{raw['call_id']}' in the conversation.",
                "item.call_id",
            )
        it = item_from_client(raw, raw.get("id") or self.server.new_id("item"))
        previous = self.conversation.insert(it, ev.get("previous_item_id"))
        if raw["type"] == "function_call_output":
            self.record.function_outputs.append(
                {"item_id": it.id, "call_id": raw["call_id"], "output": raw["output"]}
            )
        await self.send({"type": "conversation.item.added", "item": it.item, "previous_item_id": previous})
        await self.send({"type": "conversation.item.done", "item": it.item, "previous_item_id": previous})

    async def _item_delete(self, ev: dict[str, Any]) -> None:
        item_id = expect(ev, "item_id", str, "a string")
        self.conversation.delete(item_id)
        await self.send({"type": "conversation.item.deleted", "item_id": item_id})

    async def _item_retrieve(self, ev: dict[str, Any]) -> None:
        it = self.conversation.find(expect(ev, "item_id", str, "a string"))
        await self.send({"type": "conversation.item.retrieved", "item": it.item})

    async def _truncate(self, ev: dict[str, Any]) -> None:
        item_id, content_index, audio_end_ms = check_truncate(ev)
        it = self.conversation.truncate(item_id, content_index, audio_end_ms)
        self.record.truncations.append(
            {"item_id": item_id, "audio_end_ms": audio_end_ms, "audio_ms": it.audio_ms}
        )
        truncated = {"item_id": item_id, "content_index": 0, "audio_end_ms": audio_end_ms}
        await self.send({"type": "conversation.item.truncated", **truncated})

    async def _output_clear(self, ev: dict[str, Any]) -> None:
        raise ClientError(
            "invalid_value",
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            "type",
        )

    # ---- responses

    async def _response_create(self, ev: dict[str, Any]) -> None:
        if self.active is not None:
            message = ACTIVE_RESPONSE_MESSAGE.format(id=self.active.id)
            raise ClientError("conversation_already_has_active_response", message)
        params = check_response_params(ev.get("response"))
        tools = params.get("tools", self.session.get("tools") or [])
        if await self.fire("response"):
            return
        turn = self.server.next_turn()
        if turn.call is not None and turn.call not in {t.get("name") for t in tools}:
            message = f"The script asks for a call to '{turn.call}' but this response has no such tool."
            raise ClientError("local_script_error", message, None, "server_error")
        instructions = params.get("instructions", self.session.get("instructions") or "")
        resp = _Response(
            id=self.server.new_id("resp"),
            turn=turn,
            modalities=params.get("output_modalities", self.session["output_modalities"]),
            in_conversation=params.get("conversation", "auto") == "auto",
            max_output_tokens=params.get("max_output_tokens", self.session.get("max_output_tokens", "inf")),
            metadata=params.get("metadata"),
            input_usage=self.conversation.input_usage(instructions, tools),
        )
        self.active = resp
        resp.task = asyncio.create_task(self._run_response(resp))

    async def _response_cancel(self, ev: dict[str, Any]) -> None:
        resp = self.active
        wanted = ev.get("response_id")
        if resp is None or (wanted is not None and wanted != resp.id):
            raise ClientError("response_cancel_not_active", CANCEL_NOT_ACTIVE_MESSAGE)
        resp.cancel.set()
        if resp.task is not None:
            with contextlib.suppress(_Ended, ConnectionClosed):
                await asyncio.shield(resp.task)  # response.done (cancelled) goes out before we read on
        if resp.status != "cancelled":  # it finished on its own before the cancel arrived
            raise ClientError("response_cancel_not_active", CANCEL_NOT_ACTIVE_MESSAGE)

    async def _run_response(self, resp: _Response) -> None:
        try:
            if resp.turn.fail is not None:
                await self._fail(resp)
            elif resp.turn.call is not None:
                await self._call(resp)
            else:
                await self._speak(resp)
        except (_Ended, ConnectionClosed):
            pass
        except Exception:  # a bug here must not leave the connection wedged with an "active" response
            log.exception("local server: response %s failed", resp.id)
            with contextlib.suppress(Exception):
                await self.ws.close(CLOSE_INTERNAL_ERROR, "local server error")
        finally:
            if self.active is resp:
                self.active = None

    def _response_obj(
        self, resp: _Response, status: str, output: list[Any], usage: Any = None, details: Any = None
    ) -> dict[str, Any]:
        voice = self.session["audio"]["output"]["voice"]
        return {
            "id": resp.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": output,
            "conversation_id": self.conversation_id if resp.in_conversation else None,
            "output_modalities": resp.modalities,
            "max_output_tokens": resp.max_output_tokens,
            "audio": {"output": {"format": {"type": "audio/pcm", "rate": RATE_HZ}, "voice": voice}},
            "usage": usage,
            "metadata": resp.metadata,
        }

    async def _begin(self, resp: _Response, item: dict[str, Any]) -> str | None:
        """rate_limits.updated, response.created and the output item's announcements."""
        spent = resp.input_usage["text"] + resp.input_usage["audio"]
        limits = [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 400000, "remaining": max(0, 400000 - spent), "reset_seconds": 0.5},
        ]
        await self.send({"type": "rate_limits.updated", "rate_limits": limits})
        await self.send({"type": "response.created", "response": self._response_obj(resp, "in_progress", [])})
        previous = None
        if resp.in_conversation:
            resp.item = Item(item)
            previous = self.conversation.insert(resp.item)
        await self.send(
            {"type": "response.output_item.added", "response_id": resp.id, "output_index": 0, "item": item}
        )
        if resp.in_conversation:
            await self.send({"type": "conversation.item.added", "item": item, "previous_item_id": previous})
        return previous

    async def _finish(
        self, resp: _Response, item: dict[str, Any], previous: str | None, use: dict[str, Any], details: Any
    ) -> None:
        await self.send(
            {"type": "response.output_item.done", "response_id": resp.id, "output_index": 0, "item": item}
        )
        if resp.in_conversation:
            await self.send({"type": "conversation.item.done", "item": item, "previous_item_id": previous})
        if self.active is resp:
            self.active = None  # before response.done: a response.create right after it must be accepted
        audio_ms = resp.audio_bytes / BYTES_PER_MS
        self.record.responses.append(
            {"id": resp.id, "status": resp.status, "audio_ms": audio_ms, "usage": use}
        )
        done = self._response_obj(resp, resp.status, [item], use, details)
        await self.send({"type": "response.done", "response": done})

    async def _pause(self, resp: _Response, ms: float) -> bool:
        """Wait `ms` (or just yield), waking early on cancel; True if cancelled."""
        if ms <= 0:
            await asyncio.sleep(0)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(resp.cancel.wait(), ms / 1000)
        return resp.cancel.is_set()

    async def _speak(self, resp: _Response) -> None:
        audio = "audio" in resp.modalities
        reply = self.server.reply(resp.turn.speak).repeated(resp.turn.repeat)
        item = _message_item(self.server.new_id("item"), "assistant", "in_progress", [])
        previous = await self._begin(resp, item)
        if resp.item is not None:
            resp.item.full_transcript = reply.transcript
        base = {"response_id": resp.id, "item_id": item["id"], "output_index": 0, "content_index": 0}
        part = {"type": "audio", "transcript": ""} if audio else {"type": "text", "text": ""}
        await self.send({"type": "response.content_part.added", **base, "part": part})
        details = await self._stream(resp, reply, base, audio)
        if resp.cancel.is_set():
            resp.status, details = "cancelled", {"type": "cancelled", "reason": "client_cancelled"}
        else:
            resp.status = "incomplete" if details else "completed"
        if audio:
            await self.send({"type": "response.output_audio.done", **base})
            await self.send(
                {"type": "response.output_audio_transcript.done", **base, "transcript": resp.text}
            )
            part, content = (
                {"type": "audio", "transcript": resp.text},
                {"type": "output_audio", "transcript": resp.text},
            )
        else:
            await self.send({"type": "response.output_text.done", **base, "text": resp.text})
            part, content = {"type": "text", "text": resp.text}, {"type": "output_text", "text": resp.text}
        await self.send({"type": "response.content_part.done", **base, "part": part})
        item.update(content=[content], status="completed" if resp.status == "completed" else "incomplete")
        out_audio = assistant_audio_tokens(resp.audio_bytes / BYTES_PER_MS)
        await self._finish(
            resp, item, previous, usage(resp.input_usage, text_tokens(resp.text), out_audio), details
        )

    async def _stream(
        self, resp: _Response, reply: Reply, base: dict[str, Any], audio: bool
    ) -> dict[str, Any] | None:
        """Audio deltas with the transcript interleaved, paced; stops early on cancel or at
        max_output_tokens (then returns the `incomplete` status details)."""
        chunks = chunk_pcm(reply.pcm, self.server.chunk_ms)
        words = transcript_schedule(reply.transcript, len(chunks))
        text_kind = "response.output_audio_transcript.delta" if audio else "response.output_text.delta"
        if self.server.latency_ms > 0:
            await self._pause(resp, self.server.latency_ms)
        for i, chunk in enumerate(chunks):
            if resp.cancel.is_set() or (i and await self._pause(resp, self.server.chunk_interval_ms())):
                return None
            if resp.over_budget(resp.audio_bytes + (len(chunk) if audio else 0), resp.text + words[i]):
                return {"type": "incomplete", "reason": "max_output_tokens"}
            if audio:
                delta = base64.b64encode(chunk).decode("ascii")
                await self.send({"type": "response.output_audio.delta", **base, "delta": delta})
                resp.audio_bytes += len(chunk)
                self.assistant_audio_sent = True
                if resp.item is not None:
                    resp.item.audio_ms = resp.audio_bytes / BYTES_PER_MS
                await self.fire("delta", i + 1)
            if words[i]:
                await self.send({"type": text_kind, **base, "delta": words[i]})
                resp.text += words[i]
        return None

    async def _call(self, resp: _Response) -> None:
        turn = resp.turn
        args = turn.arguments if isinstance(turn.arguments, str) else json.dumps(dict(turn.arguments))
        item_id, call_id = self.server.new_id("item"), self.server.new_id("call")
        item: dict[str, Any] = {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "name": turn.call,
            "call_id": call_id,
            "arguments": "",
        }
        previous = await self._begin(resp, item)
        base = {"response_id": resp.id, "item_id": item_id, "output_index": 0, "call_id": call_id}
        half = len(args) // 2
        for piece in (args[:half], args[half:]):
            if piece:
                await self.send({"type": "response.function_call_arguments.delta", **base, "delta": piece})
        await self.send(
            {"type": "response.function_call_arguments.done", **base, "name": turn.call, "arguments": args}
        )
        item.update(status="completed", arguments=args)
        resp.status = "completed"
        await self._finish(resp, item, previous, usage(resp.input_usage, text_tokens(args) + 5, 0), None)

    async def _fail(self, resp: _Response) -> None:
        """A response that fails after starting (how a rate limit may surface)."""
        await self.send({"type": "response.created", "response": self._response_obj(resp, "in_progress", [])})
        resp.status = "failed"
        error = {"type": "invalid_request_error", "code": resp.turn.fail, "message": resp.turn.message}
        use = usage(resp.input_usage, 0, 0)
        if self.active is resp:
            self.active = None
        self.record.responses.append({"id": resp.id, "status": "failed", "audio_ms": 0.0, "usage": use})
        done = self._response_obj(resp, "failed", [], use, {"type": "failed", "error": error})
        await self.send({"type": "response.done", "response": done})


# --------------------------------------------------------------------------- the server


class LocalRealtimeServer:
    """The GA Realtime protocol on `ws://HOST:PORT/v1/realtime?model=…`.

    Handshake: another path → HTTP 404; no `Authorization: Bearer …` → HTTP 401;
    no `model` query → HTTP 400. With `api_key` set, a different key gets an
    `invalid_api_key` error event and close 1008 (policy violation); an
    `OpenAI-Beta` header gets `beta_api_shape_disabled` and close 4000.

    Options: `pace` is the speed of the audio stream as a multiple of real time
    (0 = as fast as possible), `chunk_ms` the audio per delta, `latency_ms`
    the wait before the first delta, `slow_frames_ms` an extra delay before
    each delta after the first (a fault: a congested link), `max_session_s`
    when `session_expired` is sent. `script` (list of `Turn`s or dicts such as
    `{"speak": 0, "repeat": 3}`, `{"call": "set_timer", "arguments": {…}}`,
    `{"fail": "rate_limit_exceeded"}`) decides successive responses; after it,
    replies rotate through the bundled sentences. `transcripts` are handed out
    in order as the user's transcriptions (with transcription configured).
    `faults` are armed at start; `inject` adds more while running.
    `max_append_bytes` (15 MiB, the service's) bounds one append and
    `max_buffer_bytes` the uncommitted buffer: past either, the chunk is
    refused with an error and not stored. `keep_audio` keeps each committed
    turn's PCM in the record (else only its length and SHA-256). `replies`
    replaces the bundled sentences. `records` holds one `ConnectionRecord`
    per connection (the last 64).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        pace: float = 4.0,
        chunk_ms: int = 100,
        latency_ms: float = 0.0,
        slow_frames_ms: float = 0.0,
        max_session_s: float = SESSION_MAX_S,
        script: Iterable[Turn | Mapping[str, Any]] = (),
        transcripts: Iterable[str] = (),
        faults: Iterable[Fault | str] = (),
        max_append_bytes: int = MAX_APPEND_BYTES,
        max_buffer_bytes: int = MAX_BUFFER_BYTES,
        keep_audio: bool = False,
        replies: Iterable[Reply] | None = None,
    ) -> None:
        if chunk_ms < 10 or pace < 0 or max_session_s <= 0:
            raise ValueError("chunk_ms must be >= 10, pace >= 0 and max_session_s > 0")
        self.host = host
        self.port = port
        self.api_key = api_key
        self.pace = pace
        self.chunk_ms = chunk_ms
        self.latency_ms = latency_ms
        self.slow_frames_ms = slow_frames_ms
        self.max_session_s = max_session_s
        self.max_append_bytes = max_append_bytes
        self.max_buffer_bytes = max_buffer_bytes
        self.keep_audio = keep_audio
        self.script: deque[Turn] = deque(Turn.from_spec(t) for t in script)
        self.transcripts: deque[str] = deque(transcripts)
        self.faults: list[Fault] = [f if isinstance(f, Fault) else Fault.parse(f) for f in faults]
        if any(f.trigger == "now" for f in self.faults):
            raise ValueError(
                "a fault given at start needs a trigger (@connect, @commit, @response, @delta:N)"
            )
        self.records: deque[ConnectionRecord] = deque(maxlen=RECORD_CONNECTIONS)
        self._replies = tuple(replies) if replies is not None else bundled_replies()
        if not self._replies:
            raise ValueError("no reply audio")
        for turn in self.script:  # a misspelt reply name fails here, not mid-session
            if turn.speak is not None:
                self.reply(turn.speak)
        self._rotation = itertools.cycle(range(len(self._replies)))
        self._ids = itertools.count(1)
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: Server | None = None
        self._n_connections = 0

    # ---- lifecycle

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await ws_serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=self.max_append_bytes * 4 // 3 + 64 * 1024,
            server_header="edged-local-realtime",
            logger=_ws_log,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("local Realtime server listening on %s", self.url)
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()  # closes open connections with 1001
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> LocalRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{PATH}"

    @property
    def base_url(self) -> str:
        """What to give the SDK as `websocket_base_url` (it appends /realtime)."""
        return f"ws://{self.host}:{self.port}/v1"

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._reap)
        return task

    def _reap(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and isinstance(task.exception(), Exception):
            exc = task.exception()
            if not isinstance(exc, (_Ended, ConnectionClosed)):
                log.error("local server task failed: %r", exc)

    # ---- handshake and connections

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != PATH:
            return connection.respond(
                HTTPStatus.NOT_FOUND, f"Not found: {url.path}. The Realtime API is at {PATH}.\n"
            )
        if _bearer(request.headers) is None:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Missing bearer authentication in header.\n")
        if not parse_qs(url.query).get("model"):
            return connection.respond(HTTPStatus.BAD_REQUEST, "Missing required parameter: 'model'.\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        model = parse_qs(urlsplit(ws.request.path).query)["model"][0]
        self._n_connections += 1
        record = ConnectionRecord(index=self._n_connections, model=model)
        self.records.append(record)
        conn = _Connection(self, ws, record)
        self._connections.add(conn)
        log.info("connection #%d opened (model %s)", record.index, model)
        try:
            await conn.run()
        finally:
            self._connections.discard(conn)
            with contextlib.suppress(Exception):
                await ws.wait_closed()
            record.close_code = ws.close_code
            record.closed.set()
            log.info("connection #%d closed (%s)", record.index, ws.close_code)

    # ---- behaviour

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_local{next(self._ids):08d}"

    def chunk_interval_ms(self) -> float:
        paced = self.chunk_ms / self.pace if self.pace > 0 else 0.0
        return paced + self.slow_frames_ms

    def next_turn(self) -> Turn:
        return self.script.popleft() if self.script else Turn()

    def next_transcript(self, audio_ms: float) -> str:
        return (
            self.transcripts.popleft()
            if self.transcripts
            else PLACEHOLDER_TRANSCRIPT.format(s=audio_ms / 1000)
        )

    def reply(self, which: int | str | None) -> Reply:
        if which is None:
            return self._replies[next(self._rotation)]
        if isinstance(which, int):
            return self._replies[which % len(self._replies)]
        for r in self._replies:
            if r.name == which:
                return r
        raise ValueError(f"no reply named {which!r}; have {[r.name for r in self._replies]}")

    # ---- fault injection

    def take_fault(self, trigger: str, deltas: int = 0) -> Fault | None:
        for i, f in enumerate(self.faults):
            if f.trigger == trigger and (trigger != "delta" or f.after_deltas == deltas):
                return self.faults.pop(i)
        return None

    async def inject(self, fault: Fault | str) -> int:
        """Arm a fault for its trigger; a `now` fault hits every open connection at once
        (returns how many it hit, 0 for an armed one)."""
        f = fault if isinstance(fault, Fault) else Fault.parse(fault)
        if f.trigger != "now":
            self.faults.append(f)
            return 0
        conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(_Ended, ConnectionClosed):
                await conn.apply(f)
        return len(conns)

    async def drop_connections(self) -> int:
        return await self.inject(Fault("drop"))

    async def expire_sessions(self) -> int:
        return await self.inject(Fault("session_expired"))

    async def send_error(self, code: str, message: str, error_type: str = "server_error") -> int:
        return await self.inject(Fault("error", code=code, message=message, error_type=error_type))

    async def send_malformed(self, kind: MalformedKind = "not_json") -> int:
        return await self.inject(Fault("malformed", malformed=kind))


# --------------------------------------------------------------------------- blocking entry (CLI)


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    on_ready: Callable[[LocalRealtimeServer], None] | None = None,
    **options: Any,
) -> None:
    """Run until Ctrl-C or SIGTERM. `options` are `LocalRealtimeServer`'s."""
    asyncio.run(_serve_until_signalled(host, port, on_ready, options))


async def _serve_until_signalled(
    host: str, port: int, on_ready: Callable[[LocalRealtimeServer], None] | None, options: dict[str, Any]
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if host not in ("127.0.0.1", "::1", "localhost"):
        log.warning("listening on %s: the local server has no TLS and is meant for loopback only", host)
    async with LocalRealtimeServer(host, port, **options) as server:
        log.info("use it with OpenAI(websocket_base_url=%r); Ctrl-C stops", server.base_url)
        if on_ready is not None:
            on_ready(server)
        await stop.wait()
        log.info("stopping")
