"""The Realtime protocol core and session decisions, checked against the openai SDK's own types."""

from __future__ import annotations

import base64
import json
import random

import numpy as np
import pytest
from conformance import parse_server_event as sdk_parse
from conformance import validate_client_event

from edged.realtime import core as c
from edged.realtime import protocol as p

TOOL = {
    "type": "function",
    "name": "set_timer",
    "description": "Start a kitchen timer.",
    "parameters": {"type": "object", "properties": {"seconds": {"type": "integer"}}, "required": ["seconds"]},
}


def b64_ms(ms: int) -> str:
    return base64.b64encode(b"\x01\x00" * (p.API_RATE_HZ * ms // 1000)).decode()


# -- client events ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        p.SessionSettings(),
        p.SessionSettings(
            instructions="Be brief.",
            voice="cedar",
            transcription_model="gpt-4o-mini-transcribe",
            transcription_language="en",
            noise_reduction="near_field",
            tools=(TOOL,),
        ),
        p.SessionSettings(noise_reduction="off"),
    ],
)
def test_session_update_is_ga_and_manual_turns(settings: p.SessionSettings) -> None:
    ev = p.ClientEvents().session_update(settings)
    validate_client_event(ev)
    audio = ev["session"]["audio"]
    assert ev["session"]["type"] == "realtime"
    assert audio["input"]["turn_detection"] is None
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["output"]["voice"] == settings.voice
    assert ("tools" in ev["session"]) == bool(settings.tools)


def test_every_client_event_validates_and_ids_are_unique() -> None:
    e = p.ClientEvents()
    events = [
        e.append(b64_ms(20)),
        e.commit(),
        e.clear(),
        e.response_create(),
        e.response_create("Tell the user the pasta timer is done."),
        e.response_cancel(),
        e.response_cancel("resp_1"),
        e.truncate("item_1", 1234),
        e.function_output("call_1", json.dumps({"ok": True})),
        e.message("user", "what time is it"),
        e.message("assistant", "It is noon."),
    ]
    for ev in events:
        validate_client_event(ev)
    assert len({ev["event_id"] for ev in events}) == len(events)


def test_the_oracle_rejects_the_dead_beta_shape() -> None:
    beta = {"type": "session.update", "session": {"modalities": ["audio"], "input_audio_format": "pcm16"}}
    with pytest.raises(ValueError):
        validate_client_event(beta)


# -- server events ---------------------------------------------------------------------------------


def server(ev: dict) -> str:
    """A server event, first checked to be one the SDK itself accepts."""
    ev.setdefault("event_id", "evt_1")
    sdk_parse(ev, strict=False)
    return json.dumps(ev)


def audio_delta(item: str = "item_a", rid: str = "resp_1", ms: int = 100) -> str:
    return server(
        {
            "type": "response.output_audio.delta",
            "response_id": rid,
            "item_id": item,
            "output_index": 0,
            "content_index": 0,
            "delta": b64_ms(ms),
        }
    )


def response_created(rid: str = "resp_1") -> str:
    return server({"type": "response.created", "response": {"id": rid, "object": "realtime.response"}})


def response_done(rid: str = "resp_1", status: str = "completed", output: list | None = None) -> str:
    usage = {
        "input_tokens": 30,
        "output_tokens": 40,
        "total_tokens": 70,
        "input_token_details": {"audio_tokens": 20, "text_tokens": 10, "cached_tokens": 0},
        "output_token_details": {"audio_tokens": 35, "text_tokens": 5},
    }
    resp = {
        "id": rid,
        "object": "realtime.response",
        "status": status,
        "usage": usage,
        "output": output or [],
    }
    return server({"type": "response.done", "response": resp})


def error(code: str, client_event: str = "") -> str:
    err = {
        "type": "invalid_request_error",
        "code": code,
        "message": f"{code} happened",
        "event_id": client_event,
    }
    return server({"type": "error", "error": err})


