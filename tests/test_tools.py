"""Tools: declarations and outputs are the GA protocol; no call, however bad, escapes as an exception."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conformance import validate_client_event

from edged.tools import (
    BUILTINS,
    MAX_ERROR_CHARS,
    Registry,
    Timer,
    TimerError,
    Timers,
    Tool,
    Toolbox,
    ToolContext,
    ToolError,
    discover,
    encode_output,
)

NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}
CET = timezone(timedelta(hours=1), "CET")


class Clock:
    """The session's two clocks, moved by hand: wall time follows the monotonic one."""

    def __init__(self, start: datetime = datetime(2026, 11, 22, 14, 5, 30, tzinfo=CET)) -> None:
        self.start = start
        self.t_s = 1000.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t_s - 1000.0)

    def monotonic_s(self) -> float:
        return self.t_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ctx(clock: Clock) -> ToolContext:
    return ToolContext(now=clock.now, monotonic_s=clock.monotonic_s, timers=Timers(max_timers=3))


def builtins_box() -> Toolbox:
    return Toolbox(BUILTINS)


async def call(box: Toolbox, name: str, args: Any, ctx: ToolContext | None = None, **kw: Any) -> Any:
    """Call and decode; every output must itself be valid JSON."""
    raw = args if isinstance(args, str) else json.dumps(args)
    return json.loads(await box.call(name, raw, ctx, **kw))


def output_event(output: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": "c1", "output": output},
    }


# -- protocol conformance ------------------------------------------------------------------------


def test_declarations_validate_as_ga_session_update() -> None:
    tools = builtins_box().declarations()
    ev = {"type": "session.update", "session": {"type": "realtime", "tools": tools, "tool_choice": "auto"}}
    m = validate_client_event(ev)
    assert [t.name for t in m.session.tools] == ["current_time", "set_timer", "cancel_timer", "list_timers"]
    assert m.session.tools[1].parameters["required"] == ["seconds"]
    assert all(t["type"] == "function" and t["description"] for t in tools)


def test_the_conformance_check_rejects_a_malformed_declaration() -> None:
    bad = dict(BUILTINS[0].declaration(), type="functions")
    ev = {"type": "session.update", "session": {"type": "realtime", "tools": [bad], "tool_choice": "auto"}}
    with pytest.raises(ValueError):
        validate_client_event(ev)


def test_declaration_is_a_copy() -> None:
    d = BUILTINS[1].declaration()
    d["parameters"]["properties"].clear()
    assert BUILTINS[1].declaration()["parameters"]["properties"]


async def test_outputs_validate_as_function_call_output(ctx: ToolContext) -> None:
    box = Toolbox([*BUILTINS, Tool("big", "Lots.", NO_ARGS, lambda: "x" * 10_000)], max_output_chars=1000)
    outputs = [
        await box.call("set_timer", '{"seconds": 60, "label": "eggs"}', ctx),
        await box.call("nope", "{}", ctx),
        await box.call("big", "{}", ctx),
    ]
    for out in outputs:
        m = validate_client_event(output_event(out))
        assert m.item.output == out
        json.loads(out)
    assert "error" in json.loads(outputs[1])
    assert json.loads(outputs[2])["truncated"] is True


# -- built-in tools ---------------------------------------------------------------------------


async def test_current_time(ctx: ToolContext) -> None:
    got = await call(builtins_box(), "current_time", {}, ctx)
    assert got == {
        "date": "2026-11-22",
        "time": "14:05",
        "weekday": "Sunday",
        "timezone": "CET",
        "utc_offset": "+01:00",
    }


async def test_current_time_negative_offset_and_empty_arguments() -> None:
    nst = timezone(-timedelta(hours=3, minutes=30), "NST")
    c = Clock(datetime(2026, 1, 1, 0, 0, tzinfo=nst))
    got = await call(builtins_box(), "current_time", "", ToolContext(c.now, c.monotonic_s))
    assert (got["utc_offset"], got["weekday"], got["timezone"]) == ("-03:30", "Thursday", "NST")


