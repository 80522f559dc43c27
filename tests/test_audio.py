"""The rings between PortAudio's callback and the frame loop."""

from __future__ import annotations

import numpy as np

from edged.audio import Ring, StreamStats


def test_ring_wraps_keeps_order_and_drops_only_what_does_not_fit() -> None:
    ring = Ring(10)
    out = np.zeros(10, np.float32)
    assert ring.write(np.arange(7, dtype=np.float32)) == 7
    assert ring.read_into(out[:5]) == 5 and list(out[:5]) == [0, 1, 2, 3, 4]
    assert ring.write(np.arange(7, 14, dtype=np.float32)) == 7  # wraps around the end
    assert ring.write(np.ones(3, np.float32)) == 1  # full: two samples dropped
    assert ring.queued() == 10
    assert ring.read_into(out) == 10 and list(out) == [5, 6, 7, 8, 9, 10, 11, 12, 13, 1]


def test_clear_drops_what_is_queued_but_not_what_comes_after() -> None:
    ring = Ring(8)
    ring.write(np.ones(6, np.float32))
    ring.clear()  # barge-in: the producer side empties the speaker's queue
    assert ring.queued() == 0
    ring.write(np.full(2, 7, np.float32))
    out = np.zeros(4, np.float32)
    assert ring.read_into(out) == 2 and list(out[:2]) == [7, 7]


def test_stream_stats_report_only_what_moved() -> None:
    st = StreamStats()
    assert st.news() == {}
    st.output_underflows += 2
    st.lost_blocks += 1
    assert st.news() == {"output_underflows": 2, "lost_blocks": 1}
    assert st.news() == {}
