"""What the local server rejects, and with which error, as the GA service does.

A stand-in that accepts anything hides client bugs until the first real
session, so the local server is at least as strict as the service on the
shapes edged sends: the 2024 beta names, a session without `type`, PCM at a
rate other than 24 kHz, unknown keys. Codes and messages follow the
service's where they are known (realtime-protocol.md beside DESIGN.md); where
they are not, the message says what went wrong in the service's style.

Pure functions on plain dicts; nothing here touches a socket.
"""

from __future__ import annotations

from typing import Any

RATE_HZ = 24000

EVENT_KEYS: dict[str, frozenset[str]] = {
    "session.update": frozenset({"session"}),
    "input_audio_buffer.append": frozenset({"audio"}),
    "input_audio_buffer.commit": frozenset(),
    "input_audio_buffer.clear": frozenset(),
    "response.create": frozenset({"response"}),
    "response.cancel": frozenset({"response_id"}),
    "conversation.item.create": frozenset({"item", "previous_item_id"}),
    "conversation.item.truncate": frozenset({"item_id", "content_index", "audio_end_ms"}),
    "conversation.item.delete": frozenset({"item_id"}),
    "conversation.item.retrieve": frozenset({"item_id"}),
    "output_audio_buffer.clear": frozenset(),
}
SESSION_KEYS = frozenset(
    {
        "type",
        "audio",
        "include",
        "instructions",
        "max_output_tokens",
        "model",
        "output_modalities",
        "parallel_tool_calls",
        "prompt",
        "reasoning",
        "tool_choice",
        "tools",
        "tracing",
        "truncation",
    }
)
AUDIO_KEYS = {
    "input": frozenset({"format", "noise_reduction", "transcription", "turn_detection"}),
    "output": frozenset({"format", "speed", "voice"}),
}
TRANSCRIPTION_KEYS = frozenset({"delay", "keywords", "language", "languages", "model", "prompt"})
NOISE_REDUCTION_KEYS = frozenset({"type", "strength"})
TOOL_KEYS = frozenset({"type", "name", "description", "parameters"})
RESPONSE_KEYS = frozenset(
    {
        "audio",
        "conversation",
        "input",
        "instructions",
        "max_output_tokens",
        "metadata",
        "output_modalities",
        "parallel_tool_calls",
        "prompt",
        "reasoning",
        "tool_choice",
        "tools",
    }
)
ITEM_KEYS = {
    "message": frozenset({"id", "type", "role", "content", "object", "status"}),
    "function_call": frozenset({"id", "type", "name", "arguments", "call_id", "object", "status"}),
    "function_call_output": frozenset({"id", "type", "call_id", "output", "object", "status"}),
}
CONTENT_KEYS = {
    "user": frozenset({"type", "text", "audio", "transcript", "image_url", "detail"}),
    "assistant": frozenset({"type", "text", "audio", "transcript"}),
    "system": frozenset({"type", "text"}),
}
CONTENT_TYPES = {
    "user": ("input_text", "input_audio"),
    "assistant": ("output_text",),
    "system": ("input_text",),
}


