"""Money: tokens and dollars per turn and per day, and the daily budget.

Billing is per response, and the whole conversation is billed again as input on every turn
(protocol §6), so a device that answers noise or talks for a long time can spend real money
overnight. The session feeds each `response.done` usage here; the `Ledger` keeps per-day
totals and says when the day's budget is spent, so the daemon stops opening sessions.

Sans-I/O: the caller passes the day and reads and writes the ledger's JSON; nothing here
reads the clock or touches a file.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, datetime
from types import MappingProxyType
from typing import Any

log = logging.getLogger(__name__)

PER_TOKENS = 1_000_000  # prices are USD per 1M tokens
USER_AUDIO_TOKENS_PER_S = 10  # 1 token per 100 ms of user audio (§6)
ASSISTANT_AUDIO_TOKENS_PER_S = 20  # 1 token per 50 ms of assistant audio (§6)
LEDGER_VERSION = 1
DEFAULT_MAX_DAYS = 62
_DATED_SNAPSHOT = re.compile(r"-\d{4}-\d{2}-\d{2}$")


class CostError(ValueError):
    """Usage, prices or a budget that make no sense; the message names the value."""


# -- prices -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """USD per 1M tokens, by kind. Cached input is context re-sent from earlier turns."""

    text_in: float
    text_in_cached: float
    text_out: float
    audio_in: float
    audio_in_cached: float
    audio_out: float

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise CostError(f"price {f.name} = {v!r}: must be a number of USD per 1M tokens, >= 0")
        for kind in ("text_in", "audio_in"):
            if getattr(self, f"{kind}_cached") > getattr(self, kind):
                raise CostError(f"price {kind}_cached is above {kind}: cached input is never dearer")


# From realtime-protocol.md §6, except the cached *text* prices, which §6 does not list: they
# are from the official model pages (developers.openai.com/api/docs/models/<model>), which also
# confirm every other figure here. §6 gives no prices for the older `gpt-realtime` and
# `gpt-realtime-mini`; add them to the price table in the config to use those models.
DEFAULT_PRICES: Mapping[str, Prices] = MappingProxyType(
    {
        "gpt-realtime-2.1": Prices(4.0, 0.40, 24.0, 32.0, 0.40, 64.0),
        "gpt-realtime-2.1-mini": Prices(0.60, 0.06, 2.40, 10.0, 0.30, 20.0),
        "gpt-realtime-2": Prices(4.0, 0.40, 24.0, 32.0, 0.40, 64.0),
        "gpt-realtime-1.5": Prices(4.0, 0.40, 16.0, 32.0, 0.40, 64.0),
    }
)


def prices_for(model: str, table: Mapping[str, Prices] = DEFAULT_PRICES) -> Prices:
    """The model's prices; a dated snapshot (`...-2025-08-28`) falls back to its alias.

    Call it at startup: an unknown model is a config error (CostError naming the known
    ones), better found then than at the first bill.
    """
    if model in table:
        return table[model]
    alias = _DATED_SNAPSHOT.sub("", model)
    if alias in table:
        return table[alias]
    raise CostError(f"no prices for model {model!r}; known: {', '.join(sorted(table))}")


# -- usage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Tokens of one response (or a sum of them), by kind; cached counts are part of the input."""

    text_in_tokens: int = 0
    cached_text_in_tokens: int = 0
    audio_in_tokens: int = 0
    cached_audio_in_tokens: int = 0
    text_out_tokens: int = 0
    audio_out_tokens: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise CostError(f"{f.name} = {v!r}: must be a whole number >= 0")
        if self.cached_text_in_tokens > self.text_in_tokens:
            raise CostError("cached text input tokens exceed text input tokens")
        if self.cached_audio_in_tokens > self.audio_in_tokens:
            raise CostError("cached audio input tokens exceed audio input tokens")

    @property
    def input_tokens(self) -> int:
        return self.text_in_tokens + self.audio_in_tokens

    @property
    def output_tokens(self) -> int:
        return self.text_out_tokens + self.audio_out_tokens

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def _count(d: Mapping[str, Any], key: str, where: str) -> int:
    v = d.get(key)
    if v is None:
        return 0
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise CostError(f"usage {where}{key} = {v!r}: not a token count")
    return v


