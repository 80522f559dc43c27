"""The local Realtime server against the SDK's own types, over real WebSockets on loopback.

Every event a test receives goes through `parse_server_event(strict=True)`,
and every well-formed event a test sends through `validate_client_event`, so
a server that drifted from the GA protocol (or a test that spoke beta) fails
here rather than in front of the real service.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import openai
import pytest
import webrtcvad
from conformance import parse_server_event, validate_client_event
from scipy.signal import resample_poly
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from edged.cli import build_parser
from edged.realtime.local_server import Fault, LocalRealtimeServer, Turn
from edged.realtime.local_voice import BYTES_PER_MS, bundled_replies

MODEL = "gpt-realtime-2.1-mini"
PCM = {"type": "audio/pcm", "rate": 24000}
SESSION = {
    "type": "realtime",
    "instructions": "You are a kitchen speaker. Be brief.",
    "output_modalities": ["audio"],
    "audio": {
        "input": {
            "format": PCM,
            "turn_detection": None,
            "transcription": {"model": "gpt-4o-mini-transcribe"},
        },
        "output": {"format": PCM, "voice": "marin"},
    },
}
TIMER_TOOL = {
    "type": "function",
    "name": "set_timer",
    "description": "Start a kitchen timer.",
    "parameters": {"type": "object", "properties": {"seconds": {"type": "integer"}}, "required": ["seconds"]},
}


def b64(pcm: bytes) -> str:
    return base64.b64encode(pcm).decode("ascii")


def speech_pcm(ms: int) -> bytes:
    """Real speech as the user's turn (a bundled sentence the server does not answer with first)."""
    return bundled_replies()[1].pcm[: ms * BYTES_PER_MS]


class Client:
    """A raw WebSocket client that checks both directions against the SDK types."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.event_ids: set[str] = set()
        self.transcribing = False  # then a commit is followed by the transcription events

    async def send(self, ev: dict[str, Any]) -> None:
        validate_client_event(ev)
        await self.ws.send(json.dumps(ev))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def recv(self, timeout_s: float = 5.0) -> dict[str, Any]:
        ev = json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s))
        parse_server_event(ev, strict=True)
        assert ev["event_id"] not in self.event_ids, "event_id reused"
        self.event_ids.add(ev["event_id"])
        return ev

    async def until(self, event_type: str) -> list[dict[str, Any]]:
        """Events up to and including the first of `event_type`."""
        out = []
        while True:
            out.append(await self.recv())
            if out[-1]["type"] == event_type:
                return out

    async def error(self, code: str) -> dict[str, Any]:
        ev = await self.recv()
        assert ev["type"] == "error", ev
        assert ev["error"]["code"] == code, ev["error"]
        return ev["error"]

    async def turn(self, ms: int = 300) -> str:
        """Append and commit `ms` of speech; the committed item's id."""
        await self.send({"type": "input_audio_buffer.append", "audio": b64(speech_pcm(ms))})
        await self.send({"type": "input_audio_buffer.commit"})
        events = await self.until("conversation.item.done")
        if self.transcribing:
            await self.until("conversation.item.input_audio_transcription.completed")
        return events[0]["item_id"]

    async def closed_code(self) -> int | None:
        """Read until the server ends the connection; its close code (None: no close frame)."""
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await asyncio.wait_for(self.ws.recv(), 5)
        return info.value.rcvd.code if info.value.rcvd else None


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[LocalRealtimeServer]]]:
    servers: list[LocalRealtimeServer] = []

    async def make(**options: Any) -> LocalRealtimeServer:
        server = LocalRealtimeServer(**{"pace": 0.0, **options})
        await server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.close()


@pytest.fixture
async def open_client() -> AsyncIterator[Callable[..., Awaitable[Client]]]:
    sockets: list[ClientConnection] = []

    async def open_(
        server: LocalRealtimeServer, headers: dict[str, str] | None = None, session: bool = True
    ) -> Client:
        ws = await connect(
            f"{server.url}?model={MODEL}",
            additional_headers={"Authorization": "Bearer test", **(headers or {})},
        )
        sockets.append(ws)
        client = Client(ws)
        if session:
            assert (await client.recv())["type"] == "session.created"
        return client

    yield open_
    for ws in sockets:
        await ws.close()


