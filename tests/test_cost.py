"""Cost: exact arithmetic on hand-computed turns, SDK-shaped usage, and a ledger that never crashes."""

from __future__ import annotations

import json
import logging
import re
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from conformance import parse_server_event

from edged.cost import (
    ASSISTANT_AUDIO_TOKENS_PER_S,
    DEFAULT_PRICES,
    CostError,
    DayTotals,
    Ledger,
    Prices,
    TurnCost,
    Usage,
    always_streaming_usd,
    cost_usd,
    parse_usage,
    prices_for,
    turn_cost,
    user_audio_tokens,
)

MINI = DEFAULT_PRICES["gpt-realtime-2.1-mini"]
FULL = DEFAULT_PRICES["gpt-realtime-2.1"]
DAY = date(2026, 11, 22)

# one turn: 1000 tokens in (text 200 of which 100 cached, audio 800 of which 300 cached), 250 out
USAGE_DICT: dict[str, Any] = {
    "total_tokens": 1250,
    "input_tokens": 1000,
    "output_tokens": 250,
    "input_token_details": {
        "text_tokens": 200,
        "audio_tokens": 800,
        "image_tokens": 0,
        "cached_tokens": 400,
        "cached_tokens_details": {"text_tokens": 100, "audio_tokens": 300, "image_tokens": 0},
    },
    "output_token_details": {"text_tokens": 50, "audio_tokens": 200},
}
USAGE = Usage(
    text_in_tokens=200,
    cached_text_in_tokens=100,
    audio_in_tokens=800,
    cached_audio_in_tokens=300,
    text_out_tokens=50,
    audio_out_tokens=200,
)
AUDIO_600 = Usage(audio_in_tokens=600)


def response_done(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "response.done",
        "event_id": "event_1",
        "response": {
            "id": "resp_1",
            "object": "realtime.response",
            "status": "completed",
            "output": [],
            "usage": usage,
        },
    }


# -- arithmetic ---------------------------------------------------------------------------------


def test_600_audio_tokens_on_mini_cost_six_tenths_of_a_cent() -> None:
    assert cost_usd(AUDIO_600, MINI) == 0.006
    assert cost_usd(AUDIO_600, FULL) == 0.0192


def test_turn_breakdown_on_2_1() -> None:
    # by hand, USD per 1M: 100*4 + 100*0.40 + 500*32 + 300*0.40 + 50*24 + 200*64 = 30 560
    c = turn_cost(USAGE, FULL)
    expected = TurnCost(0.0004, 0.00004, 0.016, 0.00012, 0.0012, 0.0128)
    for got, want in zip(vars(c).values(), vars(expected).values(), strict=True):
        assert got == pytest.approx(want, rel=1e-12)
    assert c.total_usd == pytest.approx(0.03056, rel=1e-12)


def test_turn_on_mini() -> None:
    # 100*0.60 + 100*0.06 + 500*10 + 300*0.30 + 50*2.40 + 200*20 = 9 276
    assert cost_usd(USAGE, MINI) == pytest.approx(0.009276, rel=1e-12)
    assert cost_usd(Usage(), MINI) == 0.0


def test_default_prices_match_the_per_minute_table() -> None:
    # protocol §6: ≈ $ per minute of audio in / out
    per_min = {"gpt-realtime-2.1": (0.019, 0.077), "gpt-realtime-2.1-mini": (0.006, 0.024)}
    for model, (in_usd, out_usd) in per_min.items():
        p = DEFAULT_PRICES[model]
        assert round(always_streaming_usd(60, p), 3) == in_usd
        assert round(ASSISTANT_AUDIO_TOKENS_PER_S * 60 * p.audio_out / 1e6, 3) == out_usd
    assert DEFAULT_PRICES["gpt-realtime-2"] == FULL
    assert DEFAULT_PRICES["gpt-realtime-1.5"].text_out == 16.0


def test_always_streaming_comparison() -> None:
    assert user_audio_tokens(60) == 600
    assert always_streaming_usd(3600, MINI) == pytest.approx(0.36, rel=1e-12)
    assert always_streaming_usd(24 * 3600, FULL) == pytest.approx(27.648, rel=1e-12)
    assert always_streaming_usd(0, FULL) == 0
    with pytest.raises(CostError):
        user_audio_tokens(-1)


