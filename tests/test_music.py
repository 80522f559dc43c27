"""Music the denoised hearing takes for a voice opens no turn; a voice is untouched by the
check that stops it (held notes: music.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.config import Config, load_config
from edged.frames import FRAME_SAMPLES
from edged.music import HISTORY_SAMPLES, HeldNotes
from edged.replay import replay_file
from edged.tones import ToneEar
from edged.wavio import read_mono

DATA = Path(__file__).parent / "data"
MUSIC = DATA / "music_robot_16s.wav"
UNCHECKED = ["detector.held_notes_share=0"]


def shares(x: np.ndarray, every_frames: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """held_share every `every_frames` frames once the history is full, and each frame's level."""
    ear = ToneEar(0, HISTORY_SAMPLES)
    notes, out, levels = HeldNotes(ear), [], []
    for n, k in enumerate(range(0, len(x) - FRAME_SAMPLES + 1, FRAME_SAMPLES)):
        frame = x[k : k + FRAME_SAMPLES]
        ear.push(frame)
        if k >= HISTORY_SAMPLES and n % every_frames == 0:
            out.append(notes.held_share())
            levels.append(10 * np.log10(np.mean(frame.astype(np.float64) ** 2) + 1e-12))
    return np.array(out), np.array(levels)


def test_music_the_denoised_hearing_takes_for_a_voice_opens_no_turn() -> None:
    unchecked = replay_file(load_config(None, UNCHECKED), MUSIC)
    assert unchecked.summary["turns"] >= 2, "the excerpt no longer fools the denoised hearing"
    shipped = replay_file(Config(), MUSIC)
    assert shipped.summary["turns"] == 0
    assert shipped.summary["uploaded_ms"] == 0


def test_the_check_changes_no_turn_of_the_bundled_speech(demo_wav) -> None:
    unchecked = replay_file(load_config(None, UNCHECKED), demo_wav)
    shipped = replay_file(Config(), demo_wav)
    assert len(shipped.turns) >= 10
    assert shipped.turns == unchecked.turns


def test_music_holds_its_partials_and_a_voice_moves_them(demo_audio) -> None:
    bar = Config().detector.held_notes_share
    music, _ = read_mono(MUSIC)
    assert np.median(shares(music)[0]) > bar + 0.1
    # the loud frames of the bundled speech: the harmonics glide and the vowels change
    speech, _ = demo_audio
    held, level = shares(speech)
    loud = held[level > level.max() - 20]
    assert len(loud) > 100
    assert np.median(loud) < bar - 0.15
    assert np.mean(loud >= bar) < 0.05


def test_a_held_chord_is_held() -> None:
    """(A steady sung vowel is held too: the check stops only turns the denoised hearing alone
    would start, and real speech moves its harmonics within 90 ms, as the test above shows.)"""
    t = np.arange(2 * 16000) / 16000
    chord = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((220.0, 277.2, 329.6, 440.0), 1))
    assert min(shares((0.1 * chord).astype(np.float32))[0]) > 0.8


def test_nothing_is_held_before_the_history_is_full_or_in_silence() -> None:
    ear = ToneEar(0, HISTORY_SAMPLES)
    notes = HeldNotes(ear)
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(HISTORY_SAMPLES) / 16000)).astype(np.float32)
    for k in range(0, HISTORY_SAMPLES - FRAME_SAMPLES, FRAME_SAMPLES):
        ear.push(tone[k : k + FRAME_SAMPLES])
        assert notes.held_share() == 0.0
    ear.push(tone[-FRAME_SAMPLES:])
    assert notes.held_share() == 1.0
    quiet_ear = ToneEar(0, HISTORY_SAMPLES)
    quiet = HeldNotes(quiet_ear)
    for _ in range(HISTORY_SAMPLES // FRAME_SAMPLES + 5):
        quiet_ear.push(np.zeros(FRAME_SAMPLES, np.float32))
    assert quiet.held_share() == 0.0
    with pytest.raises(ValueError, match="samples of the room"):
        HeldNotes(ToneEar(2))  # the tone check alone keeps too little of it