async def test_current_time_needs_an_aware_clock() -> None:
    c = ToolContext(now=lambda: datetime(2026, 1, 1), monotonic_s=lambda: 0.0)
    got = await call(builtins_box(), "current_time", {}, c)
    assert got == {"error": "current_time: the device clock has no time zone"}
    got = await call(builtins_box(), "set_timer", {"seconds": 5}, c)
    assert got == {"error": "set_timer: the device clock has no time zone"}
    assert len(c.timers) == 0  # nothing half-done


async def test_timer_tools_round_trip(ctx: ToolContext, clock: Clock) -> None:
    box = builtins_box()
    got = await call(box, "set_timer", {"seconds": 600, "label": "pasta"}, ctx)
    assert got == {
        "label": "pasta",
        "seconds": 600,
        "duration": "10 min",
        "ends_at": "14:15:30",
        "replaced_existing": False,
    }
    await call(box, "set_timer", {"seconds": 90}, ctx)
    clock.t_s += 30.5
    listed = await call(box, "list_timers", {}, ctx)
    assert listed == {
        "timers": [{"label": "timer", "remaining_seconds": 60}, {"label": "pasta", "remaining_seconds": 570}]
    }
    again = await call(box, "set_timer", {"seconds": 720, "label": "Pasta "}, ctx)
    assert again["replaced_existing"] is True and again["duration"] == "12 min"
    assert len(ctx.timers) == 2
    assert await call(box, "cancel_timer", {"label": "PASTA"}, ctx) == {
        "cancelled": "Pasta",
        "remaining_seconds": 720,
    }
    assert await call(box, "cancel_timer", {"label": "pasta"}, ctx) == {
        "error": "cancel_timer: no timer named 'pasta'; running: timer"
    }


async def test_set_timer_errors_are_readable(ctx: ToolContext) -> None:
    box = builtins_box()
    too_long = await call(box, "set_timer", {"seconds": 24 * 3600 + 1}, ctx)
    assert too_long == {"error": "set_timer: timers can run for at most 24 h"}
    assert await call(box, "set_timer", {"seconds": 0}, ctx) == {
        "error": "set_timer: argument 'seconds' must be at least 1"
    }
    for _ in range(3):  # ctx allows 3
        assert "error" not in await call(box, "set_timer", {"seconds": 5}, ctx)
    full = await call(box, "set_timer", {"seconds": 5, "label": "tea"}, ctx)
    assert full == {"error": "set_timer: at most 3 timers can run at once; cancel one first"}
    labels = [t["label"] for t in (await call(box, "list_timers", {}, ctx))["timers"]]
    assert labels == ["timer", "timer 2", "timer 3"]


# -- timers (sans-I/O) -------------------------------------------------------------------------


def test_timers_fire_on_the_given_clock() -> None:
    timers = Timers()
    timers.add("eggs", 300, now_s=10.0)
    timers.add("tea", 120, now_s=20.0)
    assert timers.next_due_s() == 140.0
    assert timers.due(139.9) == []
    assert [t.label for t in timers.pending(139.9)] == ["tea", "eggs"]
    assert timers.due(140.0) == [Timer("tea", 120.0, 140.0)]
    assert timers.due(140.0) == []  # popped
    assert [t.label for t in timers.pending(200.0)] == ["eggs"]
    assert timers.pending(200.0)[0].remaining_s(200.0) == 110.0
    assert [t.label for t in timers.due(1e6)] == ["eggs"]
    assert len(timers) == 0 and timers.next_due_s() is None


def test_fired_timers_still_count_until_collected() -> None:
    timers = Timers(max_timers=1)
    timers.add("a", 1, 0.0)
    assert timers.pending(5.0) == []
    with pytest.raises(TimerError, match="at most 1 timers"):
        timers.add("b", 1, 5.0)
    assert [t.label for t in timers.due(5.0)] == ["a"]
    timers.add("b", 1, 5.0)


@pytest.mark.parametrize(
    ("label", "seconds", "message"),
    [
        ("x", 0, "more than 0"),
        ("x", -5, "more than 0"),
        ("x", float("nan"), "must be a number"),
        ("x", float("inf"), "must be a number"),
        ("x", True, "must be a number"),
        ("x", "10", "must be a number"),
        ("x", 86400.5, "at most 24 h"),
        ("   ", 10, "needs a label"),
        ("y" * 61, 10, "longer than 60"),
    ],
)
def test_timer_rejects(label: str, seconds: Any, message: str) -> None:
    with pytest.raises(TimerError, match=message):
        Timers().add(label, seconds, 0.0)


