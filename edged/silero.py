"""Second-stage speech model: Silero VAD (ONNX, MIT) on 32 ms chunks.

webrtcvad is fast and catches onsets within tens of ms but says "speech" to
music, traffic and clatter; Silero is a small neural model that tells them
apart. It runs once per 512 samples (32 ms) on one thread; between runs the
latest probability stands. onnxruntime is imported when the model is first
built, so tools that never detect speech do not load it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from .frames import RATE_HZ

CHUNK = 512  # samples per inference at 16 kHz (the model's fixed hop)
CONTEXT = 64  # samples of the previous chunk the model sees in front of each chunk
MODEL_FILE = "silero_vad_16k.onnx"


def model_path() -> Path:
    return Path(str(resources.files("edged") / "data" / MODEL_FILE))


class SileroVad:
    def __init__(self, path: Path | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # the frame loop owns one core; never compete for the other
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(path or model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self._input = np.zeros((1, CONTEXT + CHUNK), dtype=np.float32)
        self._raw = np.zeros(CONTEXT + CHUNK, dtype=np.float32)  # samples before their gain
        self._gain = np.ones(CONTEXT + CHUNK, dtype=np.float32)  # each sample's gain
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._sr = np.array(RATE_HZ, dtype=np.int64)
        self._filled = 0
        self.probability = 0.0
        self.inferences = 0

    def reset(self) -> None:
        self._input[:] = 0
        self._raw[:] = 0
        self._gain[:] = 1
        self._state[:] = 0
        self._filled = 0
        self.probability = 0.0

    def memory(self) -> np.ndarray:
        """A copy of the model's recurrent state: what it has made of the sound so far."""
        return self._state.copy()

    def recall(self, memory: np.ndarray) -> None:
        self._state = memory.copy()

    def process(self, frame: np.ndarray, gain: float = 1.0) -> bool:
        """Buffer a frame, to be heard at `gain` (clipped to full scale); run the model when a
        512-sample chunk is complete. Returns True when `probability` was updated by this frame."""
        raw, gains = self._raw, self._gain
        pos = CONTEXT + self._filled
        take = min(len(frame), CHUNK - self._filled)
        raw[pos : pos + take] = frame[:take]
        gains[pos : pos + take] = gain
        self._filled += take
        if self._filled < CHUNK:
            return False
        x = self._input[0]
        np.multiply(raw, gains, out=x)
        np.minimum(x, 1.0, out=x)  # two ufuncs in place: np.clip's wrapper costs more
        np.maximum(x, -1.0, out=x)
        out, self._state = self._session.run(
            None, {"input": self._input, "state": self._state, "sr": self._sr}
        )
        self.probability = float(out[0, 0])
        self.inferences += 1
        # the last 64 samples, as heard, become the next chunk's context; the frame's remainder
        # starts it
        raw[:CONTEXT] = x[CHUNK : CHUNK + CONTEXT]
        gains[:CONTEXT] = 1.0
        rest = frame[take:]
        raw[CONTEXT : CONTEXT + len(rest)] = rest
        gains[CONTEXT : CONTEXT + len(rest)] = gain
        self._filled = len(rest)
        return True
