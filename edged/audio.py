"""Live audio: one full-duplex sounddevice stream, so capture and playback share a clock.

The stream's callback runs on PortAudio's thread and only moves samples between
preallocated rings: it copies the captured block into the microphone ring, takes the
next block for the speaker from the output ring (silence when that is empty) and
copies exactly what it played into the reference ring. The reference block and the
captured block of one callback are written together, so the echo canceller gets what
the speaker played at the moment the microphone heard it (the device's own round-trip
delay is what its delay tracker finds). No locks, no logging, no allocation of sample
buffers, no network in there; status flags are counted and reported from the frame
loop.

Each ring has one writer and one reader, and each side moves only its own index, so
CPython's atomic integer stores are all the synchronisation needed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .config import AudioConfig

log = logging.getLogger("edged.audio")

RING_S = 2.0  # seconds each ring holds: far more than the frame loop ever lags


class Ring:
    """Single-producer, single-consumer float32 ring with free-running indices."""

    def __init__(self, capacity: int) -> None:
        self._buf = np.zeros(capacity, dtype=np.float32)
        self.capacity = capacity
        self._w = 0  # written so far: only the producer moves it
        self._r = 0  # read so far: only the consumer moves it
        self._skip_to = 0  # the producer asks the consumer to drop what is queued before this

    def queued(self) -> int:
        return self._w - max(self._r, self._skip_to)

    def write(self, x: np.ndarray) -> int:
        """Returns how many samples fitted; the rest is dropped."""
        n = min(len(x), self.capacity - (self._w - self._r))
        i = self._w % self.capacity
        first = min(n, self.capacity - i)
        self._buf[i : i + first] = x[:first]
        self._buf[: n - first] = x[first:n]
        self._w += n
        return n

    def read_into(self, out: np.ndarray) -> int:
        if self._r < self._skip_to:
            self._r = self._skip_to
        n = min(len(out), self._w - self._r)
        i = self._r % self.capacity
        first = min(n, self.capacity - i)
        out[:first] = self._buf[i : i + first]
        out[first:n] = self._buf[: n - first]
        self._r += n
        return n

    def clear(self) -> None:
        """Producer side: whatever is queued is not to be read (the speaker stops now)."""
        self._skip_to = self._w


@dataclass
class StreamStats:
    """What went wrong on the stream, counted in the callback and logged by the frame loop."""

    input_overflows: int = 0
    input_underflows: int = 0
    output_underflows: int = 0
    output_overflows: int = 0
    starved_blocks: int = 0  # blocks played (partly) as silence because the frame loop was late
    lost_blocks: int = 0  # captured blocks dropped because the frame loop fell 2 s behind
    reported: dict[str, int] = field(default_factory=dict)

    def news(self) -> dict[str, int]:
        """Counters that moved since the last call (for one log line outside the callback)."""
        now = {k: v for k, v in vars(self).items() if k != "reported"}
        moved = {k: v - self.reported.get(k, 0) for k, v in now.items() if v != self.reported.get(k, 0)}
        self.reported = now
        return moved


class DeviceError(Exception):
    """No device matches the configuration, or the stream cannot be opened."""


def find_device(sd: Any, spec: str, kind: str) -> int | None:
    """`spec` is "" (the system default), an index, or a case-insensitive part of a name."""
    if spec == "":
        return None
    devices = sd.query_devices()
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    if spec.isdigit():
        i = int(spec)
        if i < len(devices) and devices[i][key] > 0:
            return i
    else:
        for i, d in enumerate(devices):
            if spec.casefold() in d["name"].casefold() and d[key] > 0:
                return i
    names = ", ".join(f"{i}: {d['name']}" for i, d in enumerate(devices) if d[key] > 0) or "none"
    raise DeviceError(f"no {kind} device matches {spec!r} (there are: {names})")


def list_devices(sd: Any) -> str:
    lines = []
    default_in, default_out = sd.default.device
    for i, d in enumerate(sd.query_devices()):
        mark = "<" if i == default_in else " "
        mark += ">" if i == default_out else " "
        lines.append(
            f"{mark} {i:2d}  {d['name']}  (in {d['max_input_channels']}, out {d['max_output_channels']}, "
            f"{d['default_samplerate']:.0f} Hz)"
        )
    lines.append("< default input, > default output; select with audio.input_device / audio.output_device")
    return "\n".join(lines)


class DuplexAudio:
    """The microphone and the speaker on one stream. The frame loop calls `read` for what
    was captured (with what was played meanwhile) and `play` to keep the speaker fed."""

    def __init__(self, cfg: AudioConfig, sd: Any | None = None) -> None:
        if sd is None:
            import sounddevice as sd  # imported here: replay and the tests of the core never need it
        self.cfg = cfg
        self._sd = sd
        self._stream: Any = None
        self.rate_hz = 0
        self.block = 0
        self.stats = StreamStats()
        self._mic = self._played = self._out = Ring(1)
        self._tmp = np.zeros(1, dtype=np.float32)
        self._tried = False

    @property
    def active(self) -> bool:
        s = self._stream
        return s is not None and bool(s.active)

    def open(self, rescan: bool = True) -> None:
        """`rescan`: list the devices afresh first (slow: PortAudio probes every ALSA device),
        for a device that may have been unplugged and plugged in again."""
        sd, cfg = self._sd, self.cfg
        if self._tried and rescan:
            self._rescan()
        self._tried = True
        try:
            dev_in = find_device(sd, cfg.input_device, "input")
            dev_out = find_device(sd, cfg.output_device, "output")
            info_in = sd.query_devices(dev_in, "input")
            info_out = sd.query_devices(dev_out, "output")
        except (ValueError, sd.PortAudioError) as e:
            raise DeviceError(str(e)) from None
        rate = cfg.sample_rate_hz or int(info_in["default_samplerate"])
        self.rate_hz = rate
        self.block = rate * cfg.block_ms // 1000
        ring = int(RING_S * rate)
        self._mic, self._played, self._out = Ring(ring), Ring(ring), Ring(ring)
        self._tmp = np.zeros(self.block * 4, dtype=np.float32)  # PortAudio may pass larger blocks
        self.stats = StreamStats()
        channels = (1, 1 if info_out["max_output_channels"] < 2 else 2)
        try:
            self._stream = sd.Stream(
                samplerate=rate,
                blocksize=self.block,
                device=(dev_in, dev_out),
                channels=channels,
                dtype="float32",
                latency=cfg.latency,
                callback=self._callback,
                finished_callback=None,
            )
            self._stream.start()
        except (ValueError, sd.PortAudioError) as e:
            self._stream = None
            raise DeviceError(f"cannot open the audio stream: {e}") from None
        log.info(
            "audio: %s → %s at %d Hz, %d-sample blocks",
            info_in["name"],
            info_out["name"],
            rate,
            self.block,
        )

    def _rescan(self) -> None:
        """PortAudio lists devices once, when initialised: a USB card plugged in (or back in)
        since is invisible until it starts over. Only with no stream open, as here."""
        sd = self._sd
        terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
        if terminate is None or initialize is None:
            return
        # a failed initialise leaves PortAudio down: never terminate it twice, always retry
        if getattr(sd, "_initialized", 1):
            try:
                terminate()
            except Exception as e:
                log.debug("stopping PortAudio for a rescan: %r", e)
        try:
            initialize()
        except Exception as e:  # the next open reports what is wrong
            log.debug("starting PortAudio again: %r", e)

    def close(self) -> None:
        s, self._stream = self._stream, None
        if s is not None:
            try:
                s.abort()
                s.close()
            except Exception as e:  # a device already gone cannot be closed cleanly
                log.debug("closing the audio stream: %r", e)

    def _callback(self, indata: np.ndarray, outdata: np.ndarray, frames: int, _t: Any, status: Any) -> None:
        st = self.stats
        if status:
            st.input_overflows += bool(status.input_overflow)
            st.input_underflows += bool(status.input_underflow)
            st.output_underflows += bool(status.output_underflow)
            st.output_overflows += bool(status.output_overflow)
        st.lost_blocks += self._mic.write(indata[:, 0]) < frames
        tmp = self._tmp[:frames] if frames <= len(self._tmp) else np.zeros(frames, np.float32)
        got = self._out.read_into(tmp)
        if got < frames:
            tmp[got:] = 0.0
            st.starved_blocks += got > 0
        outdata[:] = tmp[:, None]
        self._played.write(tmp)

    # -- the frame loop's side ------------------------------------------------------------------
    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """Captured samples and what the speaker played over the same blocks."""
        n = min(self._mic.queued(), self._played.queued())
        mic = np.empty(n, dtype=np.float32)
        played = np.empty(n, dtype=np.float32)
        self._mic.read_into(mic)
        self._played.read_into(played)
        return mic, played

    def queued_input_s(self) -> float:
        """Captured audio the frame loop has not taken yet: how far behind it is."""
        return self._mic.queued() / self.rate_hz if self.rate_hz else 0.0

    def queued_output(self) -> int:
        return self._out.queued()

    def play(self, x: np.ndarray) -> None:
        self._out.write(x)

    def stop_output(self) -> None:
        """Barge-in: what is queued for the speaker is never played."""
        self._out.clear()