async def configured(make_server: Any, open_client: Any, session: dict[str, Any] = SESSION, **options: Any):
    server = await make_server(**options)
    client = await open_client(server)
    await client.send({"type": "session.update", "session": session})
    updated = await client.recv()
    assert updated["type"] == "session.updated"
    client.transcribing = updated["session"]["audio"]["input"]["transcription"] is not None
    return server, client


# --------------------------------------------------------------------------- a full turn


async def test_full_turn_streams_the_bundled_speech_with_transcripts_and_usage(
    make_server, open_client
) -> None:
    server, client = await configured(make_server, open_client, transcripts=["turn the oven off"])
    reply = bundled_replies()[0]
    await client.send({"type": "input_audio_buffer.append", "audio": b64(speech_pcm(300))})
    await client.send({"type": "input_audio_buffer.commit", "event_id": "evt_commit"})
    await client.send({"type": "response.create"})
    events = await client.until("response.done")

    kinds = [e["type"] for e in events if not e["type"].endswith(".delta")]
    assert kinds == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
        "conversation.item.input_audio_transcription.completed",
        "rate_limits.updated",
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    committed = events[0]
    assert committed["previous_item_id"] is None
    assert events[1]["item"]["id"] == committed["item_id"]
    assert events[1]["item"]["role"] == "user"
    transcription = next(e for e in events if e["type"].endswith("transcription.completed"))
    assert transcription["transcript"] == "turn the oven off"

    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert audio == reply.pcm
    deltas = [e for e in events if e["type"] == "response.output_audio.delta"]
    assert len(deltas) == math.ceil(len(reply.pcm) / (100 * BYTES_PER_MS))  # 100 ms chunks
    words = "".join(e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta")
    assert words == reply.transcript
    # transcript deltas are interleaved with the audio, not all at the end
    first_word = next(
        i for i, e in enumerate(events) if e["type"] == "response.output_audio_transcript.delta"
    )
    assert first_word < events.index(deltas[-1])

    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0] == {"type": "output_audio", "transcript": reply.transcript}
    usage = done["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 3  # 300 ms of user audio, 1 token / 100 ms
    assert usage["output_token_details"]["audio_tokens"] == math.ceil(reply.duration_ms / 50)
    assert usage["output_token_details"]["text_tokens"] > 0
    assert usage["input_tokens"] == sum(
        usage["input_token_details"][k] for k in ("text_tokens", "audio_tokens")
    )
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]

    record = server.records[-1]
    assert record.appended_bytes == 300 * BYTES_PER_MS
    assert record.commits[0].audio_ms == 300
    assert record.received("input_audio_buffer.append")[0]["audio_bytes"] == 300 * BYTES_PER_MS
    assert "audio" not in record.received("input_audio_buffer.append")[0]


async def test_every_response_rebills_the_conversation_as_heard(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client)
    await client.turn(300)
    await client.send({"type": "response.create"})
    first = (await client.until("response.done"))[-1]["response"]
    item = first["output"][0]
    assistant_ms = len(bundled_replies()[0].pcm) / BYTES_PER_MS
    await client.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item["id"],
            "content_index": 0,
            "audio_end_ms": 1000,
        }
    )
    truncated = await client.recv()
    assert truncated["type"] == "conversation.item.truncated" and truncated["audio_end_ms"] == 1000
    await client.turn(500)
    await client.send({"type": "response.create"})
    second = (await client.until("response.done"))[-1]["response"]
    # user 300 ms + assistant as heard (1000 ms at 1 token / 50 ms) + user 500 ms
    assert second["usage"]["input_token_details"]["audio_tokens"] == 3 + 20 + 5
    assert assistant_ms > 1000  # the truncation really removed audio from the bill


async def test_sdk_realtime_client_completes_a_turn(make_server) -> None:
    server = await make_server()
    client = openai.AsyncOpenAI(api_key="test", websocket_base_url=server.base_url)
    types: list[str] = []
    audio = bytearray()
    async with client.realtime.connect(model=MODEL) as conn:
        await conn.send({"type": "session.update", "session": SESSION})
        await conn.send({"type": "input_audio_buffer.append", "audio": b64(speech_pcm(200))})
        await conn.send({"type": "input_audio_buffer.commit"})
        await conn.send({"type": "response.create"})
        async for ev in conn:
            types.append(ev.type)
            if ev.type == "response.output_audio.delta":
                audio += base64.b64decode(ev.delta)
            if ev.type == "response.done":
                assert ev.response.status == "completed"
                assert ev.response.usage is not None and ev.response.usage.output_tokens > 0
                break
    assert types[:2] == ["session.created", "session.updated"]
    assert "input_audio_buffer.committed" in types
    assert len(audio) == len(bundled_replies()[0].pcm)
    assert server.records[-1].model == MODEL


