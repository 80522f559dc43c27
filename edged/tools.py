"""Function calling: the tools the model may call during a Realtime session.

The model asks for a call with `response.function_call_arguments.done {call_id, name,
arguments}`; the session hands name and arguments to `Toolbox.call`, sends the string it
returns as a `function_call_output` item, then `response.create` (protocol §4).

A tool's input is written by a language model and its code by whoever installed a plugin;
neither may end a conversation. So `Toolbox.call` never raises: an unknown tool, arguments
that are not what the schema declares, an exception, a hang all become a short
`{"error": "..."}` the model can read and explain to the user, and the traceback goes to the
log, not to the model.

Tools come from two places: the built-ins below (the current time, kitchen timers) and
third-party packages that declare an entry point in the group `edged.tools`. Discovery
never fails: a plugin that cannot be loaded is recorded with the reason, and only becomes an
error when the config enables it (`Registry.select`).

Nothing here reads the wall clock: the session passes a `ToolContext` with its clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import copy
import importlib.metadata
import inspect
import json
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "edged.tools"
DEFAULT_TIMEOUT_S = 10.0
MAX_OUTPUT_CHARS = 4000  # a tool result is read by the model every turn after: keep it short
MAX_ERROR_CHARS = 300
MAX_TOOL_THREADS = 4  # sync tool calls that may run (or hang) at once
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the API accepts as a function name
_JSON_TYPES = {"integer", "number", "string", "boolean", "array", "object", "null"}
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class ToolError(ValueError):
    """A problem meant to be read: by the model (as an error result) or by the user (a tool
    enabled in config that cannot be used). Tools raise it for errors the model should see
    verbatim; it is logged without a traceback."""


class TimerError(ToolError):
    """A timer request that cannot be honoured (too many, too long, no such timer)."""


class _TimedOut(Exception):
    """Our timeout, distinct from a TimeoutError the tool itself raises."""


# -- tools --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: `fn` and a dict are not values
class Tool:
    """A function the model may call.

    `fn` takes the schema's properties as keyword arguments, plus `ctx` (a `ToolContext`)
    if it has a parameter of that name, and returns something JSON-serialisable. It may be
    sync (run in a thread, so it cannot stall the event loop) or async (run on the loop: it
    must not block). Problems in the declaration raise `ToolError` here, at load time, not
    at the first call.
    """

    name: str
    description: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Any] = field(repr=False)
    wants_context: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        problem = _tool_problem(self)
        if problem:
            raise ToolError(f"tool {self.name!r}: {problem}")
        object.__setattr__(self, "wants_context", "ctx" in (_parameter_names(self.fn) or {}))

    def declaration(self) -> dict[str, Any]:
        """The entry for `session.tools` (GA `RealtimeFunctionTool`)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(dict(self.parameters)),
        }