def test_parse_typed_events() -> None:
    d = p.parse_server_event(audio_delta(ms=50))
    assert isinstance(d, p.AudioDelta) and len(d.pcm) == 2400 and d.item_id == "item_a"
    done = p.parse_server_event(response_done())
    assert isinstance(done, p.ResponseDone) and done.usage["total_tokens"] == 70
    err = p.parse_server_event(error("session_expired", "edged_7"))
    assert err == p.ServerError(
        "session_expired", "session_expired happened", "invalid_request_error", "edged_7", "evt_1"
    )
    fc = server(
        {
            "type": "response.function_call_arguments.done",
            "response_id": "r",
            "item_id": "i",
            "output_index": 0,
            "call_id": "call_9",
            "name": "set_timer",
            "arguments": '{"seconds": 5}',
        }
    )
    assert p.parse_server_event(fc) == p.FunctionCall("r", "i", "call_9", "set_timer", '{"seconds": 5}')
    rl = server({"type": "rate_limits.updated", "rate_limits": []})
    assert p.parse_server_event(rl) == p.Ignored("rate_limits.updated")


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        json.dumps({"no": "type"}),
        json.dumps(
            {"type": "response.output_audio.delta", "response_id": "r", "delta": "AAAA"}
        ),  # no item_id
        json.dumps(
            {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "@@@"}
        ),
        json.dumps(
            {"type": "response.output_audio.delta", "response_id": "r", "item_id": "i", "delta": "AA=="}
        ),
        json.dumps({"type": "response.done"}),
        json.dumps({"type": "error", "error": "boom"}),
    ],
)
def test_malformed_server_events_raise_protocol_error(text: str) -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_server_event(text)


def test_trace_elides_audio_but_keeps_everything_else() -> None:
    e = p.ClientEvents()
    ev = e.append(b64_ms(100))
    out = p.elide_audio(ev)
    assert out["audio"] == "<4800 bytes>" and out["event_id"] == ev["event_id"]
    delta = p.elide_audio(json.loads(audio_delta(ms=50)))
    assert delta["delta"] == "<2400 bytes>" and delta["item_id"] == "item_a"
    transcript = {"type": "response.output_audio_transcript.delta", "delta": "Hello"}
    assert p.elide_audio(transcript) == transcript


# -- the session core ------------------------------------------------------------------------------


def sends(cmds: list) -> list[dict]:
    return [x.event for x in cmds if isinstance(x, c.Send)]


def kinds(cmds: list) -> list[str]:
    return [e["type"] for e in sends(cmds)]


def new_core(**kw) -> c.SessionCore:
    return c.SessionCore(c.CoreConfig(**kw), rng=random.Random(1))


def speak(core: c.SessionCore, now: float, chunks: int = 3, ms: int = 100, barge=("", 0)) -> list:
    out = core.turn_started(now, bool(barge[0]), barge[0], barge[1])
    for _ in range(chunks):
        out += core.turn_audio(now, b64_ms(ms))
    return out + core.turn_committed(now)


def test_lazy_connect_buffers_the_turn_and_sends_it_after_session_update() -> None:
    core = new_core()
    out = speak(core, 0)
    assert [type(x) for x in out] == [c.Connect]  # nothing sent before the socket is open
    out = core.connected(50)
    # what waited goes out in one append (a whole turn at once need not be 10 ms events)
    assert kinds(out) == [
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "response.create",
    ]
    assert len(base64.b64decode(sends(out)[1]["audio"])) == 3 * 100 * 48
    for ev in sends(out):
        validate_client_event(ev)
    out = core.server_message(60, response_created()) + core.server_message(300, audio_delta())
    assert [type(x) for x in out] == [c.Play]
    out = core.server_message(400, response_done())
    done = [x for x in out if isinstance(x, c.TurnDone)]
    assert done[0].commit_to_audio_ms == 250 and done[0].uploaded_ms == 300
    assert done[0].usage[0]["total_tokens"] == 70 and done[0].status == "completed"