# --------------------------------------------------------------------------- errors the service gives


async def test_commit_under_100_ms_is_refused_with_the_service_message(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client)
    await client.send({"type": "input_audio_buffer.commit", "event_id": "evt_1"})
    err = await client.error("input_audio_buffer_commit_empty")
    assert err["message"] == (
        "Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, "
        "but buffer only has 0.00ms of audio."
    )
    assert err["event_id"] == "evt_1" and err["type"] == "invalid_request_error"
    await client.send({"type": "input_audio_buffer.append", "audio": b64(bytes(4798))})  # 99.96 ms
    await client.send({"type": "input_audio_buffer.commit"})
    err = await client.error("input_audio_buffer_commit_empty")
    assert "only has 99.96ms of audio" in err["message"]
    await client.send({"type": "input_audio_buffer.append", "audio": b64(bytes(2))})  # the buffer was kept
    await client.send({"type": "input_audio_buffer.commit"})
    assert (await client.recv())["type"] == "input_audio_buffer.committed"


async def test_clear_empties_the_buffer(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client)
    await client.send({"type": "input_audio_buffer.append", "audio": b64(speech_pcm(200))})
    await client.send({"type": "input_audio_buffer.clear"})
    assert (await client.recv())["type"] == "input_audio_buffer.cleared"
    await client.send({"type": "input_audio_buffer.commit"})
    await client.error("input_audio_buffer_commit_empty")


async def test_cancel_stops_an_active_response_and_is_refused_without_one(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client, pace=1.0)  # real time: 3.5 s per reply
    await client.send({"type": "response.cancel", "event_id": "evt_c0"})
    err = await client.error("response_cancel_not_active")
    assert err["message"] == "Cancellation failed: no active response found" and err["event_id"] == "evt_c0"

    await client.turn()
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    await client.send({"type": "response.cancel"})
    events = await client.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    n_deltas = 1 + sum(e["type"] == "response.output_audio.delta" for e in events)
    assert n_deltas < len(bundled_replies()[0].pcm) // (100 * BYTES_PER_MS)
    assert done["usage"]["output_token_details"]["audio_tokens"] == n_deltas * 2  # 100 ms = 2 tokens
    await client.send({"type": "response.cancel"})
    await client.error("response_cancel_not_active")


async def test_response_create_while_one_is_active_is_refused(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client, pace=2.0)
    await client.turn()
    await client.send({"type": "response.create"})
    created = await client.until("response.created")
    await client.send({"type": "response.create", "event_id": "evt_again"})
    events = await client.until("error")
    err = events[-1]["error"]
    assert err["code"] == "conversation_already_has_active_response" and err["event_id"] == "evt_again"
    assert created[-1]["response"]["id"] in err["message"]
    await client.send({"type": "response.cancel"})
    assert (await client.until("response.done"))[-1]["response"]["status"] == "cancelled"


async def test_truncate_checks_item_role_and_audio_length(make_server, open_client) -> None:
    server, client = await configured(make_server, open_client)
    user_item = await client.turn()
    await client.send({"type": "response.create"})
    done = (await client.until("response.done"))[-1]["response"]
    item_id = done["output"][0]["id"]
    total_ms = len(bundled_replies()[0].pcm) // BYTES_PER_MS

    async def truncate(target: str, audio_end_ms: int) -> dict[str, Any]:
        ev = {"type": "conversation.item.truncate", "item_id": target, "content_index": 0}
        await client.send({**ev, "audio_end_ms": audio_end_ms})
        return await client.recv()

    beyond = await truncate(item_id, total_ms + 500)
    assert beyond["type"] == "error" and beyond["error"]["param"] == "audio_end_ms"
    assert (
        beyond["error"]["message"]
        == f"Audio content of {total_ms}ms is already shorter than {total_ms + 500}ms"
    )
    assert (await truncate(user_item, 10))["error"]["code"] == "unsupported_content_type"
    assert (await truncate("item_nope", 10))["type"] == "error"
    ok = await truncate(item_id, 1200)
    assert ok == {**ok, "type": "conversation.item.truncated", "item_id": item_id, "audio_end_ms": 1200}
    exact_ms = len(bundled_replies()[0].pcm) / BYTES_PER_MS
    assert list(server.records[-1].truncations) == [
        {"item_id": item_id, "audio_end_ms": 1200, "audio_ms": exact_ms}
    ]
    await client.send({"type": "conversation.item.retrieve", "item_id": item_id})
    heard = (await client.recv())["item"]["content"][0]["transcript"]
    assert (
        heard
        and bundled_replies()[0].transcript.startswith(heard)
        and heard != bundled_replies()[0].transcript
    )


