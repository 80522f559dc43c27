"""Conformance oracle: the `openai` SDK's own Realtime event types (GA).

Code nobody here wrote decides whether what edged sends, and what its local
server sends, is the protocol. SDK models allow extra keys, so the strict check
walks `model_extra` too, and adds the service's rule that PCM is 24 kHz.
"""

from __future__ import annotations

import typing
from typing import Any

import pydantic
from openai.types.realtime import RealtimeClientEvent, RealtimeServerEvent


def _members(union: Any) -> dict[str, type[pydantic.BaseModel]]:
    return {
        typing.get_args(c.model_fields["type"].annotation)[0]: c
        for c in typing.get_args(typing.get_args(union)[0])
    }


CLIENT = _members(RealtimeClientEvent)
SERVER = _members(RealtimeServerEvent)
_CLIENT_ADAPTER: pydantic.TypeAdapter = pydantic.TypeAdapter(RealtimeClientEvent)
_SERVER_ADAPTER: pydantic.TypeAdapter = pydantic.TypeAdapter(RealtimeServerEvent)


def _extra(o: Any, p: str = "") -> list[str]:
    if isinstance(o, pydantic.BaseModel):
        return [f"{p}.{k}".lstrip(".") for k in (o.model_extra or {})] + [
            x for n in type(o).model_fields for x in _extra(getattr(o, n), f"{p}.{n}")
        ]
    if isinstance(o, (list, tuple)):
        return [x for i, v in enumerate(o) for x in _extra(v, f"{p}[{i}]")]
    return []


def _check(ev: dict, table: dict, adapter: pydantic.TypeAdapter, strict: bool) -> pydantic.BaseModel:
    if ev.get("type") not in table:
        raise ValueError(f"unknown event type {ev.get('type')!r}")
    m = table[ev["type"]].model_validate(ev)
    adapter.validate_python(ev)
    if strict and (x := _extra(m)):
        raise ValueError(f"not in GA schema: {x}")
    return m


def validate_client_event(ev: dict) -> pydantic.BaseModel:
    m = _check(ev, CLIENT, _CLIENT_ADAPTER, True)
    audio = ((ev.get("session") or {}).get("audio") or {}) if ev["type"] == "session.update" else {}
    for side in ("input", "output"):
        f = (audio.get(side) or {}).get("format")
        if isinstance(f, dict) and f.get("type") == "audio/pcm" and f.get("rate") != 24000:
            raise ValueError(f"session.audio.{side}.format.rate must be 24000")
    return m


def parse_server_event(ev: dict, strict: bool = True) -> pydantic.BaseModel:
    return _check(ev, SERVER, _SERVER_ADAPTER, strict)
