"""The local server's voice: bundled recorded sentences, chunked as the service streams them.

Replies are real speech (CMU ARCTIC sentences, see `edged/data/README.md`)
rather than a tone, so that whatever listens to the playback — the echo
canceller, the speech detector, a person at the demo — hears what it would
hear from the service. Everything here is pure: bytes in, bytes out.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from importlib import resources

import numpy as np
from scipy.io import wavfile

RATE_HZ = 24000
BYTES_PER_MS = RATE_HZ * 2 // 1000  # PCM16 mono
PAUSE_BETWEEN_REPEATS_MS = 300


@dataclass(frozen=True)
class Reply:
    """One spoken answer: PCM16 LE mono at 24 kHz and what it says."""

    name: str
    pcm: bytes
    transcript: str

    @property
    def duration_ms(self) -> float:
        return len(self.pcm) / BYTES_PER_MS

    def repeated(self, times: int) -> Reply:
        """The same sentence `times` times with a breath between: a long answer for barge-in tests."""
        if times <= 1:
            return self
        pause = bytes(PAUSE_BETWEEN_REPEATS_MS * BYTES_PER_MS)
        return Reply(
            f"{self.name}x{times}", pause.join([self.pcm] * times), " ".join([self.transcript] * times)
        )


def _read_pcm16_24k(data: bytes, name: str) -> bytes:
    rate, x = wavfile.read(io.BytesIO(data))
    if rate != RATE_HZ or x.dtype != np.int16 or x.ndim != 1:
        raise ValueError(f"{name}: expected 24 kHz mono PCM16, got {rate} Hz {x.dtype} {x.shape}")
    return x.astype("<i2").tobytes()


@functools.cache
def bundled_replies() -> tuple[Reply, ...]:
    """The shipped sentences in rotation order (read once; about 0.5 MB)."""
    data = resources.files("edged") / "data"
    meta = json.loads((data / "replies.json").read_text(encoding="utf-8"))
    return tuple(
        Reply(
            e["file"].removesuffix(".wav"),
            _read_pcm16_24k((data / e["file"]).read_bytes(), e["file"]),
            e["transcript"],
        )
        for e in meta["replies"]
    )


def chunk_pcm(pcm: bytes, chunk_ms: int) -> list[bytes]:
    """Split into `chunk_ms` pieces (the last one shorter), as the service sends audio deltas."""
    step = max(2, chunk_ms * BYTES_PER_MS)
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def transcript_schedule(transcript: str, n_chunks: int) -> list[str]:
    """Transcript pieces to send after each audio chunk, spread over the audio the way
    the service interleaves them: words arrive roughly as their audio does."""
    words = transcript.split(" ")
    out = [""] * max(1, n_chunks)
    for i, word in enumerate(words):
        k = min(len(out) - 1, i * len(out) // len(words))
        out[k] += word if i == 0 else " " + word
    return out


def transcript_until(transcript: str, fraction: float) -> str:
    """The words heard when playback stopped `fraction` of the way through (truncate drops the rest)."""
    words = transcript.split(" ")
    return " ".join(words[: int(len(words) * max(0.0, min(1.0, fraction)))])


def text_tokens(text: str) -> int:
    """A plausible token count for English text (about four characters per token)."""
    return (len(text) + 3) // 4