async def test_malformed_input_gets_errors_and_the_connection_stays_open(make_server, open_client) -> None:
    server = await make_server()
    client = await open_client(server)
    bad: list[tuple[str | bytes, str]] = [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_json"),
        (b"\x00\x01", "invalid_json"),
        ('{"event_id": "evt_x"}', "missing_required_parameter"),
        ('{"type": "response.audio.delta"}', "invalid_value"),
        ('{"type": "input_audio_buffer.append", "audio": "@@@"}', "invalid_value"),
        ('{"type": "input_audio_buffer.commit", "foo": 1}', "unknown_parameter"),
        (
            '{"type": "conversation.item.truncate", "item_id": "x", "audio_end_ms": 5}',
            "missing_required_parameter",
        ),
    ]
    for raw, code in bad:
        await client.send_raw(raw)
        await client.error(code)
    # the 2024 beta session shape and the GA mistakes the service rejects
    sessions = [
        (
            {"modalities": ["audio", "text"], "voice": "alloy", "input_audio_format": "pcm16"},
            "unknown_parameter",
        ),
        ({"type": "realtime", "input_audio_format": "pcm16"}, "unknown_parameter"),
        ({"type": "realtime", "turn_detection": None}, "unknown_parameter"),
        ({"instructions": "hi"}, "missing_required_parameter"),
        ({"type": "realtime", "audio": {"input": {"format": "pcm16"}}}, "invalid_type"),
        (
            {"type": "realtime", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}},
            "invalid_value",
        ),
        (
            {"type": "realtime", "audio": {"output": {"format": {"type": "audio/pcm"}}}},
            "missing_required_parameter",
        ),
        ({"type": "realtime", "output_modalities": ["audio", "text"]}, "invalid_value"),
    ]
    for session, code in sessions:
        await client.send_raw(json.dumps({"type": "session.update", "session": session}))
        err = await client.error(code)
        assert err["param"].startswith("session"), err
    await client.send({"type": "session.update", "session": SESSION})
    updated = await client.recv()
    assert updated["type"] == "session.updated"
    assert updated["session"]["audio"]["input"]["transcription"] == SESSION["audio"]["input"]["transcription"]
    counts = server.records[-1].counts
    assert counts["(malformed)"] == 3 and counts["(unknown type)"] == 1 and counts["session.update"] == 9


async def test_unknown_session_key_message_names_the_parameter(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client)
    await client.send_raw(
        json.dumps({"type": "session.update", "session": {"type": "realtime", "temperature": 0.8}})
    )
    err = await client.error("unknown_parameter")
    assert (
        err["message"] == "Unknown parameter: 'session.temperature'."
        and err["param"] == "session.temperature"
    )


async def test_voice_is_fixed_after_assistant_audio(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client)
    await client.turn()
    await client.send({"type": "response.create"})
    await client.until("response.done")
    await client.send(
        {"type": "session.update", "session": {"type": "realtime", "audio": {"output": {"voice": "cedar"}}}}
    )
    await client.error("cannot_update_voice")


# --------------------------------------------------------------------------- handshake


async def test_handshake_rejects_wrong_path_missing_key_and_missing_model(make_server) -> None:
    server = await make_server()
    base = f"ws://127.0.0.1:{server.port}"
    cases = [
        (f"{base}/v1/other?model={MODEL}", {"Authorization": "Bearer k"}, 404),
        (f"{base}/v1/realtime?model={MODEL}", {}, 401),
        (f"{base}/v1/realtime?model={MODEL}", {"Authorization": "Basic k"}, 401),
        (f"{base}/v1/realtime", {"Authorization": "Bearer k"}, 400),
    ]
    for url, headers, status in cases:
        with pytest.raises(InvalidStatus) as info:
            await connect(url, additional_headers=headers)
        assert info.value.response.status_code == status


