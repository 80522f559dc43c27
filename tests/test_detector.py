"""The detector on real audio: the real webrtcvad, real speech in real kitchen noise."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edged.config import ConfigError, DetectorConfig, load_config
from edged.denoise import Denoiser
from edged.detector import NoiseFloor, PeakGain, RemovedEnergy, ShortMemories, SpeechDetector, level_dbfs
from edged.frames import FRAME_SAMPLES, RATE_HZ
from edged.silero import CHUNK, SileroBank, SileroVad
from edged.wavio import read_mono

DATA = Path(__file__).parent / "data"


def decide(x: np.ndarray, cfg: DetectorConfig | None = None):
    det = SpeechDetector(cfg or DetectorConfig())
    return [det.process(f) for f in _frames(x)]


def label_mask(labels, n_frames: int) -> np.ndarray:
    m = np.zeros(n_frames, bool)
    for u in labels["utterances"]:
        for s, e in u["speech"]:
            m[round(s * 100) : round(e * 100)] = True
    return m


def test_speech_frames_flagged_and_noise_mostly_not(demo_audio, demo_labels) -> None:
    x, rate = demo_audio
    assert rate == RATE_HZ
    d = decide(x)
    speech = np.array([f.speech for f in d])
    truth = label_mask(demo_labels, len(d))
    recall = speech[truth].mean()
    # labels include soft word endings within 35 dB of the peak; turn-level recall is
    # what users feel (test_replay), so here: most speech frames, few noise frames, and
    # those few next to a sentence (its reverberant tail and the hold through trailing
    # silence), not in the kitchen noise half a second or more away from any
    near = np.convolve(truth, np.ones(101), "same") > 0
    assert recall > 0.5, recall
    assert speech[~truth].mean() < 0.12, speech[~truth].mean()
    assert speech[~near].mean() < 0.05, speech[~near].mean()


def test_energy_gate_blocks_what_webrtcvad_passes(demo_audio, demo_labels) -> None:
    """webrtcvad alone flags kitchen noise; the gate over the noise floor removes most of it."""
    x, _ = demo_audio
    d = decide(x)
    noise = ~label_mask(demo_labels, len(d))
    vad_only = np.array([f.vad for f in d])[noise].mean()
    gated = np.array([f.vad and f.loud for f in d])[noise].mean()
    assert gated < vad_only / 2


def test_digital_silence_and_quiet_hiss_are_never_speech() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([np.zeros(RATE_HZ), 1e-4 * rng.standard_normal(RATE_HZ)]).astype(np.float32)
    assert not any(f.speech for f in decide(x))


def test_noise_floor_follows_room_down_fast_and_up_slowly() -> None:
    fl = NoiseFloor(rise_db_per_s=2.0, fall_db_per_s=20.0)
    for _ in range(100):
        fl.update(-40.0)
    assert fl.value_dbfs == -40.0
    for _ in range(100):  # one second of a room 20 dB quieter
        fl.update(-60.0)
    assert fl.value_dbfs == -60.0
    for _ in range(100):  # one second of speech 30 dB louder lifts the floor by only 2 dB
        fl.update(-30.0)
    assert abs(fl.value_dbfs - (-58.0)) < 1e-6


def test_level_dbfs_of_full_scale_sine() -> None:
    t = np.arange(FRAME_SAMPLES * 10) / RATE_HZ
    assert abs(level_dbfs(np.sin(2 * np.pi * 500 * t)) - (-3.01)) < 0.05


def test_silero_sees_the_same_chunks_whatever_the_frame_size(demo_audio) -> None:
    """10 ms frames are re-cut into the model's 512-sample chunks with its 64-sample context."""
    x, _ = demo_audio
    x = x[: 16000 * 3]
    a, b = SileroVad(), SileroVad()
    probs_a = []
    for i in range(0, len(x) - 159, 160):
        if a.process(x[i : i + 160]):
            probs_a.append(a.probability)
    probs_b = []
    for i in range(0, len(x) - 299, 300):
        if b.process(x[i : i + 300]):
            probs_b.append(b.probability)
    n = min(len(probs_a), len(probs_b))
    assert n >= 80
    np.testing.assert_allclose(probs_a[:n], probs_b[:n], atol=1e-5)
    assert a.inferences == len(probs_a) == (len(x) // 160 * 160) // 512


def test_silero_says_speech_on_speech_and_not_on_music(demo_audio, demo_labels) -> None:
    x, _ = demo_audio
    v = SileroVad()
    probs = []
    for i in range(0, len(x) - 159, 160):
        v.process(x[i : i + 160])
        probs.append(v.probability)
    truth = label_mask(demo_labels, len(probs))
    p = np.array(probs)
    assert np.median(p[truth]) > 0.5
    assert np.mean(p[~truth] > 0.3) < 0.05


def test_silero_recalls_a_memory_and_hears_as_it_did_then(demo_audio) -> None:
    """Twenty seconds of music change how the model hears the speech that follows; with the
    memory from before the music recalled, it hears that speech as if the music had not been."""
    x, _ = demo_audio
    music, _ = read_mono(DATA / "music_8k_20s.wav")
    before = x[2 * RATE_HZ : 2 * RATE_HZ + 60 * 512]  # the first request
    after = x[int(8.8 * RATE_HZ) : int(8.8 * RATE_HZ) + 60 * 512]  # the second

    def hear(v: SileroVad, y: np.ndarray) -> np.ndarray:
        out = []
        for i in range(0, len(y) // 512 * 512, 512):
            v.process(y[i : i + 512])
            out.append(v.probability)
        return np.array(out)

    direct, deafened, recalled = SileroVad(), SileroVad(), SileroVad()
    for v in (direct, deafened, recalled):
        hear(v, before)
    memory = recalled.memory()
    hear(deafened, music)
    hear(recalled, music)
    recalled.recall(memory)
    p_direct, p_deafened, p_recalled = hear(direct, after), hear(deafened, after), hear(recalled, after)
    assert np.mean(np.abs(p_deafened - p_direct)) > 0.3  # the music's memory matters ...
    np.testing.assert_allclose(p_recalled, p_direct, atol=0.05)  # ... and is gone once recalled


def test_silero_hears_each_frame_at_its_own_gain(demo_audio) -> None:
    """The gain is applied per chunk, not per frame: a chunk spanning frames of different
    gains, the clipping at full scale and the context carried into the next chunk must be
    heard exactly as if each frame had been scaled on its own."""
    x, _ = demo_audio
    x = x[: 16000 * 3]
    per_chunk, per_frame = SileroVad(), SileroVad()
    rng = np.random.default_rng(7)
    a, b = [], []
    for i in range(0, len(x) - 159, 160):
        frame = x[i : i + 160]
        g = float(10 ** (rng.uniform(0, 40) / 20))  # up to 40 dB: loud frames clip
        if per_chunk.process(frame, g):
            a.append(per_chunk.probability)
        if per_frame.process(np.clip(frame * np.float32(g), -1.0, 1.0)):
            b.append(per_frame.probability)
    assert len(a) == len(b) >= 80
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert np.ptp(a) > 0.5  # the chunks were heard, not all the same


def test_a_bank_hears_each_row_as_a_model_of_its_own(demo_audio) -> None:
    """Rows batched into one inference hear exactly as separate models would: each stream at
    its own gain, and a row wiped halfway as a model whose memory was wiped then."""
    x, _ = demo_audio
    x = x[: 16000 * 3]
    bank = SileroBank([0, 0, 1])
    swapped = SileroBank([1, 0])  # rows need not follow the streams' order
    plain, wiped, quiet = SileroVad(), SileroVad(), SileroVad()
    rows, alone, swapped_rows = [], [], []
    for i in range(0, len(x) - 159, 160):
        f = x[i : i + 160]
        if bank.inferences == 40 and wiped.inferences == 40:
            bank.wipe(1)
            wiped.wipe(0)
        ran = bank.process((f, f * np.float32(0.1)), (2.0, 8.0))
        assert swapped.process((f, f * np.float32(0.1)), (2.0, 8.0)) == ran
        assert (
            plain.process(f, 2.0) == wiped.process(f, 2.0) == quiet.process(f * np.float32(0.1), 8.0) == ran
        )
        if ran:
            rows.append(bank.probabilities.copy())
            swapped_rows.append(swapped.probabilities.copy())
            alone.append([plain.probability, wiped.probability, quiet.probability])
    rows, alone = np.array(rows), np.array(alone)
    assert len(rows) >= 80
    np.testing.assert_allclose(rows, alone, atol=1e-6)
    np.testing.assert_allclose(swapped_rows, alone[:, [2, 0]], atol=1e-6)
    assert np.abs(rows[41:, 0] - rows[41:, 1]).max() > 0.05  # the wipe changed what row 1 heard


def test_the_short_memory_that_speaks_has_heard_one_to_two_spans() -> None:
    """The two short memories are wiped in turn, each every two spans, in every hearing at once;
    the one that speaks has always heard at least one span and less than two."""
    span = 10
    bank = SileroBank([0, 0, 0, 1, 1, 1])
    short = ShortMemories(span, rows_per_hearing=3)
    rng = np.random.default_rng(1)
    wiped_at: dict[int, list[int]] = {1: [], 2: [], 4: [], 5: []}
    speaking = []
    for chunk in range(1, 7 * span + 1):
        f = (0.05 * rng.standard_normal(CHUNK)).astype(np.float32)
        assert bank.process((f, f), (1.0, 1.0))
        short.chunk_heard(bank)
        state = bank.memory()
        for row, times in wiped_at.items():
            if not state[:, row].any():
                times.append(chunk)
        speaking.append((chunk, short.row(0), short.row(1)))
    assert wiped_at[1] == wiped_at[4] == list(range(2 * span, 7 * span + 1, 2 * span))
    assert wiped_at[2] == wiped_at[5] == list(range(span, 7 * span + 1, 2 * span))
    for chunk, plain_row, denoised_row in speaking:
        assert denoised_row == plain_row + 3
        last = max([w for w in wiped_at[plain_row] if w <= chunk], default=0 if plain_row == 1 else -span)
        assert span <= chunk - last < 2 * span or chunk < span  # in the first span both are younger


def test_a_short_memory_may_not_hold_a_turn_more_readily_than_it_starts_one() -> None:
    for key in ("fresh_hold_probability", "fresh_denoised_hold_probability"):
        start = key.replace("hold", "start")
        with pytest.raises(ConfigError, match=rf"detector\.{key} = 0\.99: must not exceed detector\.{start}"):
            load_config(None, [f"detector.{key}=0.99"])


def test_peak_gain_brings_loud_parts_to_target_and_recovers_slowly() -> None:
    g = PeakGain(target_dbfs=-5.0, release_db_per_s=1.0, max_gain_db=40.0)

    def heard(level: float) -> float:
        return level + 20 * np.log10(g.gain(level))

    assert abs(heard(-45.0) - (-5.0)) < 0.1
    heard(-15.0)  # the follower jumps to -15 dBFS at once
    for _ in range(100):  # one second later it has released by 1 dB
        out = heard(-45.0)
    assert abs(out - (-45 + 10 + 1)) < 0.2
    g2 = PeakGain(-5.0, 1.0, 40.0)
    assert g2.gain(level_dbfs(np.zeros(FRAME_SAMPLES))) == 10 ** (40 / 20)  # capped at max_gain_db


@pytest.mark.parametrize("mode", ["combined", "webrtcvad", "silero"])
def test_modes_decide_from_their_stages(demo_audio, mode: str) -> None:
    x, _ = demo_audio
    det = SpeechDetector(DetectorConfig(mode=mode, denoise_level=4))
    ds = [det.process(x[i : i + FRAME_SAMPLES]) for i in range(0, 16000 * 8, FRAME_SAMPLES)]
    if mode == "webrtcvad":
        assert all(d.probability == 0.0 for d in ds)
        assert all(d.trigger == d.speech == (d.vad and d.loud) for d in ds)
    else:
        assert any(d.probability > 0.9 for d in ds)
        cfg = DetectorConfig()
        talking_start = max(cfg.start_probability, cfg.talking_start_probability)
        heard = [
            (d.probability >= talking_start)
            if d.room_talking and d.level_dbfs < d.noise_floor_dbfs + cfg.talking_room_over_floor_db
            else (
                d.probability >= cfg.start_probability
                or d.denoised_probability >= cfg.denoised_start_probability
            )
            for d in ds
        ]
        assert all(d.trigger == (h and not d.tonal) for d, h in zip(ds, heard, strict=True))
        assert not any(d.tonal and not h for d, h in zip(ds, heard, strict=True))
        # a voice is seldom taken for a tone (tones.py): most frames the second stage hears stay
        assert sum(d.tonal for d in ds) < 0.05 * sum(heard)
    assert any(d.trigger for d in ds)


def _frames(x: np.ndarray):
    return (x[i : i + FRAME_SAMPLES] for i in range(0, len(x) - FRAME_SAMPLES + 1, FRAME_SAMPLES))


def test_denoiser_takes_out_a_running_tap_and_keeps_speech(demo_audio, demo_labels) -> None:
    tap, _ = read_mono(DATA / "running_tap_20s.wav")
    dn = Denoiser(4)
    out = np.concatenate([dn.process(f) for f in _frames(tap)])
    settled = slice(2 * RATE_HZ, None)  # the suppressor learns the noise first
    assert level_dbfs(out[settled]) < level_dbfs(tap[settled]) - 10.0
    x, _ = demo_audio
    u = demo_labels["utterances"][0]
    speech = x[int(u["start_s"] * RATE_HZ) : int(u["end_s"] * RATE_HZ)]
    dn = Denoiser(4)
    kept = np.concatenate([dn.process(f) for f in _frames(np.concatenate([x[: 2 * RATE_HZ], speech]))])
    assert level_dbfs(kept[2 * RATE_HZ :]) > level_dbfs(speech) - 3.0
    with pytest.raises(ValueError, match="160-sample"):
        dn.process(np.zeros(80, dtype=np.float32))


def test_a_talking_room_cannot_start_turns_on_the_denoised_hearing(demo_audio, demo_labels) -> None:
    """Six voices at once (babble, a TV) make the room "talking": then only the plain hearing
    may start a turn, and only on a voice it is surer of than in a quiet room. One user
    talking on and on does not make the room talking: their own pauses keep it below the
    share. A quiet room is not talking once the window has passed; at switch-on the room
    counts as talking until it has been heard."""
    x, _ = demo_audio
    cfg = DetectorConfig(denoise_level=4)
    tap, _ = read_mono(DATA / "running_tap_20s.wav")
    babble, _ = read_mono(DATA / "babble_20s.wav")
    user = np.concatenate(
        [x[int(u["start_s"] * RATE_HZ) : int(u["end_s"] * RATE_HZ)] for u in demo_labels["utterances"]]
    )
    quiet_room = tap[: 8 * RATE_HZ] * np.float32(0.1)
    det = SpeechDetector(cfg)
    quiet = [det.process(f) for f in _frames(quiet_room)]
    assert quiet[0].room_talking
    assert not any(d.room_talking for d in quiet[-300:])
    talking = [det.process(f) for f in _frames(babble)]
    # from a quiet room the share needs -ln(1 - 0.85) = 1.9 windows of talk (9.5 s)
    assert all(d.room_talking for d in talking[11 * RATE_HZ // FRAME_SAMPLES :])
    assert cfg.talking_start_probability > cfg.start_probability
    for d in talking:
        if d.room_talking and d.level_dbfs < d.noise_floor_dbfs + cfg.talking_room_over_floor_db:
            assert d.trigger == (d.probability >= cfg.talking_start_probability and not d.tonal)
    # the plain hearing reads between the two thresholds on some of this babble: those frames
    # would have started a turn in a quiet room
    assert any(cfg.start_probability <= d.probability < cfg.talking_start_probability for d in talking)
    det = SpeechDetector(cfg)
    for f in _frames(quiet_room):
        det.process(f)
    monologue = [det.process(f) for f in _frames(user)]
    assert np.mean([d.room_talking for d in monologue]) < 0.1


def test_a_voice_far_over_a_talking_room_is_heard_as_in_a_quiet_room(demo_audio, demo_labels) -> None:
    """Background talk seldom stands 20 dB over the room's floor; a user close to the device
    does. There the denoised hearing may start a turn even while the room is talking, for a
    voice the plain hearing barely hears (see the module note)."""
    x, _ = demo_audio
    cfg = DetectorConfig(denoise_level=4)
    babble, _ = read_mono(DATA / "babble_20s.wav")
    u = demo_labels["utterances"][1]
    user = x[int(u["start_s"] * RATE_HZ) : int(u["end_s"] * RATE_HZ)]
    user = user * np.float32(10 ** ((level_dbfs(babble) + 25.0 - level_dbfs(user)) / 20))
    scene = babble.copy()
    at = 12 * RATE_HZ  # the room has been talking for long enough
    scene[at : at + len(user)] += user

    def over_the_talk(over_floor_db: float) -> list:
        det = SpeechDetector(replace(cfg, talking_room_over_floor_db=over_floor_db))
        ds = [det.process(f) for f in _frames(scene)]
        return [d for d in ds[at // FRAME_SAMPLES : (at + len(user)) // FRAME_SAMPLES] if d.room_talking]

    heard = over_the_talk(cfg.talking_room_over_floor_db)
    loud = [d for d in heard if d.level_dbfs >= d.noise_floor_dbfs + cfg.talking_room_over_floor_db]
    assert len(loud) > 20  # the room still counts as talking while the user speaks over it
    for d in loud:
        heard_voice = (
            d.probability >= cfg.start_probability or d.denoised_probability >= cfg.denoised_start_probability
        )
        assert d.trigger == (heard_voice and not d.tonal)
    # frames the plain hearing alone would not have let start a turn
    assert any(d.trigger and d.probability < cfg.talking_start_probability for d in loud)
    strict = over_the_talk(120.0)
    assert all(d.trigger == (d.probability >= cfg.talking_start_probability and not d.tonal) for d in strict)
    assert sum(d.trigger for d in heard) > sum(d.trigger for d in strict)


def test_denoised_hearing_is_on_by_default_and_level_0_turns_it_off(demo_audio) -> None:
    x, _ = demo_audio
    ds = decide(x[: 5 * RATE_HZ])
    assert any(d.denoised_probability > 0.5 for d in ds)
    off = decide(x[: 5 * RATE_HZ], DetectorConfig(denoise_level=0))
    assert all(d.denoised_probability == 0.0 and not d.room_talking for d in off)
    assert any(d.trigger for d in off)


def test_noise_floor_starts_at_the_first_sound_not_at_digital_silence() -> None:
    fl = NoiseFloor(rise_db_per_s=2.0, fall_db_per_s=20.0)
    fl.update(-120.0)
    fl.update(-120.0)
    assert fl.update(-45.0) == -45.0


def test_the_noise_floor_catches_up_with_a_room_louder_than_it_started(demo_audio) -> None:
    """A microphone that fades in (every file of the development corpus does) started the
    floor far below the room, and its slow rise took half a minute to get there. The
    window's minimum, less the first quarter second, brings it to the room by the end of
    the warm-up; on speech, which leaves quieter moments, it changes nothing."""
    room, _ = read_mono(DATA / "running_tap_20s.wav")
    faded = room.copy()
    fade = 5 * FRAME_SAMPLES  # 50 ms
    faded[:fade] *= np.linspace(0.0, 1.0, fade, dtype=np.float32) ** 3
    det = SpeechDetector(DetectorConfig(mode="webrtcvad"))
    floor = np.array([det.process(f).noise_floor_dbfs for f in _frames(faded)])
    settled = NoiseFloor(2.0, 20.0)  # the floor of a detector started in this room
    for f in _frames(room):
        settled.update(level_dbfs(f))
    warm = DetectorConfig().warmup_ms // 10
    assert floor[5] < settled.value_dbfs - 30  # it started far below the room ...
    assert np.all(np.abs(floor[warm:] - settled.value_dbfs) < 3.0)  # ... and caught up
    slow = NoiseFloor(2.0, 20.0)
    lagging = [slow.update(level_dbfs(f)) for f in _frames(faded)]
    assert lagging[20 * 100 - 1] < settled.value_dbfs - 10  # the slow rise alone had not in 20 s
    x, _ = demo_audio
    levels = [level_dbfs(f) for f in _frames(x)]
    plain, windowed = NoiseFloor(2.0, 20.0), NoiseFloor(2.0, 20.0, window_ms=5000)
    assert [plain.update(v) for v in levels] == [windowed.update(v) for v in levels]


def test_removed_energy_is_measured_over_the_last_second_and_the_room_over_five() -> None:
    r = RemovedEnergy()
    for _ in range(300):  # a room the suppressor takes 9 dB out of
        r.push(1e-4, 1e-4 * 10 ** (-9 / 10))
    assert r.db == pytest.approx(9.0) and r.room_db == pytest.approx(9.0)
    for _ in range(50):  # a voice over it, barely touched: half a second in, the window is mixed
        r.push(1e-2, 1e-2 * 10 ** (-0.5 / 10))
    assert 0.5 < r.db < 1.0
    for _ in range(50):  # a second of the voice alone
        r.push(1e-2, 1e-2 * 10 ** (-0.5 / 10))
    assert r.db == pytest.approx(0.5, abs=1e-6) and r.room_db == pytest.approx(9.0)
    for _ in range(500):  # five seconds on, the room is the voice's
        r.push(1e-2, 1e-2 * 10 ** (-0.5 / 10))
    assert r.room_db == pytest.approx(0.5, abs=1e-6)
    for _ in range(100):  # digital silence removes nothing
        r.push(0.0, 0.0)
    assert r.db == pytest.approx(0.0, abs=0.01)


def test_a_fresh_detector_listens_before_it_may_start_a_turn() -> None:
    x, rate = read_mono(DATA / "babble_20s.wav")
    assert rate == RATE_HZ
    # a switch-on counts the room as talking, whose stricter start threshold would hide what the
    # warm-up is for: here the plain threshold applies throughout
    plain = DetectorConfig().start_probability
    cold = [d.trigger for d in decide(x, DetectorConfig(warmup_ms=0, talking_start_probability=plain))]
    warm = decide(x, DetectorConfig(talking_start_probability=plain))
    # six talkers at once: fresh from start Silero takes them for a voice within 0.1 s ...
    assert any(cold[:10])
    # ... the warm-up lets nothing start a turn for its first 500 ms, and changes nothing else
    assert not any(d.trigger for d in warm[:50])
    assert [d.trigger for d in warm[50:]] == cold[50:]


def test_a_voice_at_the_very_start_is_still_uploaded_from_its_onset(demo_audio, demo_labels) -> None:
    from edged.config import Config
    from edged.gate import Start
    from edged.pipeline import Pipeline

    x, rate = demo_audio
    onset_s = demo_labels["utterances"][0]["start_s"]
    clip = x[round((onset_s - 0.05) * rate) : round((onset_s + 3.0) * rate)]  # speech from 50 ms in
    p = Pipeline(Config(), rate, rate)
    starts = [a for r in p.process(clip) for a in r.actions if isinstance(a, Start)]
    assert starts and p.to_input_ms(starts[0].at) >= 500
    assert p.to_input_ms(starts[0].upload_start) <= 50