def test_prices_for_models_and_snapshots() -> None:
    assert prices_for("gpt-realtime-2.1-mini") is MINI
    assert prices_for("gpt-realtime-2.1-mini-2026-03-01") is MINI
    with pytest.raises(
        CostError, match=re.escape("no prices for model 'gpt-realtime'; known: gpt-realtime-1.5, ")
    ):
        prices_for("gpt-realtime")
    own = {"gpt-realtime": Prices(4, 0.4, 16, 32, 0.4, 64)}
    assert prices_for("gpt-realtime-2025-08-28", own).text_out == 16


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_in": -1.0}, "price text_in = -1.0"),
        ({"audio_out": float("nan")}, "price audio_out = nan"),
        ({"audio_in": True}, "price audio_in = True"),
        ({"text_in": "4"}, "price text_in = '4'"),
        ({"audio_in_cached": 40.0}, "audio_in_cached is above audio_in"),
        ({"text_in_cached": 5.0}, "text_in_cached is above text_in"),
    ],
)
def test_bad_prices(change: dict[str, Any], message: str) -> None:
    base = vars(FULL) | change
    with pytest.raises(CostError, match=re.escape(message)):
        Prices(**base)


# -- usage from response.done --------------------------------------------------------------------


def test_usage_from_an_sdk_valid_response_done() -> None:
    ev = response_done(USAGE_DICT)
    m = parse_server_event(ev)  # the SDK's own types accept it, extra keys included
    assert parse_usage(ev["response"]["usage"]) == USAGE
    assert parse_usage(m.response.usage.model_dump(exclude_none=True)) == USAGE
    assert USAGE.input_tokens == 1000 and USAGE.output_tokens == 250 and USAGE.total_tokens == 1250


def test_the_sdk_check_catches_a_misspelled_usage_field() -> None:
    bad = {**USAGE_DICT, "input_token_details": {"cached_token_details": {"text_tokens": 1}}}
    with pytest.raises(ValueError, match="cached_token_details"):
        parse_server_event(response_done(bad))


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (None, Usage()),
        ({}, Usage()),
        ({"input_token_details": None, "output_token_details": None}, Usage()),
        # totals only: unclassified tokens are billed as audio, the dearest kind
        ({"input_tokens": 500, "output_tokens": 100}, Usage(audio_in_tokens=500, audio_out_tokens=100)),
        (
            {"input_tokens": 500, "input_token_details": {"text_tokens": 100}},
            Usage(text_in_tokens=100, audio_in_tokens=400),
        ),
        # image tokens (never sent by edged) count as audio too
        (
            {"input_token_details": {"text_tokens": 10, "image_tokens": 50}},
            Usage(text_in_tokens=10, audio_in_tokens=50),
        ),
        # details above the total: the larger count is billed
        ({"input_tokens": 5, "input_token_details": {"audio_tokens": 80}}, Usage(audio_in_tokens=80)),
        # cached without details: text first (caching saves less on text), then audio
        (
            {"input_token_details": {"text_tokens": 200, "audio_tokens": 800, "cached_tokens": 300}},
            Usage(200, 200, 800, 100),
        ),
        (
            {"input_token_details": {"text_tokens": 200, "audio_tokens": 800, "cached_tokens": 150}},
            Usage(200, 150, 800, 0),
        ),
        # details that do not account for every cached token: the rest as above
        (
            {
                "input_token_details": {
                    "text_tokens": 200,
                    "audio_tokens": 800,
                    "cached_tokens": 300,
                    "cached_tokens_details": {"text_tokens": 50, "audio_tokens": 100},
                }
            },
            Usage(200, 200, 800, 100),
        ),
        # cached image tokens are cached audio, like their uncached kind
        (
            {
                "input_token_details": {
                    "audio_tokens": 10,
                    "image_tokens": 20,
                    "cached_tokens": 20,
                    "cached_tokens_details": {"image_tokens": 20},
                }
            },
            Usage(audio_in_tokens=30, cached_audio_in_tokens=20),
        ),
        ({"output_tokens": 300.0, "output_token_details": {"text_tokens": 100}}, Usage(0, 0, 0, 0, 100, 200)),
    ],
)
def test_parse_usage(usage: dict[str, Any] | None, expected: Usage) -> None:
    assert parse_usage(usage) == expected