def test_a_dropped_connection_resends_the_whole_turn() -> None:
    core = new_core()
    speak(core, 0)
    first = sends(core.connected(10))
    appended = [e["audio"] for e in first if e["type"] == "input_audio_buffer.append"]
    out = core.disconnected(20, "connection reset")
    assert any(isinstance(x, c.Connect) for x in out)  # the first retry is immediate
    out = core.connected(30)
    again = [e["audio"] for e in sends(out) if e["type"] == "input_audio_buffer.append"]
    assert again == appended
    assert kinds(out)[-2:] == ["input_audio_buffer.commit", "response.create"]
    assert core.reconnects == 1


def test_repeated_failures_back_off_exponentially_with_jitter() -> None:
    core = new_core(reconnect_min_ms=500, reconnect_max_ms=8000)
    speak(core, 0)
    waits = []
    now = 0.0
    for _ in range(7):
        core.connect_failed(now, "refused")
        at = core._retry_at
        assert at is not None
        waits.append(at - now)
        assert core.tick(at - 1) == []  # not a moment early
        assert isinstance(core.tick(at)[0], c.Connect)
        now = at
    for k, w in enumerate(waits):
        base = min(8000, 500 * 2**k)
        assert base / 2 <= w <= base
    assert len({round(w) for w in waits}) == len(waits)  # jittered


def test_turn_spoken_while_down_waits_for_the_backoff_then_is_sent() -> None:
    core = new_core()
    core.turn_started(0, False, "", 0)
    core.connect_failed(0, "refused")
    assert core.turn_audio(10, b64_ms(100)) == []
    assert core.turn_committed(20) == []
    out = core.tick(core._retry_at)
    assert isinstance(out[0], c.Connect)
    assert kinds(core.connected(2000)).count("input_audio_buffer.append") == 1


def replying_core() -> c.SessionCore:
    """A core whose first turn's reply (item_a) is playing."""
    core = new_core()
    speak(core, 0)
    core.connected(0)
    core.server_message(10, response_created())
    core.server_message(20, audio_delta(item="item_a"))
    return core


def test_barge_in_pauses_the_speaker_and_once_confirmed_cancels_and_truncates_at_what_was_heard() -> None:
    core = replying_core()
    out = core.turn_started(900, True, "item_a", 640)
    assert [type(x) for x in out] == [c.PausePlayback]  # silent at once, nothing cancelled yet
    # the reply keeps arriving while paused: queued, not dropped, in case the turn is not the user
    assert [type(x) for x in core.server_message(902, audio_delta(item="item_a"))] == [c.Play]
    out = core.turn_confirmed(904)
    assert isinstance(out[0], c.StopPlayback)
    logs = [x.message for x in out if isinstance(x, c.Log)]
    assert logs == ["barge-in: the reply is cut after 640 ms of it"]
    ev = sends(out)
    assert [e["type"] for e in ev] == ["response.cancel", "conversation.item.truncate"]
    assert ev[1]["item_id"] == "item_a" and ev[1]["audio_end_ms"] == 640
    for e in ev:
        validate_client_event(e)
    assert core.turn_confirmed(906) == []  # once only
    # audio of the interrupted reply still in flight never restarts the speaker
    assert core.server_message(905, audio_delta(item="item_a")) == []
    # the new turn is held until the cancelled response is done, then goes out whole
    assert core.turn_audio(910, b64_ms(100)) == []
    assert core.turn_audio(920, b64_ms(100)) == []
    assert core.turn_committed(930) == []
    out = core.server_message(940, error("response_cancel_not_active"))
    assert all(x.level == "debug" for x in out if isinstance(x, c.Log))
    out = core.server_message(950, response_done(status="cancelled"))
    assert [x.barge_in for x in out if isinstance(x, c.TurnDone)] == [False]
    assert kinds(out) == ["input_audio_buffer.append", "input_audio_buffer.commit", "response.create"]