def test_timer_labels_ignore_case_and_spacing() -> None:
    timers = Timers()
    timers.add("  Boiled   Eggs ", 60, 0.0)
    assert "boiled eggs" in timers and "eggs" not in timers
    assert timers.cancel("BOILED EGGS").label == "Boiled Eggs"
    with pytest.raises(TimerError, match="running: none"):
        timers.cancel("boiled eggs")


# -- dispatch: every error path is an error result ------------------------------------------------


async def _echo(seconds: int, ratio: float = 1.0, name: str = "", loud: bool = False) -> dict[str, Any]:
    return {"seconds": seconds, "ratio": ratio, "name": name, "loud": loud}


ECHO = Tool(
    "echo",
    "Echo the arguments.",
    {
        "type": "object",
        "properties": {
            "seconds": {"type": "integer", "minimum": 1, "maximum": 100},
            "ratio": {"type": "number"},
            "name": {"type": "string", "enum": ["a", "b"]},
            "loud": {"type": "boolean"},
        },
        "required": ["seconds"],
    },
    _echo,
)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ("{not json", "arguments are not valid JSON (Expecting property name enclosed in double quotes"),
        ('{"seconds": NaN}', "arguments are not valid JSON (NaN is not a JSON number)"),
        ("[1, 2]", "arguments must be a JSON object, not array"),
        ('"5"', "arguments must be a JSON object, not string"),
        ("{}", "missing required argument(s) seconds"),
        ('{"seconds": "5"}', "argument 'seconds' must be integer, not string"),
        ('{"seconds": true}', "argument 'seconds' must be integer, not boolean"),
        ('{"seconds": 2.5}', "argument 'seconds' must be integer, not number"),
        ('{"seconds": 0}', "argument 'seconds' must be at least 1"),
        ('{"seconds": 101}', "argument 'seconds' must be at most 100"),
        ('{"seconds": 5, "ratio": "x"}', "argument 'ratio' must be number, not string"),
        ('{"seconds": 5, "loud": 1}', "argument 'loud' must be boolean, not integer"),
        ('{"seconds": 5, "name": "c"}', 'argument \'name\' must be one of ["a", "b"]'),
        ('{"seconds": 5, "name": null}', "argument 'name' must be string, not null"),
        (
            '{"seconds": 5, "color": "red"}',
            "unexpected argument(s) color; expected: seconds, ratio, name, loud",
        ),
    ],
)
async def test_bad_arguments(args: str, error: str) -> None:
    got = await call(Toolbox([ECHO]), "echo", args)
    assert set(got) == {"error"}
    assert got["error"].startswith(f"echo: {error}")


async def test_arguments_must_be_a_string() -> None:
    out = await Toolbox([ECHO]).call("echo", None)  # type: ignore[arg-type]
    assert json.loads(out) == {"error": "echo: arguments must be a JSON string"}


async def test_good_arguments_are_converted() -> None:
    got = await call(Toolbox([ECHO]), "echo", '{"seconds": 5.0, "ratio": 2, "name": "b", "loud": true}')
    assert got == {"seconds": 5, "ratio": 2, "name": "b", "loud": True}


async def test_unknown_tool_names_what_is_available() -> None:
    got = await call(Toolbox([ECHO, *BUILTINS[:1]]), "weather", "{}")
    assert got == {"error": "unknown tool 'weather'; available: echo, current_time"}


