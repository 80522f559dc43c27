"""How long to wait before trying again: doubling, capped, with "equal jitter".

One rule for every retry edged makes (the Realtime connection, the audio device):
half the wait is fixed so it is never zero, half is random so devices that lost the
same network or the same USB hub do not retry in step.
"""

from __future__ import annotations

import random


def backoff_ms(failures: int, min_ms: float, max_ms: float, rng: random.Random | None = None) -> float:
    """The wait after `failures` failures in a row (1 for the first)."""
    base = min(max_ms, min_ms * 2 ** max(0, failures - 1))
    return base * (0.5 + (rng or random).random() / 2)