def _section(d: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise CostError(f"usage {where}{key} must be an object, not {type(v).__name__}")
    return v


def parse_usage(usage: Mapping[str, Any] | None) -> Usage:
    """`response.done` → `response.usage` (GA `RealtimeResponseUsage`) as a `Usage`.

    Missing fields count as 0; negative or fractional counts raise CostError. Where the
    details do not account for every token, the rest is billed at the dearest rate, so the
    ledger errs towards spending less, never more, than the budget:

    - input tokens not classified as text or audio (including image tokens, which edged
      never sends and which have no price here) count as audio input;
    - output tokens not classified count as audio output;
    - cached tokens that `cached_tokens_details` does not split (or an older server that
      sends no details) are taken as text first, then audio: caching saves less on text
      than on audio at every price in DEFAULT_PRICES, so this is the dearer reading.
    """
    if usage is None:
        return Usage()
    if not isinstance(usage, Mapping):
        raise CostError(f"usage must be an object, not {type(usage).__name__}")
    ind = _section(usage, "input_token_details", "")
    outd = _section(usage, "output_token_details", "")
    cad = _section(ind, "cached_tokens_details", "input_token_details.")
    _count(usage, "total_tokens", "")  # not used, but nonsense there is nonsense

    w = "input_token_details."
    text_in = _count(ind, "text_tokens", w)
    classified = text_in + _count(ind, "audio_tokens", w) + _count(ind, "image_tokens", w)
    audio_in = max(_count(usage, "input_tokens", ""), classified) - text_in

    w = "input_token_details.cached_tokens_details."
    cached_text = _count(cad, "text_tokens", w)
    cached_audio = _count(cad, "audio_tokens", w) + _count(cad, "image_tokens", w)
    cached = max(_count(ind, "cached_tokens", "input_token_details."), cached_text + cached_audio)
    if cached > text_in + audio_in:
        raise CostError(f"usage: {cached} cached tokens but only {text_in + audio_in} input tokens")
    if cached_text > text_in or cached_audio > audio_in:
        raise CostError("usage: cached_tokens_details exceed the input tokens of that kind")
    unsplit = cached - cached_text - cached_audio
    to_text = min(unsplit, text_in - cached_text)
    cached_text += to_text
    cached_audio += unsplit - to_text

    w = "output_token_details."
    text_out = _count(outd, "text_tokens", w)
    audio_out = _count(outd, "audio_tokens", w)
    audio_out += max(0, _count(usage, "output_tokens", "") - text_out - audio_out)
    return Usage(text_in, cached_text, audio_in, cached_audio, text_out, audio_out)


# -- cost ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnCost:
    """One response's cost in USD, by kind (uncached and cached input apart)."""

    text_in_usd: float
    cached_text_in_usd: float
    audio_in_usd: float
    cached_audio_in_usd: float
    text_out_usd: float
    audio_out_usd: float

    @property
    def total_usd(self) -> float:
        return math.fsum(getattr(self, f.name) for f in fields(self))


def turn_cost(usage: Usage, prices: Prices) -> TurnCost:
    def usd(tokens: int, per_million: float) -> float:
        return tokens * per_million / PER_TOKENS

    u, p = usage, prices
    return TurnCost(
        text_in_usd=usd(u.text_in_tokens - u.cached_text_in_tokens, p.text_in),
        cached_text_in_usd=usd(u.cached_text_in_tokens, p.text_in_cached),
        audio_in_usd=usd(u.audio_in_tokens - u.cached_audio_in_tokens, p.audio_in),
        cached_audio_in_usd=usd(u.cached_audio_in_tokens, p.audio_in_cached),
        text_out_usd=usd(u.text_out_tokens, p.text_out),
        audio_out_usd=usd(u.audio_out_tokens, p.audio_out),
    )


def cost_usd(usage: Usage, prices: Prices) -> float:
    return turn_cost(usage, prices).total_usd


def user_audio_tokens(seconds: float) -> float:
    """Input tokens for `seconds` of user audio (1 per 100 ms)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise CostError(f"seconds = {seconds!r}: must be >= 0")
    return seconds * USER_AUDIO_TOKENS_PER_S


def always_streaming_usd(seconds: float, prices: Prices) -> float:
    """What uploading all `seconds` of room audio would cost as audio input alone.

    The yardstick for edged's local gating: a device that streams the room to the API is
    billed for every 100 ms of it, silence included (with manual turns nothing is dropped,
    §6). This counts only that upload, at the uncached rate, not the responses nor the
    context billed again on each turn, so the true always-streaming bill is higher still.
    """
    return user_audio_tokens(seconds) * prices.audio_in / PER_TOKENS


# -- ledger -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DayTotals:
    day: date
    turns: int = 0
    usd: float = 0.0
    usage: Usage = Usage()

    def summary(self) -> str:
        """One log line: what was spent, on what."""
        u = self.usage
        return (
            f"{self.day.isoformat()}: {self.turns} turns, ${self.usd:.4f}; tokens in "
            f"{u.input_tokens} (audio {u.audio_in_tokens}, text {u.text_in_tokens}, cached "
            f"{u.cached_audio_in_tokens + u.cached_text_in_tokens}), out {u.output_tokens} "
            f"(audio {u.audio_out_tokens}, text {u.text_out_tokens})"
        )


def _day(day: date) -> date:
    if isinstance(day, datetime):  # a datetime is a date too, but a day has no time
        return day.date()
    if not isinstance(day, date):
        raise CostError(f"day = {day!r}: must be a datetime.date")
    return day


class Ledger:
    """Tokens, dollars and turns per day, for the last `max_days` days.

    The caller decides what "today" is (local midnight, usually) and passes it in, and
    persists `to_json()` wherever it likes so the budget survives a restart.
    """

    def __init__(self, prices: Mapping[str, Prices] = DEFAULT_PRICES, max_days: int = DEFAULT_MAX_DAYS):
        if max_days < 1:
            raise CostError("max_days must be at least 1")
        self.prices = prices
        self.max_days = max_days
        self._days: dict[date, DayTotals] = {}

    def add(self, day: date, usage: Usage, model: str) -> TurnCost:
        """Book one response; returns its cost. Raises CostError for a model without prices."""
        day = _day(day)
        cost = turn_cost(usage, prices_for(model, self.prices))
        t = self.today(day)
        self._days[day] = replace(t, turns=t.turns + 1, usd=t.usd + cost.total_usd, usage=t.usage + usage)
        self._trim()
        return cost

    def today(self, day: date) -> DayTotals:
        day = _day(day)
        return self._days.get(day, DayTotals(day))

    def days(self) -> list[DayTotals]:
        """Every kept day, oldest first."""
        return [self._days[d] for d in sorted(self._days)]

    def over_budget(self, day: date, daily_budget_usd: float | None) -> bool:
        """True once the day's spending has reached the budget; None or 0 means no budget."""
        if daily_budget_usd is None or daily_budget_usd == 0:
            return False
        if not math.isfinite(daily_budget_usd) or daily_budget_usd < 0:
            raise CostError(f"daily budget = {daily_budget_usd!r} USD: must be >= 0 (0 = unlimited)")
        return self.today(day).usd >= daily_budget_usd

    def _trim(self) -> None:
        for d in sorted(self._days)[: max(0, len(self._days) - self.max_days)]:
            del self._days[d]

    def to_json(self) -> str:
        days = {
            t.day.isoformat(): {"turns": t.turns, "usd": t.usd, "tokens": asdict(t.usage)}
            for t in self.days()
        }
        return json.dumps({"version": LEDGER_VERSION, "days": days}, indent=1, sort_keys=True)

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        prices: Mapping[str, Prices] = DEFAULT_PRICES,
        max_days: int = DEFAULT_MAX_DAYS,
    ) -> Ledger:
        """The ledger saved by `to_json`; anything unreadable gives a fresh ledger and a
        warning (losing today's count is better than a daemon that will not start)."""
        ledger = cls(prices, max_days)
        try:
            ledger._days = _read_days(json.loads(text))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
            log.warning("cost ledger unreadable (%s: %s); starting a fresh one", type(e).__name__, e)
            ledger._days = {}
        ledger._trim()
        return ledger