async def test_tool_exception_is_an_error_result_and_a_logged_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def boom() -> None:
        raise ZeroDivisionError("division by zero")

    with caplog.at_level(logging.WARNING, logger="edged.tools"):
        out = await Toolbox([Tool("boom", "Fails.", NO_ARGS, boom)]).call("boom", "{}")
    assert json.loads(out) == {"error": "boom failed: ZeroDivisionError: division by zero"}
    assert "Traceback" not in out
    (rec,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert rec.exc_info is not None and rec.exc_info[0] is ZeroDivisionError
    assert "Traceback" in caplog.text


async def test_tool_error_is_passed_on_verbatim() -> None:
    async def picky() -> None:
        raise ToolError("the oven is not connected")

    got = await call(Toolbox([Tool("picky", "Picky.", NO_ARGS, picky)]), "picky", "{}")
    assert got == {"error": "picky: the oven is not connected"}


async def test_a_tools_own_timeout_error_is_not_reported_as_ours() -> None:
    def net() -> None:
        raise TimeoutError("socket read")

    got = await call(Toolbox([Tool("net", "Net.", NO_ARGS, net)]), "net", "{}", timeout_s=5)
    assert got == {"error": "net failed: TimeoutError: socket read"}


async def test_long_error_messages_are_cut() -> None:
    def wordy() -> None:
        raise RuntimeError("x" * 5000)

    got = await call(Toolbox([Tool("wordy", "Wordy.", NO_ARGS, wordy)]), "wordy", "{}")
    assert len(got["error"]) == MAX_ERROR_CHARS and got["error"].endswith("…")


@pytest.mark.parametrize("result", [{1, 2}, float("nan"), object()])
async def test_result_that_is_not_json(result: Any) -> None:
    got = await call(Toolbox([Tool("odd", "Odd.", NO_ARGS, lambda: result)]), "odd", "{}")
    assert got["error"].startswith("odd: the tool returned something that is not JSON")


async def test_tool_needing_context_without_one() -> None:
    got = await call(builtins_box(), "list_timers", {}, None)
    assert got == {"error": "list_timers: it needs the session context, and none was given"}


async def test_tool_that_cancels_itself() -> None:
    async def quitter() -> None:
        raise asyncio.CancelledError

    got = await call(Toolbox([Tool("quit", "Quit.", NO_ARGS, quitter)]), "quit", "{}")
    assert got == {"error": "quit was cancelled"}


@pytest.mark.parametrize("text", ["x" * 20_000, '"' * 20_000, "é" * 20_000])
def test_long_output_is_truncated_valid_json(text: str) -> None:
    out = encode_output({"text": text}, max_chars=1000)
    assert len(out) <= 1000
    got = json.loads(out)
    assert got["truncated"] is True
    assert got["total_chars"] == len(json.dumps({"text": text}, ensure_ascii=False))
    assert json.dumps({"text": text}, ensure_ascii=False).startswith(got["partial"])
    assert len(got["partial"]) > 200


def test_short_output_is_plain_json() -> None:
    assert encode_output({"a": "é"}) == '{"a": "é"}'
    assert encode_output("hi") == '"hi"'


# -- sync and async tools, timeouts ---------------------------------------------------------------


async def test_sync_tools_run_in_a_thread_and_async_ones_on_the_loop() -> None:
    loop_thread = threading.get_ident()

    async def where_async() -> int:
        return threading.get_ident()

    class AsyncCallable:
        async def __call__(self) -> int:
            return threading.get_ident()

    box = Toolbox(
        [
            Tool("where_sync", "Thread id.", NO_ARGS, threading.get_ident),
            Tool("where_async", "Thread id.", NO_ARGS, where_async),
            Tool("obj", "Async callable object.", NO_ARGS, AsyncCallable()),
            Tool("wrapper", "Sync, returns a coroutine.", NO_ARGS, lambda: where_async()),
        ]
    )
    assert await call(box, "where_sync", "{}") != loop_thread
    assert await call(box, "where_async", "{}") == loop_thread
    assert await call(box, "obj", "{}") == loop_thread
    assert await call(box, "wrapper", "{}") == loop_thread
    assert box.running_threads == 0


async def test_async_tool_timeout_cancels_it(caplog: pytest.LogCaptureFixture) -> None:
    cancelled: list[bool] = []

    async def slow() -> str:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return "late"

    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="edged.tools"):
        got = await call(Toolbox([Tool("slow", "Slow.", NO_ARGS, slow)]), "slow", "{}", timeout_s=0.05)
    assert time.monotonic() - t0 < 0.5
    assert got == {"error": "slow timed out after 0.05 s"}
    await asyncio.sleep(0)
    assert cancelled == [True]
    assert "slow timed out" in caplog.text


