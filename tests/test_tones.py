"""A chime, a beep or a ringtone never opens a turn, though Silero may take it for a voice;
a voice is untouched by the check that stops it."""

from __future__ import annotations

import numpy as np
import pytest
from chime import RATE, hummed_chime, quiet_room_with, telephone_ring
from scipy.signal import lfilter

from edged.config import Config, load_config
from edged.frames import FRAME_SAMPLES
from edged.replay import replay_file, replay_signal
from edged.tones import LONG_WINDOW_SAMPLES, WINDOW_SAMPLES, ToneEar, partial_count


@pytest.mark.parametrize(
    ("sound", "peak_dbfs"),
    [(hummed_chime, -25.0), (hummed_chime, -10.0), (telephone_ring, -10.0)],
    ids=["chime-25", "chime-10", "ring-10"],
)
def test_a_chime_or_a_ring_that_fools_silero_opens_no_turn(sound, peak_dbfs: float) -> None:
    room = quiet_room_with(sound(), peak_dbfs, times=8)
    unchecked = replay_signal(load_config(None, ["detector.tone_max_partials=0"]), room, RATE)
    assert unchecked.summary["turns"] >= 3, "the sound no longer fools Silero: the test proves nothing"
    shipped = replay_signal(Config(), room, RATE)
    assert shipped.summary["turns"] == 0
    assert shipped.summary["uploaded_ms"] == 0


def test_the_check_changes_no_turn_of_the_bundled_speech(demo_wav) -> None:
    unchecked = replay_file(load_config(None, ["detector.tone_max_partials=0"]), demo_wav)
    shipped = replay_file(Config(), demo_wav)
    assert len(shipped.turns) >= 10
    assert shipped.turns == unchecked.turns


def test_partials_of_a_tone_and_of_a_voice(demo_audio) -> None:
    t = np.arange(WINDOW_SAMPLES) / RATE
    assert partial_count(np.sin(2 * np.pi * 440 * t).astype(np.float32)) == 1
    two = np.sin(2 * np.pi * 200 * t) + 0.5 * np.sin(2 * np.pi * 400 * t)
    assert partial_count(two.astype(np.float32)) == 2
    # the loud frames of the bundled speech are voiced: a comb of harmonics under the formants
    x, rate = demo_audio
    assert rate == RATE
    frames = x[: len(x) // WINDOW_SAMPLES * WINDOW_SAMPLES].reshape(-1, WINDOW_SAMPLES)
    level = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = frames[level > level.max() - 15]
    counts = np.array([partial_count(f) for f in loud])
    assert len(counts) > 50
    assert np.mean(counts <= 2) < 0.2
    assert np.median(counts) >= 4
    with pytest.raises(ValueError, match="512 or 1024 samples"):
        partial_count(np.zeros(160, np.float32))


def test_a_frame_without_partials_is_a_tone_only_amid_one() -> None:
    """A chime's notes change or fade through frames with no prominent partial; a fricative
    or a whisper has none either, and must not be taken for a tone."""
    t = np.arange(160 * 40) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    flat = np.zeros(160, np.float32)  # no partial at all
    ear = ToneEar(2)
    for k in range(20):
        ear.push(tone[k * 160 : (k + 1) * 160])
        assert ear.tonal() or k < WINDOW_SAMPLES // 160  # once the window holds only the tone
    for _ in range(4):
        ear.push(flat)
    assert ear.tonal()  # no partial at all, amid the tone
    fresh = ToneEar(2)
    for _ in range(4):
        fresh.push(flat)
    assert not fresh.tonal()  # on its own
    assert not ToneEar(0).tonal()  # 0: the check is off


def vowel(f0_hz: float, formants_hz: tuple[float, float, float], seconds: float = 1.0) -> np.ndarray:
    """A glottal pulse train gliding up 20 % with a 5 Hz wobble, through three formant
    resonances: the comb of harmonics a voice holds, at a pitch of our choosing."""
    n = int(seconds * RATE)
    i = np.arange(n)
    f0 = f0_hz * (1 + 0.01 * np.sin(2 * np.pi * 5 * i / RATE) + 0.2 * i / n)
    pulses = np.diff(np.floor(np.cumsum(f0 / RATE)), prepend=0.0)
    x = pulses
    for f, bandwidth in zip(formants_hz, (80.0, 90.0, 120.0), strict=True):
        r = np.exp(-np.pi * bandwidth / RATE)
        x = lfilter([1 - r], [1, -2 * r * np.cos(2 * np.pi * f / RATE), r * r], x)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


VOWELS_HZ = [(700.0, 1220.0, 2600.0), (300.0, 870.0, 2240.0), (270.0, 2290.0, 3010.0)]  # "a", "u", "i"


@pytest.mark.parametrize("f0_hz", [70.0, 85.0, 110.0, 220.0])
@pytest.mark.parametrize("formants_hz", VOWELS_HZ)
def test_a_deep_voice_is_not_a_tone(f0_hz: float, formants_hz: tuple[float, float, float]) -> None:
    """32 ms cannot resolve the harmonics of a voice under about 100 Hz: there such a vowel
    often shows one or two partials, like a chime. 64 ms resolves them."""
    v = vowel(f0_hz, formants_hz)
    ear = ToneEar(2)
    verdicts, short_counts = [], []
    for k in range(0, len(v) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        ear.push(v[k : k + FRAME_SAMPLES])
        if k >= LONG_WINDOW_SAMPLES:
            verdicts.append(ear.tonal())
            short_counts.append(partial_count(ear.window[-WINDOW_SAMPLES:]))
    assert not any(verdicts)
    if f0_hz < 90:  # the short window alone would have taken it for a tone, often
        assert np.mean([1 <= c <= 2 for c in short_counts]) > 0.1