def test_a_barge_in_too_short_to_be_speech_resumes_the_reply_and_cancels_nothing() -> None:
    core = replying_core()
    assert [type(x) for x in core.turn_started(900, True, "item_a", 640)] == [c.PausePlayback]
    out = core.turn_audio(910, b64_ms(100))  # the barge-in's own audio waits behind the reply
    out += core.turn_discarded(1300)
    assert [type(x) for x in out] == [c.ResumePlayback, c.Log] and sends(out) == []
    assert core.resumed_replies == 1
    # the reply was not silenced: the rest of it plays, and its turn completes as usual
    assert [type(x) for x in core.server_message(1310, audio_delta(item="item_a"))] == [c.Play]
    out = core.server_message(1400, response_done())
    assert [x.status for x in out if isinstance(x, c.TurnDone)] == ["completed"]
    assert core.turn_confirmed(1500) == []  # nothing left to cancel


def answering_core() -> c.SessionCore:
    """A core whose first turn is committed and its reply asked for: nothing played yet."""
    core = new_core()
    speak(core, 0)
    assert kinds(core.connected(0))[-1] == "response.create"
    return core


def logs(cmds: list) -> list[str]:
    return [x.message for x in cmds if isinstance(x, c.Log)]


def test_the_user_going_on_before_the_reply_plays_cancels_it_and_one_reply_answers_both() -> None:
    core = answering_core()
    core.server_message(10, response_created())
    out = core.turn_started(300, False, "", 0)  # nothing plays: not a barge-in
    assert [type(x) for x in out] == [c.PausePlayback]
    # reply audio arriving meanwhile is held by the paused speaker, in case this is a cough
    assert [type(x) for x in core.server_message(320, audio_delta(item="item_a"))] == [c.Play]
    assert core.turn_audio(330, b64_ms(100)) == []  # the new turn waits behind the first
    out = core.turn_confirmed(500)
    assert isinstance(out[0], c.StopPlayback)
    assert logs(out) == [
        "the user went on speaking: the reply is cancelled before it played; one answers both turns"
    ]
    ev = sends(out)
    assert [e["type"] for e in ev] == ["response.cancel", "conversation.item.truncate"]
    assert ev[1]["item_id"] == "item_a" and ev[1]["audio_end_ms"] == 0
    assert core.server_message(510, audio_delta(item="item_a")) == []  # never plays
    assert core.joined_turns == 1 and core.resumed_replies == 0
    assert core.turn_committed(600) == []
    out = core.server_message(650, response_done(status="cancelled"))
    assert [x.status for x in out if isinstance(x, c.TurnDone)] == ["cancelled"]
    # the second turn goes out and one response answers the conversation, both turns in it
    assert kinds(out) == ["input_audio_buffer.append", "input_audio_buffer.commit", "response.create"]


def test_a_reply_asked_for_but_not_yet_created_is_cancelled_once_it_is() -> None:
    core = answering_core()
    assert [type(x) for x in core.turn_started(300, False, "", 0)] == [c.PausePlayback]
    out = core.turn_confirmed(500)
    assert [type(x) for x in out] == [c.StopPlayback, c.Log] and sends(out) == []
    assert kinds(core.server_message(510, response_created())) == ["response.cancel"]
    assert core.server_message(520, audio_delta()) == []
    core.turn_audio(530, b64_ms(200))
    core.turn_committed(600)
    out = core.server_message(650, response_done(status="cancelled"))
    assert kinds(out)[-1] == "response.create"


def test_a_cough_before_the_reply_plays_lets_the_reply_play() -> None:
    core = answering_core()
    core.server_message(10, response_created())
    core.turn_started(300, False, "", 0)
    out = core.turn_discarded(450)
    assert [type(x) for x in out] == [c.ResumePlayback, c.Log] and sends(out) == []
    assert core.joined_turns == 0 and core.resumed_replies == 1
    assert [type(x) for x in core.server_message(460, audio_delta())] == [c.Play]
    out = core.server_message(500, response_done())
    assert [x.status for x in out if isinstance(x, c.TurnDone)] == ["completed"]


def test_a_turn_after_the_reply_was_answered_holds_nothing() -> None:
    core = answering_core()
    core.server_message(10, response_created())
    core.server_message(20, audio_delta())
    core.server_message(30, response_done())
    assert core.turn_started(5000, False, "", 0) == []  # the answer is over: a new question