@pytest.mark.parametrize(
    ("usage", "message"),
    [
        ([], "usage must be an object, not list"),
        ({"input_tokens": -1}, "usage input_tokens = -1: not a token count"),
        ({"output_tokens": 1.5}, "usage output_tokens = 1.5: not a token count"),
        ({"total_tokens": "9"}, "usage total_tokens = '9': not a token count"),
        ({"input_token_details": {"audio_tokens": True}}, "usage input_token_details.audio_tokens = True"),
        ({"input_token_details": 5}, "usage input_token_details must be an object, not int"),
        (
            {"input_token_details": {"cached_tokens_details": {"text_tokens": -3}}},
            "usage input_token_details.cached_tokens_details.text_tokens = -3",
        ),
        ({"input_tokens": 10, "input_token_details": {"cached_tokens": 11}}, "11 cached tokens but only 10"),
        (
            {
                "input_token_details": {
                    "text_tokens": 5,
                    "audio_tokens": 100,
                    "cached_tokens_details": {"text_tokens": 6},
                }
            },
            "cached_tokens_details exceed the input tokens of that kind",
        ),
    ],
)
def test_parse_usage_rejects_nonsense(usage: Any, message: str) -> None:
    with pytest.raises(CostError) as e:
        parse_usage(usage)
    assert message in str(e.value)


def test_usage_invariants_and_sums() -> None:
    with pytest.raises(CostError, match="cached text input tokens exceed"):
        Usage(cached_text_in_tokens=1)
    with pytest.raises(CostError, match="cached audio input tokens exceed"):
        Usage(audio_in_tokens=1, cached_audio_in_tokens=2)
    with pytest.raises(CostError, match="audio_out_tokens = -1"):
        Usage(audio_out_tokens=-1)
    with pytest.raises(CostError, match=re.escape("text_out_tokens = 1.0")):
        Usage(text_out_tokens=1.0)  # type: ignore[arg-type]
    total = USAGE + AUDIO_600
    assert total == Usage(200, 100, 1400, 300, 50, 200)


# -- ledger -------------------------------------------------------------------------------------


def test_ledger_totals_per_day_and_roll_over() -> None:
    ledger = Ledger()
    c1 = ledger.add(DAY, AUDIO_600, "gpt-realtime-2.1-mini")
    assert c1.total_usd == 0.006
    ledger.add(DAY, USAGE, "gpt-realtime-2.1-mini")
    ledger.add(datetime(2026, 11, 23, 0, 0, 1), AUDIO_600, "gpt-realtime-2.1")  # just after midnight
    today = ledger.today(DAY)
    assert today.turns == 2
    assert today.usage == USAGE + AUDIO_600
    assert today.usd == pytest.approx(0.006 + 0.009276, rel=1e-12)
    tomorrow = ledger.today(date(2026, 11, 23))
    assert (tomorrow.turns, tomorrow.usd, tomorrow.usage) == (1, 0.0192, AUDIO_600)
    assert ledger.today(date(2026, 11, 24)) == DayTotals(date(2026, 11, 24))
    assert [d.day for d in ledger.days()] == [DAY, date(2026, 11, 23)]
    line = today.summary()
    assert line.startswith("2026-11-22: 2 turns, $0.0153; tokens in 1600 (audio 1400, text 200, cached 400)")
    assert line.endswith("out 250 (audio 200, text 50)")


def test_unknown_model_is_an_error_and_books_nothing() -> None:
    ledger = Ledger()
    with pytest.raises(CostError, match="no prices for model 'gpt-4o-realtime-preview'"):
        ledger.add(DAY, AUDIO_600, "gpt-4o-realtime-preview")
    assert ledger.today(DAY).turns == 0 and ledger.days() == []
    with pytest.raises(CostError, match=re.escape("must be a datetime.date")):
        ledger.add("2026-11-22", AUDIO_600, "gpt-realtime-2.1-mini")  # type: ignore[arg-type]