async def test_a_tool_ignoring_cancellation_does_not_hold_up_the_call() -> None:
    release = asyncio.Event()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(1)
        except asyncio.CancelledError:
            await asyncio.wait_for(release.wait(), 2)  # cleanup that outlasts the call
        return "late"

    t0 = time.monotonic()
    got = await call(Toolbox([Tool("stubborn", "S.", NO_ARGS, stubborn)]), "stubborn", "{}", timeout_s=0.05)
    assert got == {"error": "stubborn timed out after 0.05 s"}
    assert time.monotonic() - t0 < 1  # it would take 2 s if the call waited for the cleanup
    release.set()
    await asyncio.sleep(0.01)  # let it finish inside the test's loop


async def test_sync_tool_timeout_leaves_the_loop_free_and_bounds_threads() -> None:
    release = threading.Event()

    def blocked() -> str:
        release.wait(5)
        return "late"

    class Ping:
        async def __call__(self) -> str:
            return "pong"

    box = Toolbox(
        [Tool("blocked", "Blocks.", NO_ARGS, blocked), ECHO, Tool("ping", "P.", NO_ARGS, Ping())],
        max_threads=1,
    )
    t0 = time.monotonic()
    got = await call(box, "blocked", "{}", timeout_s=0.05)
    assert got == {"error": "blocked timed out after 0.05 s"}
    assert time.monotonic() - t0 < 0.5
    assert box.running_threads == 1  # a thread cannot be killed: it is still blocked
    assert await call(box, "blocked", "{}") == {
        "error": "blocked: busy: 1 earlier tool calls are still running"
    }
    # async tools, async callable objects included, need no thread
    assert await call(box, "echo", {"seconds": 3}) == {"seconds": 3, "ratio": 1.0, "name": "", "loud": False}
    assert await call(box, "ping", {}) == "pong"
    release.set()
    for _ in range(200):
        if box.running_threads == 0:
            break
        await asyncio.sleep(0.005)
    assert box.running_threads == 0
    assert await call(box, "blocked", "{}", timeout_s=1) == "late"


async def test_cancelling_the_caller_cancels_the_tool() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    box = Toolbox([Tool("slow", "Slow.", NO_ARGS, slow)])
    task = asyncio.create_task(box.call("slow", "{}", None, timeout_s=5))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert cancelled == [True]


# -- declaring tools --------------------------------------------------------------------------


def _f(a: int) -> int:
    return a


def _g(a: int, /) -> int:
    return a


def _h(a: int, b: int) -> int:
    return a + b


A_INT = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "has space"}, "the name must be 1-64"),
        ({"name": "x" * 65}, "the name must be 1-64"),
        ({"description": " "}, "the description must be a non-empty string"),
        ({"fn": 42}, "fn is not callable"),
        ({"parameters": {"type": "array"}}, "parameters must be a JSON Schema object"),
        ({"parameters": {"type": "object", "properties": {"a": {}, "x": {"default": {1}}}}}, "not JSON"),
        ({"parameters": {"type": "object", "properties": {"ctx": {}}}}, "'ctx' is reserved"),
        ({"parameters": {"type": "object", "properties": {"a": 1}}}, "must map names to schemas"),
        ({"parameters": {**A_INT, "required": ["b"]}}, "parameters.required must list names"),
        ({"parameters": {**A_INT, "properties": {"a": {"type": "int"}}}}, "type must be one of"),
        ({"parameters": {**A_INT, "properties": {"a": {}, "b": {}}}}, "'b' is declared but fn does not"),
        ({"parameters": {**A_INT, "required": []}}, "fn needs 'a' but parameters.required"),
        ({"fn": _g}, "positional-only"),
        ({"fn": _h}, "fn needs 'b'"),
    ],
)
def test_bad_declarations_fail_at_load(kwargs: dict[str, Any], message: str) -> None:
    base: dict[str, Any] = {"name": "t", "description": "A tool.", "parameters": A_INT, "fn": _f}
    with pytest.raises(ToolError, match=message):
        Tool(**{**base, **kwargs})


def test_kwargs_functions_take_any_declared_parameter() -> None:
    def anything(**kw: Any) -> Any:
        return kw

    t = Tool("t", "A tool.", {"type": "object", "properties": {"a-b": {"type": "string"}}}, anything)
    assert not t.wants_context
    assert BUILTINS[0].wants_context


def test_toolbox_rejects_duplicates_and_tiny_outputs() -> None:
    with pytest.raises(ToolError, match="'echo' is given twice"):
        Toolbox([ECHO, ECHO])
    with pytest.raises(ValueError, match="max_output_chars"):
        Toolbox([ECHO], max_output_chars=100)


