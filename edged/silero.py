"""Second-stage speech model: Silero VAD (ONNX, MIT) on 32 ms chunks.

webrtcvad is fast and catches onsets within tens of ms but says "speech" to
music, traffic and clatter; Silero is a small neural model that tells them
apart. It runs once per 512 samples (32 ms) on one thread; between runs the
latest probability stands. onnxruntime is imported when the model is first
built, so tools that never detect speech do not load it.

The detector hears the room in several ways at once (plain and denoised, each
with a long and two short memories: see `edged.detector`), so `SileroBank` runs
them as one batch: on this machine one inference costs about 100 µs, a batch of
two 145 µs and a batch of six 320 µs. The rows of a batch are streams of audio
(the rows hearing the same audio share its buffer) that all take one frame per
call, so their chunks end together.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from .frames import RATE_HZ

CHUNK = 512  # samples per inference at 16 kHz (the model's fixed hop)
CONTEXT = 64  # samples of the previous chunk the model sees in front of each chunk
STATE = 128  # the size of each of the model's two recurrent state vectors
MODEL_FILE = "silero_vad_16k.onnx"


def model_path() -> Path:
    return Path(str(resources.files("edged") / "data" / MODEL_FILE))


class SileroBank:
    """Silero over `len(row_streams)` rows of recurrent memory in one inference per chunk;
    row k hears stream `row_streams[k]`."""

    def __init__(self, row_streams: Sequence[int], path: Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # the frame loop owns one core; never compete for the other
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(path or model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._rows = np.asarray(row_streams, dtype=np.intp)
        streams = int(self._rows.max()) + 1
        if sorted(set(self._rows.tolist())) != list(range(streams)):
            raise ValueError(f"row_streams {list(row_streams)}: every stream 0..{streams - 1} needs a row")
        self.streams = streams
        # a batch of the streams themselves, in order, needs no copy a chunk
        self._direct = self._rows.tolist() == list(range(streams))
        self._heard = np.zeros((streams, CONTEXT + CHUNK), dtype=np.float32)  # each stream, as heard
        self._raw = np.zeros((streams, CONTEXT + CHUNK), dtype=np.float32)  # samples before their gain
        self._gain = np.ones((streams, CONTEXT + CHUNK), dtype=np.float32)  # each sample's gain
        self._state = np.zeros((2, len(self._rows), STATE), dtype=np.float32)
        self._sr = np.array(RATE_HZ, dtype=np.int64)
        self._filled = 0
        self.probabilities = [0.0] * len(self._rows)  # a list: read every frame, one float at a time
        self.inferences = 0

    def reset(self) -> None:
        self._raw[:] = 0
        self._gain[:] = 1
        self._state[:] = 0
        self._filled = 0
        self.probabilities = [0.0] * len(self._rows)

    def wipe(self, row: int) -> None:
        """Forget what `row` has made of the sound so far (its audio context stays)."""
        self._state[:, row] = 0

    def memory(self) -> np.ndarray:
        """A copy of every row's recurrent state: what each has made of the sound so far."""
        return self._state.copy()

    def recall(self, memory: np.ndarray) -> None:
        if memory.shape != self._state.shape:
            raise ValueError(f"a memory of shape {memory.shape} does not fit rows of {self._state.shape}")
        self._state = memory.copy()

    def process(self, frames: Sequence[np.ndarray], gains: Sequence[float]) -> bool:
        """Buffer one frame per stream (all of one length), to be heard at its gain (clipped to
        full scale); run the model when a 512-sample chunk is complete. Returns True when
        `probabilities` were updated by this call."""
        raw, gain = self._raw, self._gain
        pos = CONTEXT + self._filled
        n = len(frames[0])
        take = min(n, CHUNK - self._filled)
        for s, (frame, g) in enumerate(zip(frames, gains, strict=True)):
            raw[s, pos : pos + take] = frame[:take]
            gain[s, pos : pos + take] = g
        self._filled += take
        if self._filled < CHUNK:
            return False
        x = self._heard
        np.multiply(raw, gain, out=x)
        np.minimum(x, 1.0, out=x)  # two ufuncs in place: np.clip's wrapper costs more
        np.maximum(x, -1.0, out=x)
        batch = x if self._direct else x[self._rows]
        out, self._state = self._session.run(None, {"input": batch, "state": self._state, "sr": self._sr})
        self.probabilities = out[:, 0].tolist()
        self.inferences += 1
        # the last 64 samples, as heard, become the next chunk's context; the frame's remainder
        # starts it
        raw[:, :CONTEXT] = x[:, CHUNK : CHUNK + CONTEXT]
        gain[:, :CONTEXT] = 1.0
        rest = n - take
        for s, (frame, g) in enumerate(zip(frames, gains, strict=True)):
            raw[s, CONTEXT : CONTEXT + rest] = frame[take:]
            gain[s, CONTEXT : CONTEXT + rest] = g
        self._filled = rest
        return True


class SileroVad(SileroBank):
    """One stream, one memory."""

    def __init__(self, path: Path | None = None) -> None:
        super().__init__([0], path)

    @property
    def probability(self) -> float:
        return self.probabilities[0]

    def process(self, frame: np.ndarray, gain: float = 1.0) -> bool:  # type: ignore[override]
        """Buffer a frame, to be heard at `gain`; see `SileroBank.process`."""
        return super().process((frame,), (gain,))
