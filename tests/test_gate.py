"""The turn gate, exactly, on synthetic per-frame decisions.

Each frame's audio holds its own index, so the test can check which frames
were uploaded, in which order, and that none was lost or sent twice.
"""

from __future__ import annotations

import numpy as np

from edged.config import GateConfig
from edged.frames import FRAME_SAMPLES as N
from edged.gate import Append, Commit, Confirm, Discard, Start, TurnGate, Verdict

CFG = GateConfig(
    pre_roll_ms=300,
    onset_lookback_ms=1000,
    onset_gap_ms=200,
    start_window_ms=150,
    start_voiced_ratio=0.6,
    end_silence_ms=700,
    early_end_silence_ms=700,
    post_roll_ms=150,
    min_speech_ms=200,
    max_turn_ms=30000,
    max_gap_upload_ms=500,
)


def run(decisions: list[bool], cfg: GateConfig = CFG, playing: list[bool] | None = None, finish: bool = True):
    gate = TurnGate(cfg)
    actions = []
    for i, speech in enumerate(decisions):
        frame = np.full(N, float(i), dtype=np.float32)
        for a in gate.push(frame, i * N, Verdict.of(speech), bool(playing and playing[i])):
            actions.append((i, a))
    if finish:
        actions += [(len(decisions), a) for a in gate.finish(len(decisions) * N)]
    return gate, actions


def uploaded_frames(actions) -> list[int]:
    audio = np.concatenate([a.audio for _, a in actions if isinstance(a, Append)])
    return [int(v) for v in audio[::N]]


def of(actions, kind):
    return [(i, a) for i, a in actions if isinstance(a, kind)]


def seq(*parts: tuple[bool, int]) -> list[bool]:
    return [v for value, count in parts for v in [value] * count]


def test_silence_gives_nothing() -> None:
    _, actions = run([False] * 1000)
    assert actions == []


def test_one_utterance_start_upload_and_commit_exact() -> None:
    # speech in frames 100..179 (800 ms)
    _, actions = run(seq((False, 100), (True, 80), (False, 200)))
    (i_start, start), (i_commit, commit) = of(actions, Start)[0], of(actions, Commit)[0]
    # the window of 15 frames needs 9 voiced ones: decided on the 9th voiced frame
    assert i_start == 108 and start.at == 108 * N
    assert start.speech_start == 100 * N
    assert start.upload_start == (100 - 30) * N  # 300 ms pre-roll before the first voiced frame
    # trailing silence starts at frame 180; the 70th silent frame (249) ends the turn
    assert i_commit == 249 and commit.at == 250 * N
    assert commit.reason == "end_silence"
    assert (commit.speech_start, commit.speech_end) == (100 * N, 180 * N)
    # only 150 ms of the final pause is uploaded
    assert commit.upload_end == (180 + 15) * N
    assert uploaded_frames(actions) == list(range(70, 195))
    assert commit.uploaded_samples == (195 - 70) * N
    assert not of(actions, Discard)


def test_short_blip_never_starts_a_turn() -> None:
    gate, actions = run(seq((False, 50), (True, 8), (False, 100)))
    assert actions == [] and gate.discards == 0


def test_burst_under_min_speech_is_discarded_and_counted() -> None:
    gate, actions = run(seq((False, 50), (True, 12), (False, 100)))
    assert len(of(actions, Start)) == 1
    assert not of(actions, Commit)
    (_, d) = of(actions, Discard)[0]
    assert d.reason == "too_short" and gate.discards == 1
    assert (d.speech_start, d.speech_end) == (50 * N, 62 * N)
    assert not of(actions, Confirm)  # a paused reply would resume


def test_a_turn_is_confirmed_once_when_it_holds_min_speech_ms() -> None:
    # 20 voiced frames are 200 ms: the 20th (index 69) confirms, before the commit
    _, actions = run(seq((False, 50), (True, 40), (False, 100), (True, 40), (False, 100)))
    confirms = of(actions, Confirm)
    assert [(i, a.turn, a.at) for i, a in confirms] == [(69, 1, 70 * N), (209, 2, 210 * N)]
    order = [type(a) for _, a in actions if not isinstance(a, Append)]
    assert order == [Start, Confirm, Commit] * 2


def test_pause_shorter_than_end_silence_stays_in_one_turn_and_is_shortened() -> None:
    # 60-frame pause (600 ms < 700 ms): one turn; of the pause, 15 frames of post-roll
    # plus the 35 frames just before speech resumes are uploaded (500 ms in all)
    _, actions = run(seq((False, 100), (True, 50), (False, 60), (True, 50), (False, 200)))
    assert len(of(actions, Start)) == 1 and len(of(actions, Commit)) == 1
    frames = uploaded_frames(actions)
    pause_sent = [f for f in frames if 150 <= f < 210]
    assert pause_sent == list(range(150, 165)) + list(range(175, 210))
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert frames[-1] == 260 + 15 - 1