def test_settled_only_when_nothing_asked_of_the_server_is_outstanding() -> None:
    core = new_core()
    assert core.settled
    speak(core, 0)
    assert not core.settled  # connecting
    core.connected(10)
    assert not core.settled  # a response asked for
    core.server_message(20, response_created())
    core.server_message(30, audio_delta())
    assert not core.settled  # still arriving
    core.server_message(40, response_done())
    assert core.settled


def test_a_long_turn_resent_at_once_fits_in_few_events_with_every_byte() -> None:
    core = new_core()
    core.turn_started(0, False, "", 0)
    rng = np.random.default_rng(5)
    chunks = [
        base64.b64encode(rng.integers(-3000, 3000, 24 * ms, dtype="<i2").tobytes()).decode()
        for ms in rng.integers(10, 40, 3200)  # about 80 s in uneven chunks: the 75 s cap cuts it
    ]
    for ch in chunks:
        core.turn_audio(0, ch)
    core.turn_committed(0)
    appends = [e["audio"] for e in sends(core.connected(10)) if e["type"] == "input_audio_buffer.append"]
    assert 36 <= len(appends) <= 38  # 2 s each, against about 3,000 events as spoken
    sent = b"".join(base64.b64decode(a) for a in appends)
    kept = b"".join(base64.b64decode(ch) for ch in chunks)[: len(sent)]
    assert sent == kept and len(sent) >= 74 * 48000


def test_session_expired_reopens_at_once_and_seeds_the_conversation() -> None:
    core = new_core()
    speak(core, 0)
    core.connected(0)
    transcript = {"type": "conversation.item.input_audio_transcription.completed", "item_id": "u1"}
    core.server_message(
        10,
        server(
            {
                **transcript,
                "content_index": 0,
                "transcript": "set a timer",
                "usage": {"type": "duration", "seconds": 1.2},
            }
        ),
    )
    core.server_message(20, response_created())
    core.server_message(
        30,
        server(
            {
                "type": "response.output_audio_transcript.done",
                "response_id": "resp_1",
                "item_id": "a1",
                "output_index": 0,
                "content_index": 0,
                "transcript": "For how long?",
            }
        ),
    )
    core.server_message(40, response_done())
    speak(core, 100)  # the next turn is in flight when the session expires
    out = core.server_message(200, error("session_expired"))
    assert any(isinstance(x, c.Disconnect) for x in out)
    out = core.disconnected(210, "close 1001")
    assert any(isinstance(x, c.Connect) for x in out)
    ev = sends(core.connected(220))
    items = [e["item"] for e in ev if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["text"]) for i in items] == [
        ("user", "set a timer"),
        ("assistant", "For how long?"),
    ]
    assert [e["type"] for e in ev][-2:] == ["input_audio_buffer.commit", "response.create"]


def test_a_rejected_key_is_retried_rarely_not_in_a_loop() -> None:
    core = new_core(bad_key_retry_ms=300_000)
    speak(core, 0)
    core.connected(0)
    out = core.server_message(10, error("invalid_api_key"))
    assert any(isinstance(x, c.Disconnect) for x in out)
    assert any(x.level == "error" and "key" in x.message for x in out if isinstance(x, c.Log))
    assert not any(isinstance(x, c.Connect) for x in core.disconnected(20, "closed"))
    assert core.tick(299_000) == []
    assert isinstance(core.tick(300_010)[0], c.Connect)
    # a handshake refused with 401 waits just as long
    assert core.connect_failed(300_020, "HTTP 401", auth=True)
    assert core.tick(599_000) == []


def test_idle_hangs_up_and_old_sessions_renew_between_turns() -> None:
    core = new_core(idle_disconnect_ms=60_000, renew_after_ms=3_000_000)
    speak(core, 0)
    core.connected(0)
    core.server_message(10, response_created())
    core.server_message(20, response_done())
    assert core.tick(50_000) == []
    assert core.tick(60_020) == [c.Disconnect("idle")]
    assert core.disconnected(60_030, "closed by us") == [c.Log("info", "disconnected (idle)")]
    assert core.tick(10_000_000) == []  # lazy: nothing to say, no connection
    core2 = new_core(idle_disconnect_ms=10**9, renew_after_ms=3_000_000)
    speak(core2, 0)
    core2.connected(0)
    core2.server_message(10, response_created())
    core2.server_message(20, response_done())
    assert core2.tick(3_000_000)[0].reason.startswith("session renewal")


