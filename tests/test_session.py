"""The Realtime session over a real WebSocket against edged's local server: turns, faults, barge-in, tools."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pytest
from conformance import validate_client_event

from edged.config import RealtimeConfig
from edged.playback import Playback
from edged.realtime.core import Link
from edged.realtime.local_server import LocalRealtimeServer
from edged.realtime.session import RealtimeSession, turn_line
from edged.tools import BUILTINS, Timers, Toolbox, ToolContext

KEY = "sk-local-test-0123456789"


def speech_b64(ms: int, seed: int) -> str:
    """Deterministic non-silent PCM16 at 24 kHz (content does not matter to the server)."""
    rng = np.random.default_rng(seed)
    pcm = (rng.standard_normal(24 * ms) * 3000).astype("<i2").tobytes()
    return base64.b64encode(pcm).decode()


async def until(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout_s
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def make_session(server: LocalRealtimeServer, **kw) -> RealtimeSession:
    cfg = RealtimeConfig(url=server.url, reconnect_min_ms=50, reconnect_max_ms=200, **kw.pop("cfg", {}))
    return RealtimeSession(cfg, kw.pop("key", KEY), Playback(prebuffer_ms=0), **kw)


def speak_turn(s: RealtimeSession, chunks: list[str], barge_in: bool = False) -> None:
    s.turn_started(barge_in)
    for ch in chunks:
        s.turn_audio(ch)
    s.turn_committed(end_to_commit_ms=420.0)


def sha(chunks: list[str]) -> str:
    return hashlib.sha256(b"".join(base64.b64decode(c) for c in chunks)).hexdigest()


async def test_a_turn_is_answered_with_speech_and_accounted() -> None:
    async with LocalRealtimeServer(pace=0) as server:
        s = make_session(server)
        s.start()
        assert server.records == [] or len(server.records) == 0  # lazy: nothing before speech
        chunks = [speech_b64(100, k) for k in range(5)]
        speak_turn(s, chunks)
        await until(lambda: len(s.turns_done) == 1)
        done = s.turns_done[0]
        assert done.status == "completed" and done.uploaded_ms == pytest.approx(500)
        assert done.commit_to_audio_ms is not None and done.commit_to_audio_ms >= 0
        line = turn_line(done, [], None)
        assert done.end_to_commit_ms == 420.0 and "uploaded 0.50 s, speech end→commit 420 ms" in line
        assert done.usage and done.usage[0]["input_token_details"]["audio_tokens"] >= 5
        rec = server.records[0]
        assert [c.sha256 for c in rec.commits] == [sha(chunks)]
        update = rec.received("session.update")[0]
        assert update["session"]["audio"]["input"]["turn_detection"] is None
        assert s.playback.received_ms(s.playback._queue[0][0]) > 1000  # a real spoken reply queued
        await s.stop()


async def test_stopping_with_a_reply_in_flight_silences_and_cancels_it_within_the_bound() -> None:
    """SIGTERM mid-reply: the speaker stops at once and the service is told to stop
    generating (a reply nobody hears is still billed while it runs)."""
    async with LocalRealtimeServer(pace=1) as server:  # real time: the reply is still streaming
        s = make_session(server)
        s.start()
        speak_turn(s, [speech_b64(100, k) for k in range(5)])
        await until(lambda: s.playback.active)
        assert s.core._response  # still generating
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await s.stop(1.5)
        assert loop.time() - t0 < 1.5
        assert not s.playback.active
        await until(lambda: bool(server.records[0].received("response.cancel")))


async def test_drop_at_commit_resends_the_whole_turn_on_a_new_connection() -> None:
    async with LocalRealtimeServer(pace=0, faults=["drop@commit"]) as server:
        s = make_session(server)
        s.start()
        chunks = [speech_b64(100, k) for k in range(4)]
        speak_turn(s, chunks)
        await until(lambda: len(s.turns_done) == 1)
        assert len(server.records) == 2 and server.records[0].faults_fired
        assert [c.sha256 for c in server.records[1].commits] == [sha(chunks)]
        assert s.core.reconnects == 1
        await s.stop()


async def test_drop_mid_stream_of_audio_keeps_the_turn() -> None:
    async with LocalRealtimeServer(pace=0) as server:
        s = make_session(server)
        s.start()
        chunks = [speech_b64(100, k) for k in range(6)]
        s.turn_started(False)
        for ch in chunks[:3]:
            s.turn_audio(ch)
        await until(lambda: bool(server.records) and server.records[0].appended_bytes >= 3 * 4800)
        await server.drop_connections()
        for ch in chunks[3:]:
            s.turn_audio(ch)
        s.turn_committed()
        await until(lambda: len(s.turns_done) == 1)
        assert [c.sha256 for c in server.records[-1].commits] == [sha(chunks)]
        await s.stop()


async def test_session_expired_opens_a_new_session_seeded_with_the_conversation() -> None:
    async with LocalRealtimeServer(pace=0, transcripts=["what can you cook"]) as server:
        s = make_session(server)
        s.start()
        speak_turn(s, [speech_b64(200, 1)])
        await until(lambda: len(s.turns_done) == 1)
        await server.expire_sessions()
        await until(lambda: s.core.link is Link.DOWN)
        speak_turn(s, [speech_b64(200, 2)])
        await until(lambda: len(s.turns_done) == 2)
        seeded = server.records[1].received("conversation.item.create")
        texts = [(e["item"]["role"], e["item"]["content"][0]["text"]) for e in seeded]
        assert texts[0] == ("user", "what can you cook")
        assert texts[1][0] == "assistant" and len(texts[1][1]) > 10
        await s.stop()


async def test_a_rejected_key_is_reported_and_not_retried_in_a_loop(caplog: pytest.LogCaptureFixture) -> None:
    async with LocalRealtimeServer(pace=0, api_key="sk-the-right-one") as server:
        s = make_session(server, cfg={"bad_key_retry_s": 10})
        s.start()
        with caplog.at_level(logging.INFO):
            speak_turn(s, [speech_b64(200, 1)])
            await until(lambda: any("rejected" in r.getMessage() for r in caplog.records))
            await asyncio.sleep(0.5)
        assert len(server.records) == 1  # no second attempt within the 10 s wait
        assert KEY not in caplog.text
        await s.stop()


async def replying(server: LocalRealtimeServer) -> RealtimeSession:
    """A session whose first reply has 200 ms waiting in the playback buffer."""
    s = make_session(server)
    s.start()
    speak_turn(s, [speech_b64(300, 1)])
    await until(lambda: s.playback.queued_ms >= 200)
    return s


async def test_barge_in_silences_at_once_then_cancels_and_truncates_at_what_was_played() -> None:
    async with LocalRealtimeServer(pace=1.0, chunk_ms=50) as server:
        s = await replying(server)
        item = s.playback._queue[0][0]
        for _ in range(15):  # the speaker plays 150 ms of the 200 ms already here
            s.playback.pull(240)
        played = s.playback.played_ms(item)
        assert played == 150
        speak_turn(s, [speech_b64(300, 2)], barge_in=True)
        assert not s.playback.pull(240).any()  # silent within the same frame
        await until(lambda: len(server.records[0].truncations) == 1)
        assert server.records[0].truncations[0]["audio_end_ms"] == played
        assert server.records[0].received("response.cancel")
        await until(lambda: len(server.records[0].commits) == 2)
        await s.stop()


async def test_a_false_barge_in_pauses_the_reply_and_it_plays_on_with_nothing_cancelled() -> None:
    async with LocalRealtimeServer(pace=1.0, chunk_ms=50) as server:
        s = await replying(server)
        before = np.concatenate([s.playback.pull(240) for _ in range(5)])
        s.turn_started(True)  # a cough over the reply
        s.turn_audio(speech_b64(100, 3))
        assert not s.playback.pull(240).any()  # silent within the same frame
        s.turn_discarded()  # too short to be the user
        after = s.playback.pull(240)
        assert after.any() and before.any()
        await until(lambda: len(s.turns_done) == 1)
        assert s.turns_done[0].status == "completed" and not s.turns_done[0].barge_in
        rec = server.records[0]
        assert not rec.received("response.cancel") and not rec.truncations
        assert len(rec.commits) == 1 and s.core.resumed_replies == 1
        await s.stop()


async def test_function_call_round_trip_with_the_built_in_clock() -> None:
    script = [{"call": "current_time", "arguments": {}}]
    async with LocalRealtimeServer(pace=0, script=script) as server:
        box = Toolbox(BUILTINS)
        ctx = ToolContext(
            now=lambda: datetime(2026, 11, 23, 7, 30, tzinfo=UTC), monotonic_s=lambda: 0.0, timers=Timers()
        )

        async def run_tool(name: str, args: str) -> str:
            return await box.call(name, args, ctx, timeout_s=1.0)

        s = make_session(server, tools=tuple(box.declarations()), run_tool=run_tool)
        s.start()
        speak_turn(s, [speech_b64(200, 1)])
        await until(lambda: len(s.turns_done) == 1)
        outputs = server.records[0].function_outputs
        assert len(outputs) == 1 and "07:30" in outputs[0]["output"]
        assert len(s.turns_done[0].usage) == 2  # the call, then the spoken answer
        await s.stop()


async def test_trace_has_every_event_without_audio_or_key() -> None:
    async with LocalRealtimeServer(pace=0) as server:
        trace = io.StringIO()
        s = make_session(server, trace=trace)
        s.start()
        speak_turn(s, [speech_b64(200, 1)])
        await until(lambda: len(s.turns_done) == 1)
        await s.stop()
    lines = [json.loads(x) for x in trace.getvalue().splitlines()]
    out = [x["event"] for x in lines if x["dir"] == "out"]
    assert [e["type"] for e in out][:2] == ["session.update", "input_audio_buffer.append"]
    for e in out:
        validate_client_event({**e, "audio": "AAAA"} if "audio" in e else e)
    assert any(x["event"]["type"] == "response.output_audio.delta" for x in lines if x["dir"] == "in")
    assert KEY not in trace.getvalue()
    assert all("bytes>" in e["audio"] for e in out if "audio" in e)


async def test_malformed_frames_and_error_events_are_logged_and_the_turn_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults = [
        "malformed:not_json@delta:2",
        "malformed:missing_field@delta:3",
        "error:rate_limit_exceeded@delta:4",
    ]
    async with LocalRealtimeServer(pace=0, faults=faults) as server:
        s = make_session(server)
        s.start()
        with caplog.at_level(logging.INFO):
            speak_turn(s, [speech_b64(200, 1)])
            await until(lambda: len(s.turns_done) == 1)
        assert s.turns_done[0].status == "completed" and len(server.records) == 1
        assert sum("malformed server event skipped" in r.getMessage() for r in caplog.records) == 2
        mine = [r.getMessage() for r in caplog.records if r.name == "edged.realtime"]
        errors = [m for m in mine if "rate_limit_exceeded" in m]
        assert errors and "[event_" in errors[0]  # logged with the server's event_id
        await s.stop()


async def test_the_daily_budget_stops_sending_turns_until_the_next_day(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from datetime import date

    from edged.config import CostConfig
    from edged.realtime.session import Budget

    day = [date(2026, 11, 23)]
    async with LocalRealtimeServer(pace=0) as server:
        budget = Budget(CostConfig(daily_budget_usd=1e-6), "gpt-realtime-2.1-mini", lambda: day[0])
        s = make_session(server, budget=budget)
        s.start()
        with caplog.at_level(logging.WARNING, logger="edged.realtime"):
            speak_turn(s, [speech_b64(200, 1)])
            await until(lambda: len(s.turns_done) == 1)
            assert budget.ledger.today(day[0]).usd > 1e-6
            speak_turn(s, [speech_b64(200, 2)])
            await asyncio.sleep(0.2)
        assert len(server.records[0].commits) == 1 and s.core.dropped_turns == 1
        assert any("budget" in r.getMessage() for r in caplog.records)
        day[0] = date(2026, 11, 24)  # a new day: the budget is free again
        speak_turn(s, [speech_b64(200, 3)])
        await until(lambda: len(s.turns_done) == 2)
        await s.stop()


def test_enabled_tools_are_declared_and_callable() -> None:
    from edged.config import ToolsConfig
    from edged.realtime.session import tool_runner

    ctx = ToolContext(
        now=lambda: datetime(2026, 11, 23, 7, 30, tzinfo=UTC), monotonic_s=lambda: 0.0, timers=Timers()
    )
    decls, run = tool_runner(ToolsConfig(enabled=("current_time", "set_timer")), ctx)
    assert [d["name"] for d in decls] == ["current_time", "set_timer"]
    out = json.loads(asyncio.run(run("set_timer", '{"seconds": 60, "label": "tea"}')))
    assert "error" not in out and len(ctx.timers) == 1


async def test_a_fired_timer_is_announced_unprompted() -> None:
    now_s = [100.0]
    ctx = ToolContext(now=lambda: datetime(2026, 11, 23, 7, 30, tzinfo=UTC), monotonic_s=lambda: now_s[0])
    async with LocalRealtimeServer(pace=0) as server:
        s = make_session(server, tool_context=ctx)
        s.start()
        ctx.timers.add("pasta", 600, now_s[0])
        await asyncio.sleep(0.2)
        assert len(server.records) == 0  # nothing due: no connection, nothing billed
        now_s[0] += 600
        await until(lambda: bool(server.records) and bool(server.records[0].received("response.create")))
        create = server.records[0].received("response.create")[0]
        assert (
            "'pasta'" in create["response"]["instructions"] and "10 min" in create["response"]["instructions"]
        )
        assert len(ctx.timers) == 0
        await until(lambda: s.playback.active)  # the announcement is spoken
        await s.stop()


async def test_the_ledger_survives_a_restart_and_keeps_the_budget_spent(tmp_path) -> None:
    from datetime import date

    from edged.config import CostConfig
    from edged.realtime.session import Budget, ledger_path

    cfg = CostConfig(daily_budget_usd=1e-6)
    path = ledger_path(cfg, {"STATE_DIRECTORY": str(tmp_path)})
    assert path == tmp_path / "cost-ledger.json"
    assert ledger_path(CostConfig(ledger_file=str(tmp_path / "x.json")), {}) == tmp_path / "x.json"
    assert ledger_path(cfg, {}) is None
    today = lambda: date(2026, 11, 23)  # noqa: E731
    async with LocalRealtimeServer(pace=0) as server:
        s = make_session(server, budget=Budget(cfg, "gpt-realtime-2.1-mini", today, path=path))
        s.start()
        speak_turn(s, [speech_b64(200, 1)])
        await until(lambda: len(s.turns_done) == 1)
        await s.stop()
    assert path.exists() and not path.with_name(path.name + ".tmp").exists()
    again = Budget(cfg, "gpt-realtime-2.1-mini", today, path=path)  # the daemon restarted
    assert again.ledger.today(today()).turns == 1 and again.exhausted()
    path.write_text("{ not json")  # a torn file: start fresh rather than refuse to start
    assert Budget(cfg, "gpt-realtime-2.1-mini", today, path=path).ledger.today(today()).turns == 0


async def test_a_send_queue_overflow_drops_the_connection_and_resends_the_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edged.realtime.session as session_mod

    monkeypatch.setattr(session_mod, "SEND_QUEUE_MAX", 20)
    async with LocalRealtimeServer(pace=0) as server:
        s = make_session(server)
        s.start()
        speak_turn(s, [speech_b64(100, 0)])
        await until(lambda: len(s.turns_done) == 1)
        # 60 chunks without yielding to the loop: the network cannot keep up, the queue overflows
        chunks = [speech_b64(20, k) for k in range(60)]
        s.turn_started(False)
        for ch in chunks:
            s.turn_audio(ch)
            assert s._queue.qsize() <= 20  # bounded, whatever the caller does
        s.turn_committed()
        await until(lambda: len(s.turns_done) == 2)
        assert s.core.reconnects == 1
        assert [c.sha256 for c in server.records[-1].commits] == [sha(chunks)]  # the whole turn
        await s.stop()


async def test_a_session_is_renewed_before_the_60_minute_limit() -> None:
    now_ms = [0.0]
    async with LocalRealtimeServer(pace=0, transcripts=["set a timer"]) as server:
        cfg = {"idle_disconnect_s": 86400, "context_keep_s": 3600}
        s = make_session(server, clock_ms=lambda: now_ms[0], cfg=cfg)
        s.start()
        speak_turn(s, [speech_b64(200, 1)])
        await until(lambda: len(s.turns_done) == 1)
        now_ms[0] = 54 * 60_000.0
        await asyncio.sleep(0.2)
        assert s.core.link is Link.UP
        now_ms[0] = 55 * 60_000.0
        await until(lambda: s.core.link is Link.DOWN)  # renewed early, while idle
        speak_turn(s, [speech_b64(200, 2)])
        await until(lambda: len(s.turns_done) == 2)
        assert len(server.records) == 2 and len(server.records[1].commits) == 1
        items = server.records[1].received("conversation.item.create")
        texts = [c["text"] for i in items for c in i["item"]["content"]]
        assert "set a timer" in texts  # the new session is seeded with the conversation so far
        await s.stop()