class ClientError(Exception):
    """A client event the service would refuse; becomes an `error` event, the session stays open."""

    def __init__(
        self,
        code: str | None,
        message: str,
        param: str | None = None,
        error_type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.error_type = error_type


def json_kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a decimal"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    return "an object"


def missing(param: str) -> ClientError:
    return ClientError("missing_required_parameter", f"Missing required parameter: '{param}'.", param)


def unknown(param: str) -> ClientError:
    return ClientError("unknown_parameter", f"Unknown parameter: '{param}'.", param)


def invalid_type(param: str, expected: str, value: Any) -> ClientError:
    return ClientError(
        "invalid_type",
        f"Invalid type for '{param}': expected {expected}, but got {json_kind(value)} instead.",
        param,
    )


def invalid_value(param: str, value: Any, supported: str | None = None) -> ClientError:
    more = f" Supported values are: {supported}." if supported else ""
    return ClientError("invalid_value", f"Invalid value: {value!r}.{more}", param)


def expect(obj: dict, key: str, kind: type | tuple[type, ...], expected: str, prefix: str = "") -> Any:
    """The value of a required key, or the service's missing/invalid-type error."""
    param = f"{prefix}{key}"
    if key not in obj:
        raise missing(param)
    v = obj[key]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise invalid_type(param, expected, v)
    return v


def reject_unknown(obj: dict, allowed: frozenset[str], prefix: str) -> None:
    for k in obj:
        if k not in allowed:
            raise unknown(f"{prefix}{k}")


def check_event_keys(ev: dict) -> None:
    reject_unknown(ev, EVENT_KEYS[ev["type"]] | {"type", "event_id"}, "")


def _object(v: Any, param: str) -> dict:
    if not isinstance(v, dict):
        raise invalid_type(param, "an object", v)
    return v


def check_format(f: Any, param: str) -> None:
    """GA formats are objects; the local server speaks PCM16 at 24 kHz only."""
    _object(f, param)
    reject_unknown(f, frozenset({"type", "rate"}), f"{param}.")
    kind = expect(f, "type", str, "a string", f"{param}.")
    if kind in ("audio/pcmu", "audio/pcma"):
        raise ClientError(
            "invalid_value",
            f"{kind} is valid for the service but the local server speaks only audio/pcm.",
            param,
        )
    if kind != "audio/pcm":
        raise invalid_value(f"{param}.type", kind, "'audio/pcm', 'audio/pcmu', 'audio/pcma'")
    rate = expect(f, "rate", int, "an integer", f"{param}.")
    if rate != RATE_HZ:
        raise invalid_value(f"{param}.rate", rate, str(RATE_HZ))


def check_modalities(v: Any, param: str) -> None:
    if not isinstance(v, list):
        raise invalid_type(param, "an array", v)
    if v not in (["audio"], ["text"]):
        raise invalid_value(param, v, "['audio'], ['text']")


def check_tools(tools: Any, param: str) -> None:
    if not isinstance(tools, list):
        raise invalid_type(param, "an array", tools)
    for i, t in enumerate(tools):
        p = f"{param}[{i}]"
        _object(t, p)
        reject_unknown(t, TOOL_KEYS, f"{p}.")
        if t.get("type") != "function":
            raise ClientError("invalid_value", "The local server supports function tools only.", f"{p}.type")
        expect(t, "name", str, "a string", f"{p}.")


def _check_audio_side(side: str, part: Any) -> None:
    prefix = f"session.audio.{side}"
    _object(part, prefix)
    reject_unknown(part, AUDIO_KEYS[side], f"{prefix}.")
    if part.get("format") is not None:
        check_format(part["format"], f"{prefix}.format")
    if side == "output":
        return
    if part.get("turn_detection") is not None:
        raise ClientError(
            "invalid_value",
            "The local server supports manual turns only: set session.audio.input.turn_detection to null.",
            f"{prefix}.turn_detection",
        )
    if part.get("transcription") is not None:
        reject_unknown(
            _object(part["transcription"], f"{prefix}.transcription"),
            TRANSCRIPTION_KEYS,
            f"{prefix}.transcription.",
        )
    if part.get("noise_reduction") is not None:
        nr = _object(part["noise_reduction"], f"{prefix}.noise_reduction")
        reject_unknown(nr, NOISE_REDUCTION_KEYS, f"{prefix}.noise_reduction.")


def check_session(session: Any) -> dict:
    """The `session` of a session.update, or the error the GA service gives for it."""
    s = _object(session, "session")
    reject_unknown(s, SESSION_KEYS, "session.")  # beta names (modalities, input_audio_format, …) land here
    kind = expect(s, "type", str, "a string", "session.")
    if kind != "realtime":
        raise ClientError(
            "invalid_value", "The local server supports realtime sessions only.", "session.type"
        )
    if s.get("audio") is not None:
        audio = _object(s["audio"], "session.audio")
        reject_unknown(audio, frozenset(AUDIO_KEYS), "session.audio.")
        for side in AUDIO_KEYS:
            if audio.get(side) is not None:
                _check_audio_side(side, audio[side])
    if "output_modalities" in s:
        check_modalities(s["output_modalities"], "session.output_modalities")
    if "tools" in s:
        check_tools(s["tools"], "session.tools")
    if "instructions" in s and not isinstance(s["instructions"], str):
        raise invalid_type("session.instructions", "a string", s["instructions"])
    return s


def check_response_params(params: Any) -> dict:
    """`response` of response.create (per-response overrides)."""
    if params is None:
        return {}
    p = _object(params, "response")
    reject_unknown(p, RESPONSE_KEYS, "response.")
    if "output_modalities" in p:
        check_modalities(p["output_modalities"], "response.output_modalities")
    if "tools" in p:
        check_tools(p["tools"], "response.tools")
    conv = p.get("conversation", "auto")
    if conv not in ("auto", "none"):
        raise ClientError(
            "invalid_value",
            "The local server supports conversation 'auto' or 'none'.",
            "response.conversation",
        )
    mot = p.get("max_output_tokens", "inf")
    if mot != "inf" and (not isinstance(mot, int) or isinstance(mot, bool) or mot < 1):
        raise invalid_value("response.max_output_tokens", mot, "an integer from 1 to 4096, or 'inf'")
    return p


def check_item(item: Any) -> dict:
    """An item of conversation.item.create: messages (re-seeding), function calls and their outputs."""
    it = _object(item, "item")
    kind = expect(it, "type", str, "a string", "item.")
    if kind not in ITEM_KEYS:
        raise invalid_value("item.type", kind, "'message', 'function_call', 'function_call_output'")
    reject_unknown(it, ITEM_KEYS[kind], "item.")
    if "id" in it and not isinstance(it["id"], str):
        raise invalid_type("item.id", "a string", it["id"])
    if kind == "function_call_output":
        expect(it, "call_id", str, "a string", "item.")
        expect(it, "output", str, "a string", "item.")
    elif kind == "function_call":
        expect(it, "name", str, "a string", "item.")
        expect(it, "arguments", str, "a string", "item.")
    else:
        _check_message(it)
    return it


def _check_message(it: dict) -> None:
    role = expect(it, "role", str, "a string", "item.")
    if role not in CONTENT_KEYS:
        raise invalid_value("item.role", role, "'user', 'assistant', 'system'")
    content = expect(it, "content", list, "an array", "item.")
    for i, part in enumerate(content):
        p = f"item.content[{i}]"
        _object(part, p)
        reject_unknown(part, CONTENT_KEYS[role], f"{p}.")
        kind = part.get("type")
        if kind not in CONTENT_TYPES[role]:
            supported = ", ".join(f"'{t}'" for t in CONTENT_TYPES[role])
            raise invalid_value(f"{p}.type", kind, supported)


def check_truncate(ev: dict) -> tuple[str, int, int]:
    item_id = expect(ev, "item_id", str, "a string")
    content_index = expect(ev, "content_index", int, "an integer")
    audio_end_ms = expect(ev, "audio_end_ms", int, "an integer")
    if audio_end_ms < 0:
        raise invalid_value("audio_end_ms", audio_end_ms, "an integer >= 0")
    return item_id, content_index, audio_end_ms