# -- discovery: real entry points ---------------------------------------------------------------

PLUGIN = "edgedtest_plugin"

PLUGIN_SOURCE = """
from edged.tools import Tool

NO_ARGS = {"type": "object", "properties": {}}

def _weather(city: str) -> dict:
    return {"city": city, "sky": "clear"}

weather = Tool(
    "weather", "Weather for a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    _weather,
)

def make_dice():
    return Tool("dice", "Roll a die.", NO_ARGS, lambda: 4)

def failing_factory():
    raise RuntimeError("no API key")

NOT_A_TOOL = {"name": "not_a_tool"}

fake_clock = Tool("current_time", "Not the real one.", NO_ARGS, lambda: "noon")
"""

ENTRY_POINTS = """
[edged.tools]
weather = edgedtest_plugin:weather
dice = edgedtest_plugin:make_dice
broken_import = edgedtest_missing_module:tool
not_a_tool = edgedtest_plugin:NOT_A_TOOL
misnamed = edgedtest_plugin:weather
bad_factory = edgedtest_plugin:failing_factory
current_time = edgedtest_plugin:fake_clock
"""


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A real installed distribution: a module and its dist-info on sys.path."""
    (tmp_path / f"{PLUGIN}.py").write_text(textwrap.dedent(PLUGIN_SOURCE))
    info = tmp_path / "edged_test_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: edged-test-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop(PLUGIN, None)


def test_discover_without_plugins_has_the_builtins() -> None:
    reg = discover()
    assert {"current_time", "set_timer", "cancel_timer", "list_timers"} <= set(reg.tools)
    assert reg.select(["set_timer", "current_time", "set_timer"]) == (BUILTINS[1], BUILTINS[0])


async def test_discover_real_entry_points(plugin_dist: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="edged.tools"):
        reg = discover()
    assert {"weather", "dice", "set_timer", "cancel_timer", "list_timers"} <= set(reg.tools)
    assert "current_time" not in reg.tools
    origin = "from edged-test-plugins 0.1"
    assert reg.broken["broken_import"].startswith(
        "entry point 'broken_import' (edgedtest_missing_module:tool"
    )
    assert origin in reg.broken["broken_import"]
    assert reg.broken["broken_import"].endswith(
        "cannot be imported: ModuleNotFoundError: No module named 'edgedtest_missing_module'"
    )
    assert reg.broken["not_a_tool"].endswith(
        "gives a dict, not an edged.tools.Tool or a factory returning one"
    )
    assert reg.broken["misnamed"].endswith(
        "loads tool 'weather': the entry point must be named like its tool"
    )
    assert reg.broken["bad_factory"].endswith("factory failed: RuntimeError: no API key")
    assert reg.broken["current_time"].startswith(
        "more than one provider: built-in; entry point 'current_time'"
    )
    assert "Traceback" not in caplog.text
    for name in ("broken_import", "not_a_tool", "misnamed", "bad_factory", "current_time"):
        assert name in caplog.text

    box = Toolbox(reg.select(["weather", "dice"]))
    assert await call(box, "weather", {"city": "Oslo"}) == {"city": "Oslo", "sky": "clear"}
    assert await call(box, "dice", {}) == 4
    assert await call(box, "weather", {}) == {"error": "weather: missing required argument(s) city"}


def test_enabling_a_broken_or_unknown_tool_is_a_clear_error(plugin_dist: Path) -> None:
    reg = discover()
    with pytest.raises(ToolError) as e:
        reg.select(["weather", "broken_import", "wether"])
    msg = str(e.value)
    assert "tool 'broken_import' cannot be used: entry point 'broken_import'" in msg
    assert "No module named 'edgedtest_missing_module'" in msg
    assert "unknown tool(s) 'wether'; available: cancel_timer, dice, list_timers, set_timer, weather" in msg
    with pytest.raises(ToolError, match="tool 'current_time' cannot be used: more than one provider"):
        reg.select(["current_time"])


def test_registry_select_on_an_empty_registry() -> None:
    with pytest.raises(ToolError, match="unknown tool\\(s\\) 'x'; available: none"):
        Registry({}, {}).select(["x"])
    assert Registry({}, {}).select([]) == ()