async def test_beta_header_gets_beta_api_shape_disabled_and_close_4000(make_server, open_client) -> None:
    server = await make_server()
    client = await open_client(server, headers={"OpenAI-Beta": "realtime=v1"}, session=False)
    err = await client.error("beta_api_shape_disabled")
    assert "no longer supported" in err["message"]
    assert await client.closed_code() == 4000


async def test_wrong_api_key_gets_invalid_api_key_and_close_1008(make_server, open_client) -> None:
    server = await make_server(api_key="sk-right")
    client = await open_client(server, headers={"Authorization": "Bearer sk-wrong"}, session=False)
    err = await client.error("invalid_api_key")
    assert "sk-wrong" not in err["message"]
    assert await client.closed_code() == 1008
    good = await open_client(server, headers={"Authorization": "Bearer sk-right"}, session=False)
    assert (await good.recv())["type"] == "session.created"


async def test_the_api_key_never_reaches_the_logs(make_server, open_client, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server = await make_server(api_key="sk-secret-123")
    client = await open_client(server, headers={"Authorization": "Bearer sk-secret-123"})
    await client.turn()
    wrong = await open_client(server, headers={"Authorization": "Bearer sk-secret-456"}, session=False)
    await wrong.error("invalid_api_key")
    server_log = [
        r.getMessage() for r in caplog.records if r.name.startswith("edged")
    ]  # not the test's client
    assert any("connection #1 opened" in m for m in server_log)
    assert not any("sk-secret" in m for m in server_log)


# --------------------------------------------------------------------------- items and function calls


async def test_function_call_round_trip(make_server, open_client) -> None:
    session = {**SESSION, "tools": [TIMER_TOOL], "tool_choice": "auto"}
    server, client = await configured(
        make_server, open_client, session, script=[{"call": "set_timer", "arguments": {"seconds": 60}}]
    )
    await client.turn()
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    args_done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert args_done["name"] == "set_timer" and json.loads(args_done["arguments"]) == {"seconds": 60}
    pieces = "".join(e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta")
    assert pieces == args_done["arguments"]
    done = events[-1]["response"]
    assert done["status"] == "completed" and done["output"][0]["type"] == "function_call"
    assert done["output"][0]["call_id"] == args_done["call_id"]
    assert not any(e["type"] == "response.output_audio.delta" for e in events)

    bad = {"type": "function_call_output", "call_id": "call_unknown", "output": "{}"}
    await client.send({"type": "conversation.item.create", "item": bad})
    await client.error("invalid_value")
    output = {"type": "function_call_output", "call_id": args_done["call_id"], "output": '{"ok": true}'}
    await client.send({"type": "conversation.item.create", "item": output})
    added = await client.recv()
    assert added["type"] == "conversation.item.added" and added["item"]["call_id"] == args_done["call_id"]
    assert added["previous_item_id"] == done["output"][0]["id"]
    assert (await client.recv())["type"] == "conversation.item.done"
    await client.send({"type": "response.create"})
    spoken = await client.until("response.done")
    assert any(e["type"] == "response.output_audio.delta" for e in spoken)
    assert server.records[-1].function_outputs[0]["output"] == '{"ok": true}'


async def test_scripted_call_to_an_undeclared_tool_is_reported(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client, script=[Turn(call="set_timer")])
    await client.turn()
    await client.send({"type": "response.create"})
    err = await client.error("local_script_error")
    assert err["type"] == "server_error"


async def test_message_items_reseed_a_conversation(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client)
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "set a timer"}]}
    assistant = {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "Done."}],
    }
    await client.send({"type": "conversation.item.create", "item": {**user, "id": "item_u1"}})
    first = await client.recv()
    assert first["item"]["id"] == "item_u1" and first["previous_item_id"] is None
    await client.recv()
    await client.send({"type": "conversation.item.create", "item": assistant, "previous_item_id": "item_u1"})
    second = await client.recv()
    assert second["previous_item_id"] == "item_u1" and second["item"]["content"][0]["text"] == "Done."
    await client.recv()
    await client.send({"type": "conversation.item.create", "item": {**user, "id": "item_u1"}})
    await client.error("invalid_value")  # duplicate id
    await client.send({"type": "conversation.item.delete", "item_id": "item_u1"})
    deleted = await client.recv()
    assert (deleted["type"], deleted["item_id"]) == ("conversation.item.deleted", "item_u1")
    await client.send({"type": "conversation.item.retrieve", "item_id": "item_u1"})
    await client.error("invalid_value")