def test_pause_longer_than_end_silence_splits_turns() -> None:
    _, actions = run(seq((False, 100), (True, 50), (False, 80), (True, 50), (False, 200)))
    commits = of(actions, Commit)
    assert len(commits) == 2
    assert commits[0][1].at == (150 + 70) * N
    # the pause that ended turn one is not sent beyond its post-roll (150..164); turn two's
    # pre-roll (30 frames before its onset at 230) reaches back into that unsent pause, as
    # it would into a quiet room, and no frame is uploaded twice
    assert uploaded_frames(actions) == list(range(70, 165)) + list(range(200, 280 + 15))


def test_a_short_turn_waits_longer_for_its_end_than_a_settled_one() -> None:
    cfg = GateConfig(**{**CFG.__dict__, "end_silence_ms": 300, "early_end_silence_ms": 500})
    assert cfg.settled_speech_ms == 1000
    # 500 ms of speech, a 400 ms pause, more speech: the first words wait 500 ms, one turn
    _, actions = run(seq((False, 100), (True, 50), (False, 40), (True, 80), (False, 100)), cfg)
    (_, commit), *more = of(actions, Commit)
    assert not more and (commit.speech_start, commit.speech_end) == (100 * N, 270 * N)
    # the turn now holds 1.3 s of speech: 300 ms of silence ended it
    assert commit.at == (270 + 30) * N
    # 1.2 s of speech, then the same 400 ms pause: it ends the settled turn at 300 ms; the
    # 800 ms that follow are a new turn's first words, ended by 500 ms
    _, actions = run(seq((False, 100), (True, 120), (False, 40), (True, 80), (False, 100)), cfg)
    commits = [a for _, a in of(actions, Commit)]
    assert [c.at for c in commits] == [(220 + 30) * N, (340 + 50) * N]
    # exactly at the settled amount: the short end silence applies from then on
    _, actions = run(seq((False, 100), (True, 100), (False, 100)), cfg)
    assert [a.at for _, a in of(actions, Commit)] == [(200 + 30) * N]
    _, actions = run(seq((False, 100), (True, 99), (False, 100)), cfg)
    assert [a.at for _, a in of(actions, Commit)] == [(199 + 50) * N]


def test_max_turn_commits_and_listens_again_only_after_a_pause() -> None:
    """Speech without a pause for max_turn_ms is the room (a TV, a crowd): one commit, then
    nothing until the sound pauses; before, a new turn followed at once, billed again every
    max_turn_ms for as long as the room talked."""
    cfg = GateConfig(**{**CFG.__dict__, "max_turn_ms": 2000})
    # speech 50..429 with no pause: one forced commit at frame 219, then nothing
    _, actions = run(seq((False, 50), (True, 380), (False, 100)), cfg)
    commits = [a for _, a in of(actions, Commit)]
    assert [c.reason for c in commits] == ["max_length"]
    assert commits[0].at == 220 * N and commits[0].upload_end - commits[0].upload_start == 2000 * 16
    assert len(of(actions, Start)) == 1
    # the same, then a pause as long as the end silence, then speech: that starts a turn
    pause = CFG.end_silence_ms // 10
    _, actions = run(seq((False, 50), (True, 380), (False, pause), (True, 60), (False, 100)), cfg)
    commits = [a for _, a in of(actions, Commit)]
    assert [c.reason for c in commits] == ["max_length", "end_silence"]
    assert commits[1].speech_start == (430 + pause) * N
    # a pause one frame shorter does not: the room has not stopped talking
    _, actions = run(seq((False, 50), (True, 380), (False, pause - 1), (True, 60), (False, 100)), cfg)
    assert [c.reason for _, c in of(actions, Commit)] == ["max_length"]


def test_a_reload_while_waiting_for_the_pause_keeps_waiting() -> None:
    """A gate rebuilt by a reload between turns takes over the wait: a reload must not let the
    room's talk start turn after turn again."""
    cfg = GateConfig(**{**CFG.__dict__, "max_turn_ms": 2000})
    old, actions = run(seq((False, 50), (True, 300)), cfg, finish=False)
    assert [a.reason for _, a in of(actions, Commit)] == ["max_length"]
    gate = TurnGate(cfg)
    gate.take_over(old)
    pause = CFG.end_silence_ms // 10
    later = []
    for i, speech in enumerate(seq((True, 100), (False, pause), (True, 60)), start=350):
        later += gate.push(np.full(N, float(i), dtype=np.float32), i * N, Verdict.of(speech))
    starts = [a for a in later if isinstance(a, Start)]
    assert len(starts) == 1 and starts[0].speech_start == (450 + pause) * N


def test_end_of_input_commits_open_turn() -> None:
    _, actions = run(seq((False, 10), (True, 60)))
    (_, c) = of(actions, Commit)[0]
    assert c.reason == "end_of_input" and c.at == 70 * N


def test_pre_roll_at_stream_start_is_what_exists() -> None:
    _, actions = run(seq((True, 40), (False, 100)))
    (_, s) = of(actions, Start)[0]
    assert s.upload_start == 0 and s.speech_start == 0
    assert uploaded_frames(actions)[0] == 0


