"""Streaming resampling gives the same samples as filtering the whole signal at once."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.frames import Framer
from edged.resample import StreamingResampler, resample_whole
from edged.upload import API_RATE_HZ, UploadEncoder

# float32 arithmetic in a different order: differences stay around 1e-7 of full scale
TOLERANCE = 1e-6
RATE_PAIRS = [(48000, 16000), (44100, 16000), (16000, 24000), (8000, 16000), (22050, 16000), (16000, 16000)]


def stream(rs: StreamingResampler, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        out.append(rs.process(x[i : i + n]))
        i += n
        k += 1
    return np.concatenate(out)


@pytest.mark.parametrize(("rate_in", "rate_out"), RATE_PAIRS)
def test_frame_by_frame_equals_whole_signal(rate_in: int, rate_out: int) -> None:
    rng = np.random.default_rng(rate_in + rate_out)
    x = (0.3 * rng.standard_normal(rate_in)).astype(np.float32)
    whole = resample_whole(x, rate_in, rate_out)
    framed = stream(StreamingResampler(rate_in, rate_out), x, [rate_in // 100])
    assert len(framed) == len(whole) == -(-len(x) * rate_out // rate_in)
    assert np.max(np.abs(framed - whole)) < TOLERANCE


@settings(max_examples=40, deadline=None)
@given(
    pair=st.sampled_from(RATE_PAIRS),
    sizes=st.lists(st.integers(min_value=1, max_value=1500), min_size=1, max_size=8),
)
def test_any_chunking_gives_the_same_output(pair: tuple[int, int], sizes: list[int]) -> None:
    rate_in, rate_out = pair
    x = (0.3 * np.random.default_rng(1).standard_normal(rate_in // 4)).astype(np.float32)
    framed = stream(StreamingResampler(rate_in, rate_out), x, sizes)
    whole = resample_whole(x, rate_in, rate_out)
    assert len(framed) == len(whole)
    assert np.max(np.abs(framed - whole)) < TOLERANCE


@pytest.mark.parametrize(("rate_in", "rate_out"), [(48000, 16000), (44100, 16000), (16000, 24000)])
def test_passband_tone_keeps_level_and_stated_delay(rate_in: int, rate_out: int) -> None:
    f = 1000.0
    t = np.arange(rate_in) / rate_in
    x = np.sin(2 * np.pi * f * t).astype(np.float32)
    rs = StreamingResampler(rate_in, rate_out)
    y = stream(rs, x, [480])
    n = np.arange(len(y))
    # output sample n sits at input time (n - delay) / rate_out
    expected = np.sin(2 * np.pi * f * (n - rs.delay_out_samples) / rate_out)
    mid = slice(len(y) // 4, 3 * len(y) // 4)
    assert np.max(np.abs(y[mid] - expected[mid])) < 1e-3


def test_downsampling_rejects_what_16k_cannot_hold() -> None:
    rate = 48000
    t = np.arange(rate) / rate
    x = np.sin(2 * np.pi * 12000 * t).astype(np.float32)  # would alias to 4 kHz
    y = resample_whole(x, rate, 16000)
    assert np.sqrt(np.mean(y[1000:-1000] ** 2)) < 10 ** (-60 / 20)


def test_upload_encoder_turn_is_exact_length_and_aligned() -> None:
    x = (0.5 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)).astype(np.float32)
    enc = UploadEncoder()
    enc.start()
    pcm = b"".join(enc.encode(x[i : i + 160]) for i in range(0, len(x), 160)) + enc.finish()
    y = np.frombuffer(pcm, dtype="<i2") / 32768.0
    assert len(y) == API_RATE_HZ  # one second in, one second out
    ref = 0.5 * np.sin(2 * np.pi * 440 * np.arange(API_RATE_HZ) / API_RATE_HZ)
    assert np.max(np.abs(y[200:-200] - ref[200:-200])) < 2e-3


def test_framer_keeps_remainder_between_chunks() -> None:
    fr = Framer(160)
    x = np.arange(1000, dtype=np.float32)
    frames = fr.push(x[:250]) + fr.push(x[250:330]) + fr.push(x[330:])
    assert len(frames) == 6
    np.testing.assert_array_equal(np.concatenate(frames), x[:960])