def test_budget_is_reached_per_day() -> None:
    ledger = Ledger()
    ledger.add(DAY, AUDIO_600, "gpt-realtime-2.1-mini")  # $0.006
    assert not ledger.over_budget(DAY, 0.01)
    assert ledger.over_budget(DAY, 0.006)  # reached counts
    ledger.add(DAY, AUDIO_600, "gpt-realtime-2.1-mini")  # $0.012
    assert ledger.over_budget(DAY, 0.01)
    assert not ledger.over_budget(DAY + timedelta(days=1), 0.01)  # a new day, a new budget
    assert not ledger.over_budget(DAY, None)
    assert not ledger.over_budget(DAY, 0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(CostError, match="daily budget"):
            ledger.over_budget(DAY, bad)


def test_ledger_keeps_a_bounded_number_of_days() -> None:
    ledger = Ledger(max_days=3)
    for i in range(5):
        ledger.add(DAY + timedelta(days=i), AUDIO_600, "gpt-realtime-2.1-mini")
    kept = [DAY + timedelta(days=i) for i in (2, 3, 4)]
    assert [d.day for d in ledger.days()] == kept
    ledger.add(DAY, AUDIO_600, "gpt-realtime-2.1-mini")  # older than all kept: dropped at once
    assert [d.day for d in ledger.days()] == kept
    with pytest.raises(CostError):
        Ledger(max_days=0)


def test_json_round_trip() -> None:
    ledger = Ledger()
    ledger.add(DAY, USAGE, "gpt-realtime-2.1")
    ledger.add(DAY, AUDIO_600, "gpt-realtime-2.1-mini")
    ledger.add(DAY + timedelta(days=1), AUDIO_600, "gpt-realtime-2.1-mini")
    text = ledger.to_json()
    doc = json.loads(text)
    assert doc["version"] == 1 and sorted(doc["days"]) == ["2026-11-22", "2026-11-23"]
    again = Ledger.from_json(text)
    assert again.days() == ledger.days()
    assert again.to_json() == text
    assert Ledger.from_json(text.encode()).days() == ledger.days()
    assert [d.day for d in Ledger.from_json(text, max_days=1).days()] == [DAY + timedelta(days=1)]


def _saved(day: str = "2026-11-22", **rec: Any) -> str:
    rec = {"turns": 1, "usd": 0.5, "tokens": {"audio_in_tokens": 600}} | rec
    return json.dumps({"version": 1, "days": {day: rec}})


def test_a_valid_hand_written_file_loads() -> None:
    (t,) = Ledger.from_json(_saved()).days()
    assert t == DayTotals(DAY, 1, 0.5, AUDIO_600)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        b"\xff\xfe",
        "[" * 100_000,
        '{"version": 2, "days": {}}',
        '{"version": 1}',
        '{"version": 1, "days": []}',
        _saved(day="22/11/2026"),
        _saved(turns=-1),
        _saved(turns=1.5),
        _saved(usd=-0.1),
        _saved(usd="0.5"),
        _saved(usd=float("nan")),
        _saved(tokens={"audio_in_tokens": -5}),
        _saved(tokens={"bogus_tokens": 5}),
        _saved(tokens={"cached_text_in_tokens": 5}),
        _saved(tokens=[1, 2]),
        '{"version": 1, "days": {"2026-11-22": {"turns": 1}}}',
    ],
)
def test_corrupt_json_starts_fresh_with_a_warning(
    text: str | bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="edged.cost"):
        ledger = Ledger.from_json(text, max_days=5)
    assert ledger.days() == [] and ledger.max_days == 5
    assert "cost ledger unreadable" in caplog.text and "starting a fresh one" in caplog.text
    ledger.add(DAY, AUDIO_600, "gpt-realtime-2.1-mini")  # and it works
    assert ledger.today(DAY).turns == 1