def _read_days(doc: Any) -> dict[date, DayTotals]:
    if not isinstance(doc, dict) or doc.get("version") != LEDGER_VERSION:
        raise ValueError(f"not a version {LEDGER_VERSION} ledger")
    days: dict[date, DayTotals] = {}
    for key, rec in doc["days"].items():
        day = date.fromisoformat(key)
        turns, usd, tokens = rec["turns"], rec["usd"], rec["tokens"]
        if isinstance(turns, bool) or not isinstance(turns, int) or turns < 0:
            raise ValueError(f"{key}: turns = {turns!r}")
        if isinstance(usd, bool) or not isinstance(usd, (int, float)) or not math.isfinite(usd) or usd < 0:
            raise ValueError(f"{key}: usd = {usd!r}")
        days[day] = DayTotals(day, turns, float(usd), Usage(**tokens))
    return days


__all__ = [
    "ASSISTANT_AUDIO_TOKENS_PER_S",
    "DEFAULT_PRICES",
    "USER_AUDIO_TOKENS_PER_S",
    "CostError",
    "DayTotals",
    "Ledger",
    "Prices",
    "TurnCost",
    "Usage",
    "always_streaming_usd",
    "cost_usd",
    "parse_usage",
    "prices_for",
    "turn_cost",
    "user_audio_tokens",
]
