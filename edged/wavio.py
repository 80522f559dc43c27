"""WAV files in and out as float32 mono, whatever their rate, width or channel count."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
from scipy.io import wavfile

EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69  # audio devices cannot be opened


class AudioFileError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def read_mono(path: str | Path) -> tuple[np.ndarray, int]:
    """(samples in ±1, rate). Channels are averaged: a speaker's mic array downmixed."""
    p = Path(path)
    if not p.is_file():
        raise AudioFileError(f"{path}: no such file", EX_NOINPUT)
    try:
        rate, data = wavfile.read(p)
    except (ValueError, OSError, EOFError, struct.error) as e:  # struct.error: truncated header
        raise AudioFileError(f"{path}: not a readable WAV file ({e})", EX_DATAERR) from None
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype.kind == "i":
        x = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    elif data.dtype.kind == "f":
        x = data.astype(np.float32)
    else:
        raise AudioFileError(f"{path}: unsupported sample type {data.dtype}", EX_DATAERR)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if rate <= 0:
        raise AudioFileError(f"{path}: invalid sample rate {rate}", EX_DATAERR)
    return np.ascontiguousarray(x, dtype=np.float32), int(rate)


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """±1 floats to little-endian int16 (full scale clips, never wraps). Per 10 ms frame in
    the frame loop: two ufuncs cost a fifth of `np.clip`'s Python-level wrapper."""
    return (np.minimum(np.maximum(x, -1.0), 32767 / 32768) * 32768.0).astype("<i2")


def write_pcm16(path: str | Path, x: np.ndarray, rate: int) -> None:
    pcm = to_pcm16(x)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
