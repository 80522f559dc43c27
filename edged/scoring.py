"""Turn-level scores against labelled utterances (exact labels by construction).

One definition shared by the demo, the tests and the benchmarks, so the
numbers a user sees and the numbers an issue is closed on are the same.
An utterance is *detected* when the upload spans of committed turns cover at
least `cover` of it; *clipped* when its covering turn starts uploading after
its true onset (its first labelled speech frame, when given, else its start);
*split* when more than one turn overlaps it. A *false turn* is a committed turn
that overlaps no utterance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

COVER = 0.8


@dataclass(frozen=True)
class UtteranceScore:
    start_ms: float
    end_ms: float
    detected: bool
    clipped: bool
    split: bool
    commit_delay_ms: float | None  # commit of the last overlapping turn minus the true end


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def score(
    turns: Sequence[dict[str, Any]],
    utterances: Sequence[tuple[float, float]],
    cover: float = COVER,
    onsets: Sequence[float] | None = None,
) -> tuple[list[UtteranceScore], int]:
    """(per-utterance scores, number of false turns); times in ms."""
    spans = [(t["upload_start_ms"], t["upload_end_ms"]) for t in turns]
    out = []
    for k, (s, e) in enumerate(utterances):
        onset = onsets[k] if onsets is not None else s
        hits = [t for t, (a, b) in zip(turns, spans, strict=True) if _overlap(a, b, s, e) > 0]
        covered = _covered(sorted(spans), s, e)
        detected = covered >= cover * (e - s)
        clipped = detected and bool(hits) and hits[0]["upload_start_ms"] > onset
        delay = (hits[-1]["commit_ms"] - e) if hits else None
        out.append(UtteranceScore(s, e, detected, clipped, len(hits) > 1, delay))
    false_turns = sum(1 for a, b in spans if not any(_overlap(a, b, s, e) > 0 for s, e in utterances))
    return out, false_turns


def _covered(spans: Sequence[tuple[float, float]], s: float, e: float) -> float:
    """Length of [s, e] covered by the union of sorted spans."""
    total, reach = 0.0, s
    for a, b in spans:
        a, b = max(a, reach), min(b, e)
        if b > a:
            total += b - a
            reach = b
    return total