async def test_text_modality_streams_text_not_audio(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client, {**SESSION, "output_modalities": ["text"]})
    await client.turn()
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == bundled_replies()[0].transcript
    assert not any("output_audio" in e["type"] for e in events)


async def test_max_output_tokens_ends_the_response_incomplete(make_server, open_client) -> None:
    _, client = await configured(make_server, open_client)
    await client.turn()
    await client.send({"type": "response.create", "response": {"max_output_tokens": 20}})
    done = (await client.until("response.done"))[-1]["response"]
    assert done["status"] == "incomplete" and done["status_details"]["reason"] == "max_output_tokens"
    assert done["usage"]["output_tokens"] <= 20


async def test_scripted_failure_and_repeat(make_server, open_client) -> None:
    _, client = await configured(
        make_server, open_client, script=[{"fail": "rate_limit_exceeded"}, {"speak": 2, "repeat": 2}]
    )
    await client.turn()
    await client.send({"type": "response.create"})
    failed = (await client.until("response.done"))[-1]["response"]
    assert failed["status"] == "failed" and failed["status_details"]["error"]["code"] == "rate_limit_exceeded"
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    audio = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert len(audio) > 2 * len(bundled_replies()[2].pcm)  # said twice, with a pause between
    assert audio.startswith(bundled_replies()[2].pcm)


# --------------------------------------------------------------------------- faults


async def test_fault_drop_at_commit_closes_without_a_close_frame(make_server, open_client) -> None:
    server = await make_server(faults=["drop@commit"])
    client = await open_client(server)
    await client.send({"type": "input_audio_buffer.append", "audio": b64(speech_pcm(200))})
    await client.send({"type": "input_audio_buffer.commit"})
    assert await client.closed_code() is None  # 1006: abnormal closure
    await asyncio.wait_for(server.records[-1].closed.wait(), 5)
    assert list(server.records[-1].faults_fired) == ["drop@commit"]
    assert len(server.records[-1].commits) == 0  # the commit was never processed
    again = await open_client(server)  # the fault fired once; the next session works
    await again.turn()


async def test_fault_drop_after_n_audio_deltas(make_server, open_client) -> None:
    server = await make_server(faults=[Fault("drop", "delta", after_deltas=3)])
    client = await open_client(server)
    await client.turn()
    await client.send({"type": "response.create"})
    deltas = 0
    with pytest.raises(ConnectionClosed):
        while True:
            ev = await client.recv()
            deltas += ev["type"] == "response.output_audio.delta"
    assert deltas == 3


async def test_session_expired_on_request_and_after_the_maximum_duration(make_server, open_client) -> None:
    server = await make_server()
    client = await open_client(server)
    assert await server.expire_sessions() == 1
    err = await client.error("session_expired")
    assert err["message"] == "Your session hit the maximum duration of 60 minutes."
    assert await client.closed_code() == 1001

    short = await make_server(max_session_s=0.3)
    client = await open_client(short)
    await client.error("session_expired")
    assert await client.closed_code() == 1001


async def test_session_expired_mid_response_stops_the_stream(make_server, open_client) -> None:
    server = await make_server(pace=1.0, faults=["session_expired@delta:2"])
    client = await open_client(server)
    await client.turn()
    await client.send({"type": "response.create"})
    events = await client.until("error")
    assert events[-1]["error"]["code"] == "session_expired"
    assert sum(e["type"] == "response.output_audio.delta" for e in events) == 2
    assert await client.closed_code() == 1001


async def test_injected_errors_keep_the_session_open(make_server, open_client) -> None:
    server = await make_server(faults=["error:rate_limit_exceeded@response"])
    client = await open_client(server)
    await client.turn()
    await client.send({"type": "response.create"})
    err = await client.error("rate_limit_exceeded")  # answered by the fault: no response.created
    assert err["type"] == "server_error"
    assert await server.send_error("server_error", "The server had an error.") == 1
    await client.error("server_error")
    await client.send({"type": "response.create"})
    assert (await client.until("response.done"))[-1]["response"]["status"] == "completed"