def test_tool_call_round_trip() -> None:
    core = new_core(settings=p.SessionSettings(tools=(TOOL,)))
    speak(core, 0)
    core.connected(0)
    core.server_message(10, response_created())
    call = {
        "type": "response.function_call_arguments.done",
        "response_id": "resp_1",
        "item_id": "fc1",
        "output_index": 0,
        "call_id": "call_1",
        "name": "set_timer",
        "arguments": '{"seconds": 300}',
    }
    out = core.server_message(20, server(call))
    assert out == [c.RunTool("call_1", "set_timer", '{"seconds": 300}')]
    fc_item = {
        "type": "function_call",
        "call_id": "call_1",
        "name": "set_timer",
        "arguments": '{"seconds": 300}',
    }
    out = core.server_message(30, response_done(output=[fc_item]))
    assert sends(out) == [] and not any(isinstance(x, c.TurnDone) for x in out)
    out = core.tool_result(40, "call_1", '{"ok": true}')
    assert kinds(out) == ["conversation.item.create", "response.create"]
    for e in sends(out):
        validate_client_event(e)
    core.server_message(50, response_created("resp_2"))
    out = core.server_message(60, response_done("resp_2"))
    done = [x for x in out if isinstance(x, c.TurnDone)]
    assert len(done) == 1 and len(done[0].usage) == 2


def test_short_turns_are_cleared_not_committed_and_discards_clear() -> None:
    core = new_core()
    core.turn_started(0, False, "", 0)
    core.connected(0)
    core.turn_audio(0, b64_ms(60))
    out = core.turn_committed(10)
    assert kinds(out) == ["input_audio_buffer.clear"]
    core.turn_started(20, False, "", 0)
    core.turn_audio(20, b64_ms(100))
    assert kinds(core.turn_discarded(30)) == ["input_audio_buffer.clear"]


def test_budget_reached_opens_no_session() -> None:
    core = new_core()
    assert core.set_budget_exhausted(True)
    out = speak(core, 0)
    assert not any(isinstance(x, c.Connect) for x in out) and core.dropped_turns == 1


def test_malformed_server_event_is_logged_and_skipped() -> None:
    core = new_core()
    speak(core, 0)
    core.connected(0)
    out = core.server_message(10, "{not json")
    assert len(out) == 1 and out[0].level == "warning"
    out = core.server_message(20, response_created()) + core.server_message(30, audio_delta())
    assert [type(x) for x in out] == [c.Play]


def test_announcement_waits_for_the_connection_and_the_turn() -> None:
    core = new_core()
    out = core.announce(0, "Say: the pasta timer is done.")
    assert out == [c.Connect()]
    ev = sends(core.connected(10))
    assert ev[-1]["type"] == "response.create"
    assert ev[-1]["response"]["instructions"].startswith("Say:")
    validate_client_event(ev[-1])


def test_resend_buffer_is_bounded() -> None:
    core = new_core()
    core.turn_started(0, False, "", 0)
    chunk = b64_ms(1000)
    out: list = []
    for _ in range(80):
        out += core.turn_audio(0, chunk)
    out += core.turn_audio(0, b64_ms(10))  # a short chunk after the cap must not leave a hole
    assert sum(isinstance(x, c.Log) and x.level == "warning" for x in out) == 1  # once, not a flood
    assert core._turn is not None and core._turn.chars <= c.MAX_TURN_B64_CHARS
    assert np.isclose(core._turn.uploaded_ms, 75 * 1000)


@pytest.mark.parametrize("n_bytes", [0, 2, 4, 6, 4800, 4802])
def test_audio_length_is_read_from_base64_without_decoding(n_bytes: int) -> None:
    text = base64.b64encode(b"\x00" * n_bytes).decode()
    assert p.b64_pcm_ms(text) == n_bytes / 48