def _parameter_names(fn: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
    """fn's parameters, or None when Python cannot tell (some builtins)."""
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return None


def _tool_problem(tool: Tool) -> str | None:
    if not isinstance(tool.name, str) or not _NAME.match(tool.name):
        return "the name must be 1-64 letters, digits, '_' or '-'"
    if not isinstance(tool.description, str) or not tool.description.strip():
        return "the description must be a non-empty string: it is how the model knows when to call it"
    if not callable(tool.fn):
        return "fn is not callable"
    return _schema_problem(tool.parameters) or _signature_problem(tool)


def _schema_problem(schema: Any) -> str | None:
    if not isinstance(schema, Mapping) or schema.get("type") != "object":
        return 'parameters must be a JSON Schema object ({"type": "object", ...})'
    try:
        json.dumps(schema, allow_nan=False)
    except (TypeError, ValueError) as e:
        return f"parameters are not JSON ({e})"
    props = schema.get("properties", {})
    if not isinstance(props, Mapping) or not all(isinstance(p, Mapping) for p in props.values()):
        return "parameters.properties must map names to schemas"
    if "ctx" in props:
        return "'ctx' is reserved for the session context and cannot be a parameter"
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(r in props for r in required):
        return "parameters.required must list names from parameters.properties"
    for name, spec in props.items():
        types = spec.get("type")
        types = [types] if isinstance(types, str) else types
        if types is not None and (not isinstance(types, list) or not set(types) <= _JSON_TYPES):
            return f"parameter {name!r}: type must be one of {sorted(_JSON_TYPES)}"
    return None


def _signature_problem(tool: Tool) -> str | None:
    """Mismatches between schema and function that would otherwise fail at every call."""
    params = _parameter_names(tool.fn)
    if params is None:
        return None
    props = tool.parameters.get("properties", {})
    required = set(tool.parameters.get("required", []))
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name in props:
        p = params.get(name)
        if p is None and not takes_any:
            return f"parameter {name!r} is declared but fn does not accept it"
        if p is not None and p.kind is inspect.Parameter.POSITIONAL_ONLY:
            return f"parameter {name!r} of fn is positional-only; tools are called with keywords"
    for name, p in params.items():
        no_default = p.default is inspect.Parameter.empty
        keyword = p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        if name != "ctx" and keyword and no_default and name not in required:
            return f"fn needs {name!r} but parameters.required does not list it"
    return None


# -- arguments: a small JSON Schema subset --------------------------------------------------------


def parse_arguments(arguments_json: Any, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments for a call, checked against the tool's schema.

    Checks object/properties/required, `type` (integer, number, string, boolean, array,
    object, null, or a list of them), `enum`, `minimum` and `maximum`; other keywords are
    the model's guidance only. Arguments the schema does not declare are rejected: the
    function could not take them anyway, and the model can correct itself from the message.
    Raises ToolError with a message meant for the model.
    """
    args = _decode(arguments_json)
    if not isinstance(args, dict):
        raise ToolError(f"arguments must be a JSON object, not {_json_type(args)}")
    props: Mapping[str, Any] = schema.get("properties", {})
    unknown = sorted(set(args) - set(props))
    if unknown:
        expected = ", ".join(props) or "none"
        raise ToolError(f"unexpected argument(s) {', '.join(unknown)}; expected: {expected}")
    missing = [r for r in schema.get("required", []) if r not in args]
    if missing:
        raise ToolError(f"missing required argument(s) {', '.join(missing)}")
    return {k: _check_value(k, props[k], v) for k, v in args.items()}


def _decode(arguments_json: Any) -> Any:
    if not isinstance(arguments_json, str):
        raise ToolError("arguments must be a JSON string")
    if not arguments_json.strip():
        return {}  # a call without arguments is sometimes sent as ""
    try:
        return json.loads(arguments_json, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise ToolError(f"arguments are not valid JSON ({e.msg} at position {e.pos})") from None


def _reject_constant(name: str) -> Any:
    raise ToolError(f"arguments are not valid JSON ({name} is not a JSON number)")


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "array" if isinstance(v, list) else "object"


def _matches(v: Any, t: str) -> bool:
    kind = _json_type(v)
    if t == "number":
        return kind in ("integer", "number")
    if t == "integer":
        return kind == "integer" or (kind == "number" and float(v).is_integer())
    return kind == t


def _check_value(name: str, spec: Mapping[str, Any], v: Any) -> Any:
    types = spec.get("type")
    types = [types] if isinstance(types, str) else types
    if types is not None and not any(_matches(v, t) for t in types):
        raise ToolError(f"argument {name!r} must be {' or '.join(types)}, not {_json_type(v)}")
    if types is not None and "integer" in types and isinstance(v, float) and "number" not in types:
        v = int(v)  # JSON Schema counts 5.0 as an integer; the function gets an int
    enum = spec.get("enum")
    if enum is not None and not any(v == e and isinstance(v, bool) == isinstance(e, bool) for e in enum):
        raise ToolError(f"argument {name!r} must be one of {json.dumps(enum)}")
    if _json_type(v) in ("integer", "number"):
        if "minimum" in spec and v < spec["minimum"]:
            raise ToolError(f"argument {name!r} must be at least {spec['minimum']}")
        if "maximum" in spec and v > spec["maximum"]:
            raise ToolError(f"argument {name!r} must be at most {spec['maximum']}")
    return v


# -- results ------------------------------------------------------------------------------------


def error_output(message: str) -> str:
    """`{"error": message}`, message cut to MAX_ERROR_CHARS."""
    if len(message) > MAX_ERROR_CHARS:
        message = message[: MAX_ERROR_CHARS - 1] + "…"
    return json.dumps({"error": message}, ensure_ascii=False)


def encode_output(result: Any, max_chars: int = MAX_OUTPUT_CHARS) -> str:
    """A tool's result as the JSON string for `function_call_output.output`.

    A result longer than `max_chars` becomes `{"truncated": true, "total_chars": n,
    "partial": "<the first part of the JSON text>"}`: still valid JSON, and the model sees
    that something was cut. Raises ToolError if the result is not JSON.
    """
    try:
        text = json.dumps(result, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as e:
        raise ToolError(f"the tool returned something that is not JSON ({type(e).__name__})") from None
    if len(text) <= max_chars:
        return text

    def wrapped(keep: int) -> str:
        return json.dumps(
            {"truncated": True, "total_chars": len(text), "partial": text[:keep]}, ensure_ascii=False
        )

    if len(wrapped(0)) > max_chars:
        raise ValueError(f"max_chars = {max_chars} leaves no room for a truncated result")
    lo, hi = 0, max_chars  # longest prefix that fits once escaped: escaping makes it 1-6x longer
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if len(wrapped(mid)) <= max_chars else (lo, mid - 1)
    return wrapped(lo)


# -- the toolbox: what one session may call -------------------------------------------------------


class Toolbox:
    """The tools enabled for a session: what is declared to the model, and how calls run.

    Sync tools run in daemon threads, at most `max_threads` at once. Not `asyncio.to_thread`:
    that uses the loop's default executor, which `getaddrinfo` (reconnects) shares, and
    which `asyncio.run` joins at shutdown, so one hung tool would block reconnects and stop
    the daemon from exiting. A thread cannot be killed: a sync tool that times out keeps
    running until it returns, and its result is dropped; while `max_threads` such threads
    are still running, further sync calls are refused with an error result.
    """

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        max_output_chars: int = MAX_OUTPUT_CHARS,
        max_threads: int = MAX_TOOL_THREADS,
    ) -> None:
        if max_output_chars < 2 * MAX_ERROR_CHARS:
            raise ValueError(f"max_output_chars must be at least {2 * MAX_ERROR_CHARS}")
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self._tools: dict[str, Tool] = {}
        for t in tools:
            if t.name in self._tools:
                raise ToolError(f"tool {t.name!r} is given twice")
            self._tools[t.name] = t
        self.max_output_chars = max_output_chars
        self.max_threads = max_threads
        self._threads = 0
        self._lock = threading.Lock()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._tools)

    @property
    def running_threads(self) -> int:
        """Sync tool calls whose threads have not returned yet (timed-out ones included)."""
        with self._lock:
            return self._threads

    def declarations(self) -> list[dict[str, Any]]:
        """The value of `session.tools` (use `"tool_choice": "auto"` beside it)."""
        return [t.declaration() for t in self._tools.values()]

    async def call(
        self,
        tool_name: str,
        arguments_json: str,
        ctx: ToolContext | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> str:
        """Run one call; return the string for `function_call_output.output`.

        Never raises (except `CancelledError` when the caller itself is cancelled, which
        also cancels an async tool): every failure is an `{"error": ...}` result.
        """
        tool = self._tools.get(tool_name)
        if tool is None:
            available = ", ".join(self._tools) or "none"
            log.info("model called unknown tool %r", tool_name)
            return error_output(f"unknown tool {tool_name!r}; available: {available}")
        try:
            kwargs = parse_arguments(arguments_json, tool.parameters)
            if tool.wants_context:
                if ctx is None:
                    raise ToolError("it needs the session context, and none was given")
                kwargs["ctx"] = ctx
            result = await self._run_bounded(tool, kwargs, timeout_s)
            return encode_output(result, self.max_output_chars)
        except ToolError as e:
            log.info("tool %s: %s", tool_name, e)
            return error_output(f"{tool_name}: {e}")
        except _TimedOut:
            log.warning("tool %s timed out after %g s", tool_name, timeout_s)
            return error_output(f"{tool_name} timed out after {timeout_s:g} s")
        except asyncio.CancelledError:
            if _current_task_cancelling():
                raise
            log.warning("tool %s cancelled itself", tool_name)
            return error_output(f"{tool_name} was cancelled")
        except Exception as e:
            log.warning("tool %s raised", tool_name, exc_info=True)
            return error_output(f"{tool_name} failed: {type(e).__name__}: {e}")

    async def _run_bounded(self, tool: Tool, kwargs: dict[str, Any], timeout_s: float) -> Any:
        task = asyncio.ensure_future(self._run(tool, kwargs))
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout_s))
        except asyncio.CancelledError:
            task.cancel()
            task.add_done_callback(_drop_result)
            raise
        if not done:
            # do not wait for the cancellation: a tool that ignores it must not hang the session
            task.cancel()
            task.add_done_callback(_drop_result)
            raise _TimedOut
        return task.result()

    async def _run(self, tool: Tool, kwargs: dict[str, Any]) -> Any:
        if _is_async(tool.fn):
            return await tool.fn(**kwargs)
        result = await self._in_thread(tool, kwargs)
        if inspect.isawaitable(result):  # e.g. a sync wrapper that returns a coroutine
            return await result
        return result

    def _in_thread(self, tool: Tool, kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        fn = tool.fn
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        context = contextvars.copy_context()

        def target() -> None:
            result, error = None, None
            try:
                result = context.run(fn, **kwargs)
            except Exception as e:
                error = e
            finally:
                with self._lock:  # before the result is seen: the count is exact when the call returns
                    self._threads -= 1
            _settle(loop, future, result, error)

        with self._lock:
            if self._threads >= self.max_threads:
                raise ToolError(f"busy: {self._threads} earlier tool calls are still running")
            self._threads += 1
        try:
            threading.Thread(target=target, name=f"edged-tool-{tool.name}", daemon=True).start()
        except BaseException:
            with self._lock:
                self._threads -= 1
            raise
        return future


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], result: Any, error: Exception | None
) -> None:
    def apply() -> None:
        if future.done():  # timed out and cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this result
        loop.call_soon_threadsafe(apply)


def _is_async(fn: Callable[..., Any]) -> bool:
    """A coroutine function, or an object whose __call__ is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


def _drop_result(task: asyncio.Future[Any]) -> None:
    """Retrieve a timed-out task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("timed-out tool finished with %r", task.exception())


def _current_task_cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


# -- built-in tools -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timer:
    label: str
    seconds: float
    due_s: float  # on the caller's monotonic clock

    def remaining_s(self, now_s: float) -> float:
        return max(0.0, self.due_s - now_s)

    def announcement(self) -> str:
        """Instructions for the reply that tells the user, unprompted, that this timer is done."""
        return (
            f"The {_duration(self.seconds)} timer named {self.label!r} the user set has just finished. "
            "Tell the user so in one short sentence, in the language of the conversation."
        )


class Timers:
    """Kitchen timers on a monotonic clock given by the caller (sans-I/O).

    The session polls `due(now_s)` and announces what fired; the tools add, cancel and list.
    Bounded in number and duration, so a confused model cannot fill memory or set a timer
    for next year. Labels are matched ignoring case and extra spaces; setting a timer with a
    label in use replaces it ("make the pasta timer 12 minutes").
    """

    def __init__(self, max_timers: int = 20, max_seconds: float = 24 * 3600.0, max_label_chars: int = 60):
        self.max_timers = max_timers
        self.max_seconds = max_seconds
        self.max_label_chars = max_label_chars
        self._timers: dict[str, Timer] = {}

    @staticmethod
    def _key(label: str) -> str:
        return " ".join(label.split()).casefold()

    def __len__(self) -> int:
        return len(self._timers)

    def __contains__(self, label: object) -> bool:
        return isinstance(label, str) and self._key(label) in self._timers

    def add(self, label: str, seconds: float, now_s: float) -> Timer:
        label = " ".join(label.split())
        if not label:
            raise TimerError("a timer needs a label")
        if len(label) > self.max_label_chars:
            raise TimerError(f"the label is longer than {self.max_label_chars} characters")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise TimerError("seconds must be a number")
        if seconds <= 0:
            raise TimerError("seconds must be more than 0")
        if seconds > self.max_seconds:
            raise TimerError(f"timers can run for at most {_duration(self.max_seconds)}")
        key = self._key(label)
        if key not in self._timers and len(self._timers) >= self.max_timers:
            raise TimerError(f"at most {self.max_timers} timers can run at once; cancel one first")
        timer = Timer(label, float(seconds), now_s + seconds)
        self._timers[key] = timer
        return timer

    def cancel(self, label: str) -> Timer:
        timer = self._timers.pop(self._key(label), None)
        if timer is None:
            names = ", ".join(t.label for t in self._sorted()) or "none"
            raise TimerError(f"no timer named {label!r}; running: {names}")
        return timer

    def pending(self, now_s: float) -> list[Timer]:
        """Timers that have not fired yet, soonest first."""
        return [t for t in self._sorted() if t.due_s > now_s]

    def due(self, now_s: float) -> list[Timer]:
        """Timers that have fired by `now_s`, soonest first; they are removed."""
        fired = [t for t in self._sorted() if t.due_s <= now_s]
        for t in fired:
            del self._timers[self._key(t.label)]
        return fired

    def next_due_s(self) -> float | None:
        """When the next timer fires, so the session knows when to look again."""
        return min((t.due_s for t in self._timers.values()), default=None)

    def free_label(self) -> str:
        """'timer', 'timer 2', ...: a label for a timer the user did not name."""
        n = 1
        while (label := "timer" if n == 1 else f"timer {n}") in self:
            n += 1
        return label

    def _sorted(self) -> list[Timer]:
        return sorted(self._timers.values(), key=lambda t: t.due_s)


@dataclass(frozen=True)
class ToolContext:
    """What the session lends to tools: its clocks and its timers.

    `now` returns the local time, timezone-aware; `monotonic_s` the clock `Timers` runs on
    (the session's sample clock or `time.monotonic`).
    """

    now: Callable[[], datetime]
    monotonic_s: Callable[[], float]
    timers: Timers = field(default_factory=Timers)


def _duration(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{h} h" if h else "", f"{m} min" if m else "", f"{s} s" if s else ""]
    return " ".join(p for p in parts if p) or "0 s"


def _utc_offset(now: datetime) -> str:
    offset = now.utcoffset()
    assert offset is not None
    minutes = round(offset.total_seconds() / 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _local_now(ctx: ToolContext) -> datetime:
    now = ctx.now()
    if now.tzinfo is None or now.utcoffset() is None:
        raise ToolError("the device clock has no time zone")
    return now


# The built-ins are coroutines although they never wait: they then run on the event loop,
# where the session also reads the same Timers, so no lock is needed.


async def current_time(ctx: ToolContext) -> dict[str, Any]:
    now = _local_now(ctx)
    return {
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M"),
        "weekday": _WEEKDAYS[now.weekday()],
        "timezone": now.tzname(),
        "utc_offset": _utc_offset(now),
    }


async def set_timer(ctx: ToolContext, seconds: int, label: str | None = None) -> dict[str, Any]:
    timers = ctx.timers
    label = label if label and label.strip() else timers.free_label()
    replaced = label in timers
    ends = _local_now(ctx) + timedelta(seconds=seconds)
    timer = timers.add(label, seconds, ctx.monotonic_s())
    return {
        "label": timer.label,
        "seconds": seconds,
        "duration": _duration(seconds),
        "ends_at": ends.strftime("%H:%M:%S"),
        "replaced_existing": replaced,
    }


async def cancel_timer(ctx: ToolContext, label: str) -> dict[str, Any]:
    timer = ctx.timers.cancel(label)
    return {"cancelled": timer.label, "remaining_seconds": math.ceil(timer.remaining_s(ctx.monotonic_s()))}


async def list_timers(ctx: ToolContext) -> dict[str, Any]:
    now_s = ctx.monotonic_s()
    return {
        "timers": [
            {"label": t.label, "remaining_seconds": math.ceil(t.remaining_s(now_s))}
            for t in ctx.timers.pending(now_s)
        ]
    }


_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}

BUILTINS: tuple[Tool, ...] = (
    Tool(
        "current_time",
        "Get the current local date, time, weekday and time zone.",
        _NO_ARGS,
        current_time,
    ),
    Tool(
        "set_timer",
        "Start a countdown timer that rings when it ends. Setting a timer with a label "
        "already in use replaces that timer.",
        {
            "type": "object",
            "properties": {
                "seconds": {"type": "integer", "minimum": 1, "description": "Duration in seconds."},
                "label": {"type": "string", "description": "What the timer is for, e.g. 'pasta'."},
            },
            "required": ["seconds"],
        },
        set_timer,
    ),
    Tool(
        "cancel_timer",
        "Cancel a running timer by its label.",
        {
            "type": "object",
            "properties": {"label": {"type": "string", "description": "The timer's label."}},
            "required": ["label"],
        },
        cancel_timer,
    ),
    Tool("list_timers", "List running timers and the seconds left on each.", _NO_ARGS, list_timers),
)


# -- discovery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """Every tool that could be enabled, and every one that could not be loaded (and why)."""

    tools: Mapping[str, Tool]
    broken: Mapping[str, str]  # tool (entry point) name -> why it cannot be used

    @property
    def available(self) -> tuple[str, ...]:
        return tuple(sorted(self.tools))

    def select(self, names: Iterable[str]) -> tuple[Tool, ...]:
        """The tools the config enables, in its order; raises ToolError naming every name
        that is unknown or broken, and what is available."""
        chosen: dict[str, Tool] = {}
        problems: list[str] = []
        unknown: list[str] = []
        for name in names:
            if name in self.tools:
                chosen.setdefault(name, self.tools[name])
            elif name in self.broken:
                problems.append(f"tool {name!r} cannot be used: {self.broken[name]}")
            else:
                unknown.append(name)
        if unknown:
            problems.append(
                f"unknown tool(s) {', '.join(map(repr, unknown))}; available: "
                + (", ".join(self.available) or "none")
            )
        if problems:
            raise ToolError("; ".join(problems))
        return tuple(chosen.values())


def discover(builtins: Iterable[Tool] = BUILTINS, group: str = ENTRY_POINT_GROUP) -> Registry:
    """Built-ins plus every entry point in `group`.

    Each entry point names a `Tool` or a zero-argument factory returning one, and must be
    named like the tool it loads (so the config's names are the entry points' names). A
    plugin that cannot be imported, is not a Tool, is misnamed, or claims a name another
    provider has, is logged and recorded in `broken`; it is an error only if enabled.
    """
    providers: dict[str, list[tuple[str, Tool]]] = {}
    broken: dict[str, str] = {}
    for tool in builtins:
        providers.setdefault(tool.name, []).append(("built-in", tool))
    for ep in importlib.metadata.entry_points(group=group):
        origin = _origin(ep)
        tool, problem = _load(ep)
        if tool is None:
            broken[ep.name] = f"{origin} {problem}"
            log.warning("tools: %s %s", origin, problem)
        else:
            providers.setdefault(tool.name, []).append((origin, tool))
    tools: dict[str, Tool] = {}
    for name, found in providers.items():
        if len(found) == 1 and name not in broken:
            tools[name] = found[0][1]
            continue
        origins = [o for o, _ in found] + ([broken[name]] if name in broken else [])
        broken[name] = f"more than one provider: {'; '.join(origins)}"
        log.warning("tools: %r has %s", name, broken[name])
    return Registry(tools, broken)


def _origin(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {ep.name!r} ({ep.value}{where})"


def _load(ep: importlib.metadata.EntryPoint) -> tuple[Tool | None, str]:
    try:
        obj = ep.load()
    except Exception as e:
        log.debug("tools: loading entry point %r", ep.name, exc_info=True)
        return None, f"cannot be imported: {type(e).__name__}: {e}"
    if not isinstance(obj, Tool) and callable(obj):
        try:
            obj = obj()
        except Exception as e:
            log.debug("tools: calling factory %r", ep.name, exc_info=True)
            return None, f"factory failed: {type(e).__name__}: {e}"
    if not isinstance(obj, Tool):
        return None, f"gives a {type(obj).__name__}, not an edged.tools.Tool or a factory returning one"
    if obj.name != ep.name:
        return None, f"loads tool {obj.name!r}: the entry point must be named like its tool"
    return obj, ""


__all__ = [
    "BUILTINS",
    "DEFAULT_TIMEOUT_S",
    "ENTRY_POINT_GROUP",
    "MAX_OUTPUT_CHARS",
    "Registry",
    "Timer",
    "TimerError",
    "Timers",
    "Tool",
    "ToolContext",
    "ToolError",
    "Toolbox",
    "discover",
    "encode_output",
    "error_output",
    "parse_arguments",
]