async def test_fault_close_with_code(make_server, open_client) -> None:
    server = await make_server(faults=["close:1011@connect"])
    client = await open_client(server)  # session.created comes first
    assert await client.closed_code() == 1011


async def test_malformed_frames_are_inserted_into_the_stream(make_server, open_client) -> None:
    faults = ["malformed:not_json@delta:2", "malformed:no_type@delta:3", "malformed:missing_field@delta:4"]
    server = await make_server(faults=faults)
    client = await open_client(server)
    await client.turn()
    await client.send({"type": "response.create"})
    kinds: list[str] = []  # "delta", "other", or what was wrong with the frame
    audio = bytearray()
    while "response.done" not in kinds:
        text = await asyncio.wait_for(client.ws.recv(), 5)
        try:
            ev = json.loads(text)
        except ValueError:
            kinds.append("not_json")
            continue
        if "type" not in ev:
            kinds.append("no_type")
            continue
        try:
            parse_server_event(ev, strict=True)
        except ValueError:  # pydantic's ValidationError is a ValueError
            kinds.append("invalid")
            continue
        if ev["type"] == "response.output_audio.delta":
            audio += base64.b64decode(ev["delta"])
        kinds.append("delta" if ev["type"] == "response.output_audio.delta" else ev["type"])
    deltas = [i for i, k in enumerate(kinds) if k == "delta"]
    assert kinds.index("not_json") == deltas[1] + 1
    assert kinds.index("no_type") == deltas[2] + 1
    assert kinds.index("invalid") == deltas[3] + 1
    assert server.records[-1].sent_counts["(malformed:missing_field)"] == 1
    assert audio == bundled_replies()[0].pcm  # the stream itself went on intact


async def test_slow_frames_delay_every_delta_after_the_first(make_server, open_client) -> None:
    """A lower bound only: the server cannot finish before its 7 pauses have passed, however
    the machine schedules it, while without them (pace 0) the reply takes a few ms."""
    server = await make_server(chunk_ms=500, slow_frames_ms=60)  # 8 chunks of a 3.5 s reply
    client = await open_client(server)
    await client.turn()
    started = time.monotonic()
    await client.send({"type": "response.create"})
    events = await client.until("response.done")
    elapsed_s = time.monotonic() - started
    assert sum(e["type"] == "response.output_audio.delta" for e in events) == 8
    assert elapsed_s >= 7 * 0.060 - 0.005  # timers fire early by at most the clock resolution


async def test_drop_now_ends_open_connections(make_server, open_client) -> None:
    server = await make_server()
    client = await open_client(server)
    assert await server.drop_connections() == 1
    assert await client.closed_code() is None
    assert await server.drop_connections() == 0


def test_fault_specs_parse_and_bad_ones_are_refused() -> None:
    assert Fault.parse("drop@delta:5") == Fault("drop", "delta", after_deltas=5)
    assert Fault.parse("error:rate_limit_exceeded@commit").code == "rate_limit_exceeded"
    assert Fault.parse("malformed:no_type").malformed == "no_type"
    for spec in ("explode@commit", "drop@lunch", "drop@commit:3", "malformed:weird@connect", "drop:1@commit"):
        with pytest.raises(ValueError):
            Fault.parse(spec)
    with pytest.raises(ValueError):
        LocalRealtimeServer(faults=["drop"])  # a start-time fault needs a trigger


# --------------------------------------------------------------------------- bounded memory


async def test_appends_past_the_buffer_cap_are_refused_not_stored(make_server, open_client) -> None:
    server, client = await configured(
        make_server, open_client, max_buffer_bytes=48_000, max_append_bytes=19_200
    )
    chunk = speech_pcm(400)  # 19,200 bytes
    await client.send({"type": "input_audio_buffer.append", "audio": b64(chunk)})
    await client.send({"type": "input_audio_buffer.append", "audio": b64(chunk)})
    await client.send({"type": "input_audio_buffer.append", "audio": b64(chunk), "event_id": "evt_full"})
    err = await client.error("input_audio_buffer_full")
    assert err["event_id"] == "evt_full"
    await client.send(
        {"type": "input_audio_buffer.append", "audio": b64(speech_pcm(500))}
    )  # over the per-event cap
    err = await client.error("invalid_value")
    assert err["param"] == "audio"
    await client.send({"type": "input_audio_buffer.commit"})
    assert (await client.recv())["type"] == "input_audio_buffer.committed"
    record = server.records[-1]
    assert record.commits[-1].audio_ms == 800  # the refused chunks never entered the buffer
    assert record.appended_bytes == 2 * len(chunk)


