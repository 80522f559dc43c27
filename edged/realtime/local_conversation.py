"""The local server's session and conversation state, without I/O.

What the service remembers decides what it bills and what a truncation
means, so the local server keeps the same state: the conversation's items in
order, how much audio each holds, and how much of each assistant item the
client said it played. Methods raise `ClientError` where the service answers
with an `error` event.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from .local_checks import ClientError, invalid_value
from .local_voice import BYTES_PER_MS, RATE_HZ, text_tokens, transcript_until

USER_AUDIO_MS_PER_TOKEN = 100
ASSISTANT_AUDIO_MS_PER_TOKEN = 50
MAX_ITEMS = 1000  # kept per conversation; the oldest go first


def default_session(model: str) -> dict[str, Any]:
    """What session.created reports: manual turns (the local server has no VAD), PCM 24 kHz."""
    pcm = {"type": "audio/pcm", "rate": RATE_HZ}
    return {
        "type": "realtime",
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "audio": {
            "input": {
                "format": dict(pcm),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": None,
            },
            "output": {"format": dict(pcm), "voice": "marin", "speed": 1.0},
        },
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
    }


def merge_session(current: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Omitted keys stay as they were; `audio.input`/`audio.output` merge key by key."""
    out = copy.deepcopy(current)
    for key, value in update.items():
        if key == "audio" and isinstance(value, dict):
            for side in ("input", "output"):
                if isinstance(value.get(side), dict):
                    out["audio"][side].update(copy.deepcopy(value[side]))
        else:
            out[key] = copy.deepcopy(value)
    return out


def usage(input_usage: dict[str, int], out_text: int, out_audio: int) -> dict[str, Any]:
    """The `usage` of response.done (no prompt caching is simulated)."""
    n_in = input_usage["text"] + input_usage["audio"]
    return {
        "total_tokens": n_in + out_text + out_audio,
        "input_tokens": n_in,
        "output_tokens": out_text + out_audio,
        "input_token_details": {
            "text_tokens": input_usage["text"],
            "audio_tokens": input_usage["audio"],
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {"text_tokens": out_text, "audio_tokens": out_audio},
    }


def assistant_audio_tokens(audio_ms: float) -> int:
    return math.ceil(audio_ms / ASSISTANT_AUDIO_MS_PER_TOKEN)


@dataclass
class Item:
    item: dict[str, Any]  # the public item, as sent in events (never holds audio bytes)
    audio_ms: float = 0.0  # user audio committed, or assistant audio streamed so far
    audio_end_ms: int | None = None  # set by conversation.item.truncate
    full_transcript: str = ""  # an assistant item's whole transcript, before any truncation

    @property
    def id(self) -> str:
        return self.item["id"]

    @property
    def role(self) -> str | None:
        return self.item.get("role")

    def input_tokens(self) -> tuple[int, int]:
        """(text, audio) tokens this item costs as input to a later response."""
        it = self.item
        if it["type"] == "function_call":
            return text_tokens(it.get("name", "") + it.get("arguments", "")), 0
        if it["type"] == "function_call_output":
            return text_tokens(it.get("output", "")), 0
        text = sum(text_tokens(part.get("text") or "") for part in it.get("content", []))
        if self.role == "assistant":
            heard = self.audio_ms if self.audio_end_ms is None else self.audio_end_ms
            return text, assistant_audio_tokens(heard)
        return text, math.ceil(self.audio_ms / USER_AUDIO_MS_PER_TOKEN)


def item_from_client(item: dict[str, Any], item_id: str) -> Item:
    """A validated conversation.item.create item, stored without its audio payload
    (user input_audio still counts for usage by its length)."""
    item = copy.deepcopy(item)
    audio_ms = 0.0
    for part in item.get("content", []):
        audio = part.pop("audio", None)
        if isinstance(audio, str):
            try:
                audio_ms += len(base64.b64decode(audio, validate=True)) / BYTES_PER_MS
            except (binascii.Error, ValueError):
                raise ClientError(
                    "invalid_value", "Invalid 'audio': expected base64.", "item.content"
                ) from None
    item.update(id=item_id, object="realtime.item", status="completed")
    return Item(item, audio_ms=audio_ms)


class Conversation:
    """The items of one session in order (a dict keeps insertion order)."""

    def __init__(self, max_items: int = MAX_ITEMS) -> None:
        self.items: dict[str, Item] = {}
        self.max_items = max_items

    def last_id(self) -> str | None:
        return next(reversed(self.items), None)

    def insert(self, it: Item, previous_item_id: str | None = None) -> str | None:
        """Append (None), put first ("root") or after an item; returns the previous item's id
        as the service reports it."""
        if it.id in self.items:
            raise ClientError(
                "invalid_value", f"Item '{it.id}' already exists in the conversation.", "item.id"
            )
        if previous_item_id is None:
            previous = self.last_id()
            self.items[it.id] = it
        else:
            if previous_item_id != "root" and previous_item_id not in self.items:
                raise ClientError(
                    "invalid_value",
                    f"Previous item '{previous_item_id}' not found in the conversation.",
                    "previous_item_id",
                )
            pairs = list(self.items.items())
            pos = 0 if previous_item_id == "root" else list(self.items).index(previous_item_id) + 1
            pairs.insert(pos, (it.id, it))
            self.items = dict(pairs)
            previous = None if previous_item_id == "root" else previous_item_id
        while len(self.items) > self.max_items:
            self.items.pop(next(iter(self.items)))
        return previous

    def find(self, item_id: str) -> Item:
        it = self.items.get(item_id)
        if it is None:
            raise ClientError("invalid_value", f"Conversation item '{item_id}' not found.", "item_id")
        return it

    def delete(self, item_id: str) -> None:
        del self.items[self.find(item_id).id]

    def has_call(self, call_id: str) -> bool:
        return any(
            it.item["type"] == "function_call" and it.item.get("call_id") == call_id
            for it in self.items.values()
        )

    def truncate(self, item_id: str, content_index: int, audio_end_ms: int) -> Item:
        """What the client says it played of an assistant item; the unheard transcript goes."""
        it = self.find(item_id)
        if it.role != "assistant" or it.audio_ms <= 0:
            raise ClientError(
                "unsupported_content_type", "Only model output audio messages can be truncated", "item_id"
            )
        if content_index != 0:
            raise invalid_value("content_index", content_index, "0")
        if audio_end_ms > it.audio_ms:
            raise ClientError(
                "invalid_value",
                f"Audio content of {int(it.audio_ms)}ms is already shorter than {audio_end_ms}ms",
                "audio_end_ms",
            )
        it.audio_end_ms = audio_end_ms
        it.item["content"][0]["transcript"] = transcript_until(it.full_transcript, audio_end_ms / it.audio_ms)
        return it

    def input_usage(self, instructions: str, tools: list[Any]) -> dict[str, int]:
        """Everything in the conversation is billed again as input on every response: user audio
        at 1 token per 100 ms, earlier assistant audio (as heard, after truncation) at 1 per 50 ms."""
        text = text_tokens(instructions) + (text_tokens(json.dumps(tools)) if tools else 0)
        audio = 0
        for it in self.items.values():
            t, a = it.input_tokens()
            text += t
            audio += a
        return {"text": text, "audio": audio}
