"""The frame loop: resample → echo canceller → speech detector → turn gate → upload encoder.

Sans-I/O: it is fed sample chunks (microphone and what the speaker played, at
the device's rates) and returns per-frame results. Time is the 16 kHz sample
clock, so replaying a WAV makes exactly the decisions the device would.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .aec import EchoCanceller, PassThrough
from .config import Config
from .detector import SILENT, Decision, SpeechDetector, hears_alike, level_dbfs
from .frames import FRAME_MS, FRAME_SAMPLES, RATE_HZ, Framer
from .gate import Action, Append, Commit, Phase, Start, TurnGate
from .resample import StreamingResampler
from .upload import UploadEncoder, b64

# Far-end frames waiting for their microphone twin; a stream that stops delivering
# microphone frames cannot grow this beyond one second.
FAR_QUEUE_FRAMES = 100


class StageTimer:
    """Charges elapsed time to named stages, for benchmarks and frame-loop metrics.

    The clock is injected: the core never reads the wall clock on its own, and
    with no timer the frame loop pays only a `None` check per stage.
    """

    def __init__(self, clock_ns: Callable[[], int], sink: Callable[[str, int], None]) -> None:
        self._clock = clock_ns
        self._sink = sink
        self._t = 0

    def start(self) -> None:
        self._t = self._clock()

    def mark(self, stage: str) -> None:
        t = self._clock()
        self._sink(stage, t - self._t)
        self._t = t


@dataclass(slots=True)
class FrameResult:
    start: int  # first sample of this frame on the 16 kHz clock
    decision: Decision
    playing: bool
    phase: Phase
    actions: list[Action]
    uploads: list[str] = field(default_factory=list)  # base64 24 kHz PCM16 to append, in order


class Pipeline:
    def __init__(
        self,
        cfg: Config,
        input_rate_hz: int,
        far_rate_hz: int | None = None,
        timer: StageTimer | None = None,
    ) -> None:
        self.cfg = cfg
        self.timer = timer
        self._mic_rs = StreamingResampler(input_rate_hz, RATE_HZ)
        self._far_rs = StreamingResampler(far_rate_hz or input_rate_hz, RATE_HZ)
        self._mic_framer = Framer()
        self._far_framer = Framer()
        self._far: deque[np.ndarray] = deque(maxlen=FAR_QUEUE_FRAMES)
        self.aec: EchoCanceller | PassThrough
        self._install_canceller(cfg)
        self._since_played = self._hangover + 1
        self._room_memory: list[np.ndarray] | None = None  # the second stage's, from before a reply
        self._reply_memory: list[np.ndarray] | None = None  # ... from the end of the last reply
        self.detector = SpeechDetector(cfg.detector)
        self.gate = TurnGate(cfg.gate)
        self.encoder = UploadEncoder()
        self._silence = np.zeros(FRAME_SAMPLES, dtype=np.float32)
        self.position = 0  # samples of the 16 kHz clock processed so far

    def reconfigure(self, cfg: Config) -> list[str]:
        """Apply a reloaded configuration between turns without forgetting the room: only the
        stages whose keys changed are rebuilt, and those carry over what their predecessors
        learnt (see `SpeechDetector`, `TurnGate.take_over`). A rebuilt canceller has
        to learn the echo path again, so it is rebuilt only when its own keys change; the
        resamplers, framers and far-end queue are kept, so the microphone and what the speaker
        played stay sample-aligned. Returns the stages rebuilt."""
        if self.gate.in_turn:
            raise ValueError("a pipeline is reconfigured only between turns")
        old, self.cfg = self.cfg, cfg
        rebuilt = [name for name in ("aec", "detector", "gate") if getattr(cfg, name) != getattr(old, name)]
        if "aec" in rebuilt:
            self._install_canceller(cfg)
        if "detector" in rebuilt:
            if not hears_alike(cfg.detector, old.detector):
                self._room_memory = self._reply_memory = None  # memories of models no longer there
            self.detector = SpeechDetector(cfg.detector, previous=self.detector)
        if "gate" in rebuilt:
            gate = TurnGate(cfg.gate)
            gate.take_over(self.gate)
            self.gate = gate
        return rebuilt

    def _install_canceller(self, cfg: Config) -> None:
        self.aec = EchoCanceller(RATE_HZ, FRAME_SAMPLES, cfg.aec) if cfg.aec.enabled else PassThrough()
        self._hangover = cfg.aec.echo_hangover_ms // FRAME_MS
        # the resampler's group delay and the canceller's latency, so events can be placed
        # on the input's own clock
        self.delay_samples = self._mic_rs.delay_out_samples + self.aec.latency_samples

    def to_input_ms(self, sample: int) -> float:
        return max(0.0, (sample - self.delay_samples) * 1000.0 / RATE_HZ)

    def process(self, mic: np.ndarray, far: np.ndarray | None = None) -> list[FrameResult]:
        """Feed a chunk of microphone samples and, if the speaker played, the same span of it."""
        tm = self.timer
        if tm:
            tm.start()
        if far is not None:
            self._far.extend(self._far_framer.push(self._far_rs.process(far)))
        frames = self._mic_framer.push(self._mic_rs.process(mic))
        if tm:
            tm.mark("resample")
        return [self._frame(f) for f in frames]

    def finish(self) -> list[FrameResult]:
        """Close an open turn at the end of the input."""
        actions = self.gate.finish(self.position)
        if not actions:
            return []
        res = FrameResult(self.position, SILENT, False, self.gate.phase, actions)
        self._encode(res)
        return [res]

    def _frame(self, mic: np.ndarray) -> FrameResult:
        tm = self.timer
        if tm:
            tm.start()
        ref = self._far.popleft() if self._far else self._silence
        if level_dbfs(ref) > self.cfg.aec.far_end_active_dbfs:
            self._since_played = 0
        elif self._since_played <= self._hangover:
            self._since_played += 1
        playing = self._since_played <= self._hangover
        self._keep_room_memory(playing)
        clean = self.aec.process(mic, ref)
        if tm:
            tm.mark("echo")
        d = self.detector.process(self.aec.heard)
        if playing and not self._near_end(d):
            # while the speaker plays, only what stands above the expected echo, or repeats at a
            # period the device's voice has not had, can be the user
            d = replace(d, onset=False, trigger=False, speech=False)
        elif playing and (not d.loud or d.level_dbfs < self.cfg.aec.barge_in_min_dbfs):
            # nor can what barely stands above the room's floor, or is quieter than anyone
            # talking over the device: there the second stage hears the canceller's residual,
            # amplified, and residual echo is the device's own voice
            d = replace(d, trigger=False)
        if tm:
            tm.mark("detector")
        start = self.position
        self.position += len(mic)
        actions = self.gate.push(clean, start, d, playing)
        res = FrameResult(start, d, playing, self.gate.phase, actions)
        if tm:
            tm.mark("gate")
        if actions:
            self._encode(res)
            if tm:
                tm.mark("encode")
        return res

    def _near_end(self, d: Decision) -> bool:
        """Does this frame carry more than the device's own voice (see `edged.aec`)? The pitch
        comparison costs two FFTs: it runs only where its answer changes the decision."""
        cfg, aec = self.cfg.aec, self.aec
        ratio = aec.near_ratio_db
        if ratio >= cfg.barge_in_margin_db:
            return True
        if ratio < cfg.barge_in_pitch_margin_db or cfg.barge_in_pitch > 1.0:
            return False
        if not (d.onset or d.trigger or d.speech):
            return False  # nothing to take away
        return aec.near_pitch() >= cfg.barge_in_pitch

    def _keep_room_memory(self, playing: bool) -> None:
        """While the device speaks, the second stage hears what the canceller leaves of its
        voice, and its recurrent memory learns that murmur as the room. That keeps it from
        taking the residual for a user, but deafened it to the user's answer: on 20 of
        aec_bench's rooms it missed 28 of 180 answers given 0.3-1.5 s after the reply and
        clipped 21 (benchmarks/answers.py). So it keeps two memories, swapped as the device
        starts and stops speaking: the room's, and the one it made of the last reply's
        residual. Then all 180 were caught and none clipped, with no more false turns, and
        benchmarks/echo.py's 20 rooms caught 63 barge-ins of 140 (53 before) with 3 false
        pauses (2 before; none cancels a reply, 1 did). Also inside a turn: an answer begun
        in the echo's hangover was otherwise cut short as the deafened model lost it. A
        reply the user talked into leaves no memory to recall at the next one: it would hold
        the user's voice as the device's (in `make demo`, the user's next barge-in was then
        missed)."""
        if playing and self._room_memory is None:
            self._room_memory = self.detector.memory()
            if self._reply_memory is not None:
                self.detector.recall(self._reply_memory)
        elif not playing and self._room_memory is not None:
            self._reply_memory = None if self.gate.in_turn else self.detector.memory()
            self.detector.recall(self._room_memory)
            self._room_memory = None

    def _encode(self, res: FrameResult) -> None:
        for a in res.actions:
            if isinstance(a, Start):
                self.encoder.start()
            elif isinstance(a, Append):
                res.uploads.append(b64(self.encoder.encode(a.audio)))
            elif isinstance(a, Commit):
                res.uploads.append(b64(self.encoder.finish()))