def test_turn_starting_during_playback_is_marked_barge_in() -> None:
    d = seq((False, 100), (True, 50), (False, 100), (True, 50), (False, 100))
    playing = seq((True, 200), (False, 200))
    _, actions = run(d, playing=playing)
    assert [c.barge_in for _, c in of(actions, Commit)] == [True, False]


def test_sparse_voicing_below_ratio_does_not_start() -> None:
    # every other frame voiced: 8 of 15 in any window, under the 9 needed
    gate, actions = run([i % 2 == 0 for i in range(300)] + [False] * 100)
    assert actions == [] and gate.discards == 0


def run_verdicts(verdicts: list[Verdict], cfg: GateConfig = CFG):
    gate = TurnGate(cfg)
    out = []
    for i, v in enumerate(verdicts):
        out += [(i, a) for a in gate.push(np.full(N, float(i), dtype=np.float32), i * N, v)]
    return out


def test_late_trigger_uploads_from_the_fast_stage_onset() -> None:
    """The second stage confirms speech late; the upload reaches back to where the fast
    stage first heard it (short gaps bridged) plus the pre-roll."""
    quiet, fast_only, both = (
        Verdict(False, False, False),
        Verdict(True, False, True),
        Verdict(True, True, True),
    )
    gap = Verdict(False, False, True)
    v = [quiet] * 200 + [fast_only] * 20 + [gap] * 10 + [fast_only] * 20 + [both] * 60 + [quiet] * 100
    (_, start), *_ = of(run_verdicts(v), Start)
    assert start.at == (250 + 8) * N  # the 9th trigger frame fills 60 % of the 150 ms window
    assert start.speech_start == 200 * N  # the fast stage's run began at frame 200
    assert start.upload_start == (200 - 30) * N


def test_onset_search_stops_at_long_gaps_and_lookback() -> None:
    quiet, fast_only, both = (
        Verdict(False, False, False),
        Verdict(True, False, True),
        Verdict(True, True, True),
    )
    # activity 300 ms before the trigger run, separated by a 300 ms gap (> 200 ms bridged)
    v = [quiet] * 200 + [fast_only] * 10 + [quiet] * 30 + [both] * 60 + [quiet] * 100
    (_, start), *_ = of(run_verdicts(v), Start)
    assert start.speech_start == 240 * N
    # a run longer than the 1 s lookback: the onset is found at most 1 s back
    v = [quiet] * 50 + [fast_only] * 300 + [both] * 60 + [quiet] * 100
    (_, start), *_ = of(run_verdicts(v), Start)
    assert start.speech_start == (358 - 100 + 1) * N


def test_start_share_is_counted_exactly() -> None:
    """30 % of a 100 ms window is 3 frames (floating point would make it 4)."""
    cfg = GateConfig(**{**CFG.__dict__, "start_window_ms": 100, "start_voiced_ratio": 0.3})
    _, actions = run(seq((False, 50), (True, 3), (False, 7), (True, 30), (False, 100)), cfg)
    (i, s), *_ = of(actions, Start)
    assert i == 52 and s.speech_start == 50 * N


def test_right_after_a_commit_a_new_turn_needs_more_trigger_frames() -> None:
    # a sentence (frames 100..179, committed at frame 250), then two bursts of 10 trigger
    # frames: 9 of 15 start a turn, but within after_turn_ms of a commit it takes 12
    cfg = GateConfig(**{**CFG.__dict__, "after_turn_ms": 2000, "after_turn_voiced_ratio": 0.8})
    burst = ((True, 10),)
    decisions = seq((False, 100), (True, 80), (False, 120), *burst, (False, 150), *burst, (False, 200))
    _, actions = run(decisions, cfg)
    assert [c.at for _, c in of(actions, Commit)] == [250 * N]
    # the burst 0.5 s after the commit starts nothing; the one 2.1 s after starts on its 9th frame
    assert [i for i, _ in of(actions, Start)] == [108, 468]
    # while the reply plays the echo-aware gate decides, not this rule: the first burst is a barge-in
    _, playing = run(decisions, cfg, playing=[300 <= i < 320 for i in range(len(decisions))])
    assert [(i, s.barge_in) for i, s in of(playing, Start)] == [(108, False), (308, True), (468, False)]
    # after_turn_ms 0 turns the rule off
    _, off = run(decisions, GateConfig(**{**cfg.__dict__, "after_turn_ms": 0}))
    assert [i for i, _ in of(off, Start)] == [108, 308, 468]


def test_a_discarded_burst_does_not_make_the_next_turn_wait() -> None:
    cfg = GateConfig(**{**CFG.__dict__, "after_turn_ms": 2000, "after_turn_voiced_ratio": 0.8})
    _, actions = run(seq((False, 100), (True, 10), (False, 100), (True, 10), (False, 100)), cfg)
    assert len(of(actions, Discard)) == 2
    assert [i for i, _ in of(actions, Start)] == [108, 218]