# --------------------------------------------------------------------------- the reply audio is speech


def looks_like_speech(pcm_24k: bytes) -> tuple[float, int, float]:
    """(share of 30 ms frames webrtcvad calls voiced, distinct spectral peaks over time, level modulation).

    webrtcvad alone would accept a steady tone, so the peak count (a voice's
    formants and pitch move; a tone's peak does not) and the syllabic level
    modulation are what rule tones and hums out."""
    x = np.frombuffer(pcm_24k, dtype="<i2").astype(np.float64)
    y = np.clip(resample_poly(x, 2, 3), -32768, 32767).astype("<i2")
    vad = webrtcvad.Vad(2)
    frames = [y[i : i + 480] for i in range(0, len(y) - 480 + 1, 480)]
    voiced = [vad.is_speech(f.tobytes(), 16000) for f in frames]
    blocks = y[: len(y) // 800 * 800].reshape(-1, 800).astype(np.float64)  # 50 ms
    level = np.sqrt(np.mean(blocks**2, axis=1))
    loud = blocks[level > 0.1 * level.max()]
    spectra = np.abs(np.fft.rfft(loud * np.hanning(800), axis=1))
    peaks_hz = np.argmax(spectra[:, 4:200], axis=1) + 4  # 80 Hz to 4 kHz in 20 Hz bins
    modulation = float(np.std(level) / np.mean(level))
    return float(np.mean(voiced)), len(set(peaks_hz.tolist())), modulation


def test_reply_audio_is_speech_and_the_check_rejects_a_tone() -> None:
    replies = bundled_replies()
    assert 3 <= len(replies) <= 5
    assert sum(len(r.pcm) for r in replies) < 700_000
    for reply in replies:
        voiced, peaks, modulation = looks_like_speech(reply.pcm)
        assert voiced > 0.8, (reply.name, voiced)
        assert peaks >= 8, (reply.name, peaks)
        assert modulation > 0.5, (reply.name, modulation)
        assert reply.transcript and 2.0 < reply.duration_ms / 1000 < 6.0
    t = np.arange(3 * 24000) / 24000
    tone = (0.3 * 32767 * np.sin(2 * np.pi * 220 * t)).astype("<i2").tobytes()
    _, peaks, modulation = looks_like_speech(tone)
    assert peaks <= 2 and modulation < 0.1


# --------------------------------------------------------------------------- CLI


def test_cli_parses_the_local_server_options() -> None:
    args = build_parser().parse_args(
        ["local-server", "--port", "0", "--pace", "0", "--fault", "drop@commit", "--fault", "error@response"]
    )
    assert (args.command, args.port, args.pace, args.host) == ("local-server", 0, 0.0, "127.0.0.1")
    assert args.fault == ["drop@commit", "error@response"]


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ('{"spek": 1}', "unknown keys ['spek']"),
        ("[1]", "[1] is not a JSON object"),
        ("{speak: 1}", "--script: Expecting property name"),
        ('{"speak": "reply_99"}', "no reply named 'reply_99'"),
    ],
)
def test_a_bad_script_is_refused_with_what_is_wrong(spec: str, names: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edged.cli", "local-server", "--port", "0", "--script", spec],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 64 and names in out.stderr, out.stderr


async def test_cli_serves_until_sigterm() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged.cli", "local-server", "--port", "0", "--transcript", "hello"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        url = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)  # type: ignore[union-attr]
        assert url.startswith("ws://127.0.0.1:") and url.strip().endswith("/v1/realtime")
        async with connect(
            f"{url.strip()}?model={MODEL}", additional_headers={"Authorization": "Bearer x"}
        ) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 5))
            parse_server_event(first, strict=True)
            assert first["type"] == "session.created"
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=10)
        assert proc.returncode == 0, stderr
        assert "Bearer" not in stderr and "listening on ws://127.0.0.1:" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
