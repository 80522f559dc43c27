"""The playback buffer: prebuffering, exact played length per item, instant flush, bounds."""

from __future__ import annotations

import numpy as np

from edged.playback import RATE_HZ, Playback


def pcm(ms: int, value: int = 1000) -> bytes:
    return (np.full(RATE_HZ * ms // 1000, value, dtype="<i2")).tobytes()


FRAME = RATE_HZ // 100  # 10 ms


def test_waits_for_the_prebuffer_then_plays_and_counts_what_was_heard() -> None:
    pb = Playback(prebuffer_ms=100)
    pb.push("a", pcm(50))
    assert not pb.pull(FRAME).any()  # 50 ms < prebuffer: still silent
    pb.push("a", pcm(150))
    heard = np.concatenate([pb.pull(FRAME) for _ in range(7)])
    assert np.allclose(heard, 1000 / 32768)
    assert pb.played_ms("a") == 70 and pb.received_ms("a") == 200 and pb.current_item == "a"


def test_end_of_item_plays_a_short_reply_without_waiting() -> None:
    pb = Playback(prebuffer_ms=500)
    pb.push("a", pcm(30))
    assert not pb.pull(FRAME).any()
    pb.end_item("a")
    assert pb.pull(FRAME).any()


def test_flush_silences_the_next_frame_and_keeps_the_played_count() -> None:
    pb = Playback(prebuffer_ms=0)
    pb.push("a", pcm(1000))
    for _ in range(25):
        pb.pull(FRAME)
    pb.flush()
    assert not pb.active and not pb.pull(FRAME).any()
    assert pb.played_ms("a") == 250


def test_items_in_sequence_and_partial_frames() -> None:
    pb = Playback(prebuffer_ms=0)
    pb.push("a", pcm(15, 100))
    pb.push("b", pcm(20, 200))
    out = pb.pull(FRAME * 2)
    assert np.allclose(out[: FRAME + FRAME // 2], 100 / 32768) and np.allclose(
        out[FRAME + FRAME // 2 :], 200 / 32768
    )
    assert pb.played_ms("a") == 15 and pb.played_ms("b") == 5 and pb.current_item == "b"


def test_bounded_and_underruns_counted() -> None:
    pb = Playback(prebuffer_ms=0, capacity_ms=100)
    pb.push("a", pcm(80))
    pb.push("a", pcm(80))
    assert pb.dropped_samples == RATE_HZ * 60 // 1000 and pb.queued_ms == 100
    for _ in range(11):
        pb.pull(FRAME)
    assert pb.underruns == 1  # ran dry inside an item that had not ended


def test_an_item_that_ran_dry_mid_reply_is_still_the_one_a_barge_in_cuts() -> None:
    """A network gap mid-reply empties the buffer: the speaker is silent for a moment, but
    the user heard part of the item, so a barge-in now must still truncate it."""
    pb = Playback(prebuffer_ms=0)
    pb.push("a", pcm(50))
    for _ in range(8):
        pb.pull(FRAME)
    assert not pb.active and pb.interrupted_item == "a"
    pb.end_item("a")  # all of it arrived and was played: nothing left to cut
    assert pb.interrupted_item == ""
    pb.push("b", pcm(500))
    pb.pull(FRAME)
    assert pb.interrupted_item == "b"
    pb.flush()  # cut once: a later turn does not cut it again
    assert pb.interrupted_item == ""


def test_pause_is_silent_at_once_and_resume_loses_nothing_not_even_what_was_pulled_ahead() -> None:
    """Live output pulls ahead of the speaker: on a pause, what was pulled but not heard is
    dropped downstream and goes back into the queue, so the user hears every sample once."""
    pb = Playback(prebuffer_ms=0)
    ramp = np.arange(RATE_HZ // 2, dtype="<i2")  # 500 ms, every sample distinct
    pb.push("a", ramp.tobytes())
    downstream = [0]
    dropped = []
    pb.downstream_samples = lambda: downstream[0]

    def drop() -> None:  # what the output device does on a barge-in
        dropped.append(downstream[0])
        downstream[0] = 0

    pb.on_flush.append(drop)
    got = [pb.pull(FRAME) for _ in range(10)]  # 100 ms pulled ...
    downstream[0] = 3 * FRAME  # ... of which the last 30 ms still wait in the device
    pb.pause()
    assert dropped == [3 * FRAME] and pb.played_ms("a") == 70
    assert not pb.pull(FRAME).any() and pb.played_ms("a") == 70  # silent, nothing counted
    pb.resume()
    heard = np.concatenate(got)[: 7 * FRAME]
    rest = np.concatenate([pb.pull(FRAME) for _ in range(43)])
    assert np.array_equal(np.concatenate([heard, rest]) * 32768, ramp.astype(np.float32))
    assert pb.played_ms("a") == 500


def test_a_confirmed_barge_in_flushes_a_paused_reply() -> None:
    pb = Playback(prebuffer_ms=0)
    pb.push("a", pcm(500))
    pb.pull(FRAME)
    pb.pause()
    pb.flush()
    assert not pb.paused and not pb.active and not pb.pull(FRAME).any()
    assert pb.played_ms("a") == 10 and pb.interrupted_item == ""
