"""Typed, frozen configuration loaded once from YAML.

Every key is a dataclass field whose metadata states what is allowed, so the
validator, `edged config show` and the documentation test all read one source
of truth. A bad file yields one `ConfigError` naming the key path, the value
and what is allowed; the CLI turns it into exit code 78 (EX_CONFIG).
"""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

EX_CONFIG = 78


class ConfigError(Exception):
    """A configuration problem a user can fix by editing the file; never a traceback."""


def _num(default: float, lo: float, hi: float, doc: str) -> Any:
    return field(default=default, metadata={"min": lo, "max": hi, "doc": doc})


def _choice(default: Any, choices: Sequence[Any], doc: str) -> Any:
    return field(default=default, metadata={"choices": tuple(choices), "doc": doc})


def _flag(default: bool, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class DetectorConfig:
    """Per-frame speech decision in two stages.

    The fast stage (webrtcvad and level over the tracked noise floor) reacts within
    tens of ms and marks where speech began; the second stage (Silero VAD on
    level-normalised audio) decides whether it is speech at all and how long it lasts.
    """

    mode: str = _choice(
        "combined",
        ("combined", "webrtcvad", "silero"),
        "combined: fast stage anchors onsets, Silero decides; webrtcvad or silero: that stage alone",
    )
    vad_mode: int = _num(3, 0, 3, "webrtcvad aggressiveness; 3 rejects the most non-speech")
    vad_frame_ms: int = _choice(30, (10, 20, 30), "webrtcvad analysis frame (ms)")
    energy_margin_db: float = _num(
        6.0, 0.0, 40.0, "level over the noise floor at which the fast stage calls a frame speech (dB)"
    )
    onset_margin_db: float = _num(
        3.0, 0.0, 40.0, "level over the noise floor at which the fast stage marks a possible onset (dB)"
    )
    min_level_dbfs: float = _num(-70.0, -120.0, 0.0, "frames quieter than this never count as speech (dBFS)")
    noise_floor_rise_db_per_s: float = _num(
        2.0, 0.1, 60.0, "how fast the floor follows a louder room (dB/s); slow so speech does not lift it"
    )
    noise_floor_fall_db_per_s: float = _num(
        20.0, 0.1, 200.0, "how fast the floor follows a quieter room (dB/s)"
    )
    noise_floor_window_ms: int = _num(
        5000,
        0,
        60000,
        "the floor never stays below the quietest moment of this much recent time: it catches up "
        "with a room louder than it started, or a fan switched on, without waiting for its slow "
        "rise (ms; 0: off)",
    )
    start_probability: float = _num(
        0.3, 0.01, 0.99, "Silero speech probability that starts a turn (higher: fewer false turns)"
    )
    hold_probability: float = _num(
        0.15, 0.01, 0.99, "Silero speech probability that keeps a turn going (below: trailing silence)"
    )
    bridge_ms: int = _num(
        2000,
        0,
        30000,
        "longest stretch in which the fast stage alone keeps a turn going while Silero hears no "
        "speech: a tap or traffic starting after the user's words cannot hold the turn (ms; 0: no limit)",
    )
    agc_target_dbfs: float = _num(
        -5.0, -40.0, 0.0, "the second stage hears the room's loud parts at this level (dBFS)"
    )
    agc_release_db_per_s: float = _num(
        1.0, 0.1, 60.0, "how fast that normalisation recovers after a loud sound (dB/s)"
    )
    agc_max_gain_db: float = _num(40.0, 0.0, 60.0, "most the second stage's input is amplified (dB)")
    denoise_level: int = _num(
        4,
        0,
        4,
        "the second stage also hears the room through WebRTC noise suppression at this level (4: most); "
        "finds more far-field speech under a running tap or dishes, uploads a little more; 0: off",
    )
    denoised_start_probability: float = _num(
        0.7, 0.01, 0.99, "Silero speech probability on the denoised audio that starts a turn"
    )
    fresh_memory_ms: int = _num(
        4000,
        0,
        60000,
        "Silero carried through a never-ending stream drifts deaf to some voices; it also hears the "
        "room with two short memories, wiped in turn, so the one consulted has heard between this and "
        "twice this much of the room; they may start a turn where the fast stage hears speech and the "
        "room is not talking (ms; 0: off, which saves about a quarter of the detector's mean cost)",
    )
    fresh_start_probability: float = _num(
        0.8, 0.01, 0.99, "speech probability of the plain audio's short memory that starts a turn"
    )
    fresh_denoised_start_probability: float = _num(
        0.9, 0.01, 0.99, "speech probability of the denoised audio's short memory that starts a turn"
    )
    fresh_hold_probability: float = _num(
        0.4, 0.01, 0.99, "speech probability of the plain audio's short memory that keeps a turn going"
    )
    fresh_denoised_hold_probability: float = _num(
        0.6, 0.01, 0.99, "speech probability of the denoised audio's short memory that keeps a turn going"
    )
    talking_room_share: float = _num(
        0.85,
        0.05,
        1.0,
        "share of recent time the denoised audio sounded like speech above which the room itself is "
        "talking (babble, TV) and only the plain audio can start or keep a turn",
    )
    talking_room_window_ms: int = _num(5000, 500, 60000, "how far back that share reaches (ms)")
    talking_start_probability: float = _num(
        0.7,
        0.01,
        0.99,
        "while the room is talking, the Silero speech probability on the plain audio that starts a turn "
        "(a voice close to the device reads higher than a TV across the room)",
    )
    talking_hold_probability: float = _num(
        0.3,
        0.01,
        0.99,
        "while the room is talking, the Silero speech probability on the plain audio that keeps a turn "
        "going: the room's own voices read over hold_probability often enough to hold a turn for seconds "
        "after the user stopped",
    )
    talking_room_over_floor_db: float = _num(
        20.0,
        0.0,
        120.0,
        "a frame this far above the noise floor is not the room's background talk: there the denoised "
        "audio may start and keep a turn even while the room is talking (dB; 120: never)",
    )
    denoised_hold_removed_db: float = _num(
        3.0,
        0.0,
        120.0,
        "the denoised audio keeps a turn going while the noise suppressor removes at most this much of "
        "the last second's sound, or more as long as that is denoised_hold_under_room_db less than it "
        "removes from the room alone: otherwise what it hears is mostly the room (a babble of voices held "
        "a turn for seconds after the user stopped) (dB; 120: always)",
    )
    denoised_hold_under_room_db: float = _num(
        6.0,
        0.0,
        120.0,
        "how much less the suppressor must remove than from the room alone (the most it removed from any "
        "second of the last five) for the denoised audio to keep a turn going (dB)",
    )
    tone_max_partials: int = _num(
        2,
        0,
        10,
        "a frame whose spectrum holds only 1 to this many prominent partials (a chime, a beep, a "
        "ringtone) never starts a turn, whatever Silero says of it; a voice holds a comb of harmonics "
        "(0: off)",
    )
    held_notes_share: float = _num(
        0.4,
        0.0,
        1.0,
        "a turn that only the denoised audio would start is not started when, over the last 300 ms, "
        "this share or more of the sound's prominent partials were already there 90 ms before: "
        "an instrument holds its notes, a voice's harmonics glide (0: off)",
    )
    warmup_ms: int = _num(
        500,
        0,
        10000,
        "after start the detector listens this long before it may start a turn, while it learns the "
        "room (a turn that begins meanwhile is still uploaded from its onset) (ms)",
    )


@dataclass(frozen=True)
class GateConfig:
    """Turn boundaries: when a turn starts, what is uploaded, when it is committed."""

    pre_roll_ms: int = _num(
        500, 0, 2000, "audio uploaded from before the detected onset, so soft onsets are not clipped (ms)"
    )
    onset_lookback_ms: int = _num(
        1000, 0, 3000, "how far back from a turn's start the onset of its speech is searched (ms)"
    )
    onset_gap_ms: int = _num(200, 0, 1000, "pauses in the fast stage's activity bridged by that search (ms)")
    start_window_ms: int = _num(100, 10, 1000, "window over which trigger frames are counted (ms)")
    start_voiced_ratio: float = _num(
        0.3, 0.05, 1.0, "share of trigger frames in the window that starts a turn"
    )
    after_turn_ms: int = _num(
        2000,
        0,
        10000,
        "for this long after a turn is committed, while the speaker is silent, a new turn needs "
        "after_turn_voiced_ratio: the second stage, primed by the sentence it just heard, takes a "
        "clatter for a voice (ms; 0: off)",
    )
    after_turn_voiced_ratio: float = _num(
        0.7, 0.05, 1.0, "share of trigger frames in the window that starts a turn within after_turn_ms"
    )
    end_silence_ms: int = _num(
        300, 100, 5000, "trailing non-speech that ends a turn holding settled_speech_ms of speech (ms)"
    )
    early_end_silence_ms: int = _num(
        500,
        100,
        5000,
        "trailing non-speech that ends a shorter turn: a first word or two is often followed by a "
        "pause; set it to end_silence_ms for one end silence (ms)",
    )
    settled_speech_ms: int = _num(
        1000, 0, 10000, "speech a turn holds before end_silence_ms applies, not early_end_silence_ms (ms)"
    )
    post_roll_ms: int = _num(
        300,
        0,
        5000,
        "trailing non-speech still uploaded after the last speech: covers a room's reverberation of the "
        "last word (ms)",
    )
    min_speech_ms: int = _num(
        200,
        0,
        5000,
        "turns with less speech than this are discarded, not committed; a barge-in pauses the reply "
        "and cancels it only once its turn holds this much (ms)",
    )
    max_turn_ms: int = _num(
        30000,
        1000,
        60000,
        "a turn this long is committed even while speech goes on; nobody talks this long without a "
        "pause, so it is the room (a TV, a crowd) and no turn starts again until the sound has paused "
        "for end_silence_ms (ms)",
    )
    max_gap_upload_ms: int = _num(
        250, 0, 5000, "longest pause inside a turn that is uploaded in full; longer pauses are shortened (ms)"
    )


@dataclass(frozen=True)
class AecConfig:
    """Echo canceller: removes what the speaker played from the microphone signal, so the
    device never answers itself and the user can still interrupt it."""

    enabled: bool = _flag(True, "run the echo canceller on the microphone signal")
    half_duplex: bool = _flag(
        False, "mute the microphone while the speaker plays: for hardware whose echo cannot be cancelled"
    )
    block_fit: bool = _flag(
        True,
        "also fit the echo path by least squares over the last seconds and hand the fit to the "
        "filter, which then cancels deeper sooner (edged/block_estimate.py)",
    )
    saturation_fit: bool = _flag(
        True,
        "with block_fit: fit how the loudspeaker saturates (the reference as x - a x^3 before the "
        "filter, a from the fit), so that the filter cancels its distortion too; off for a speaker "
        "known to be clean",
    )
    distortion_fit: bool = _flag(
        False,
        "experimental, with block_fit: also fit the loudspeaker's distortion (a cubic branch beside "
        "the linear filter; replaces saturation_fit); costs CPU every frame",
    )
    tail_ms: int = _num(256, 20, 500, "echo path length the linear filter covers, after the delay (ms)")
    max_delay_ms: int = _num(
        300, 0, 1000, "largest lead of the speaker signal over the microphone that is tracked (ms)"
    )
    step: float = _num(0.5, 0.01, 1.0, "adaptation step of the echo filter (higher: faster, noisier)")
    suppression_db: float = _num(45.0, 0.0, 80.0, "most the residual echo suppressor attenuates (dB)")
    oversubtraction: float = _num(
        4.0, 0.5, 10.0, "how much margin the suppressor keeps over the residual echo it expects"
    )
    talk_over_oversubtraction: float = _num(
        0.25,
        0.0,
        10.0,
        "the same margin while the user talks over the reply (the barge-in gate hears them and the "
        "output is not the echo): gentler, so that what is uploaded keeps their voice whole; the "
        "speech detector still hears the output suppressed by oversubtraction",
    )
    distortion_db: float = _num(
        33.0,
        10.0,
        120.0,
        "how far below the echo the loudspeaker's distortion lies, which no linear filter removes: "
        "the suppressor expects at least this much of the echo estimate to remain (dB; 120: none)",
    )
    echo_decay_ms: int = _num(
        60, 5, 1000, "how long the suppressor expects echo to linger after the estimate falls (ms)"
    )
    echo_hangover_ms: int = _num(
        500, 0, 2000, "after playback stops, how long its echo is still expected in the room (ms)"
    )
    barge_in_decay_ms: int = _num(
        80,
        5,
        2000,
        "how slowly the echo the gate expects dies away (room reverberation); longer: fewer "
        "false barge-ins, later real ones (ms)",
    )
    barge_in_margin_db: float = _num(
        8.0, 0.0, 40.0, "during playback, how far above the expected echo a frame must be to be the user (dB)"
    )
    barge_in_min_dbfs: float = _num(
        -58.0,
        -120.0,
        0.0,
        "during playback, quieter frames never start a barge-in: someone talking over the device is "
        "louder, the canceller's residual is not (dBFS of the cancelled signal; -120: off)",
    )
    barge_in_pitch: float = _num(
        0.5,
        0.0,
        2.0,
        "during playback, a frame that repeats at a period the device's own voice has not had in the "
        "last moments is the user even under barge_in_margin_db: how much more periodic (0-1) it must "
        "be there than the device's voice was (over 1: off)",
    )
    barge_in_pitch_margin_db: float = _num(
        2.0,
        -40.0,
        40.0,
        "during playback, how far above the expected echo a frame must still be for its pitch to count "
        "(see barge_in_pitch) (dB)",
    )
    far_end_active_dbfs: float = _num(
        -50.0,
        -120.0,
        0.0,
        "speaker output louder than this counts as playback; turns starting then are barge-ins (dBFS)",
    )


def _text(default: str, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class RealtimeConfig:
    """The OpenAI Realtime session (GA protocol, server turn detection off: edged decides turns).

    The API key is never in this file: it is read from $OPENAI_API_KEY, the file named by
    api_key_file, or the systemd credential `openai_api_key`."""

    url: str = _text(
        "wss://api.openai.com/v1/realtime",
        "WebSocket endpoint; ws:// only to a loopback host (the local server)",
    )
    model: str = _text("gpt-realtime-2.1-mini", "Realtime model")
    voice: str = _text("marin", "assistant voice (fixed once the session has spoken)")
    instructions: str = _text(
        "You are the voice of a kitchen smart speaker. Answer briefly, in one or two spoken sentences.",
        "system instructions for the assistant",
    )
    transcription_model: str = _text(
        "gpt-4o-mini-transcribe", "model that transcribes the user's turns for the journal; empty: none"
    )
    transcription_language: str = _text("", "language hint for that transcript (ISO 639-1), empty: automatic")
    noise_reduction: str = _choice(
        "far_field", ("far_field", "near_field", "off"), "the service's own input noise reduction"
    )
    api_key_file: str = _text("", "file holding the API key (first line), if not in the environment")
    idle_disconnect_s: int = _num(120, 5, 86400, "hang up after this long without a turn or a reply (s)")
    reconnect_min_ms: int = _num(
        500, 50, 60000, "first reconnect delay; doubles per failure, with jitter (ms)"
    )
    reconnect_max_ms: int = _num(30000, 100, 600000, "longest reconnect delay (ms)")
    bad_key_retry_s: int = _num(300, 10, 86400, "wait after the API key was rejected before trying again (s)")
    context_turns: int = _num(
        10, 0, 100, "past turns carried as text into a new session after expiry or a drop"
    )
    context_keep_s: int = _num(
        600, 0, 86400, "conversation older than this is not carried into a new session (s)"
    )
    playback_prebuffer_ms: int = _num(
        100, 0, 2000, "reply audio buffered before the speaker starts: absorbs network jitter (ms)"
    )


@dataclass(frozen=True)
class ToolsConfig:
    """Functions the assistant may call: built-ins, or tools installed under the `edged.tools`
    entry-point group. A tool that fails or times out returns an error to the model."""

    enabled: tuple[str, ...] = field(
        default=("current_time", "set_timer", "cancel_timer", "list_timers"),
        metadata={"doc": "names of the tools offered to the assistant, in order"},
    )
    timeout_s: float = _num(10.0, 0.1, 300.0, "a tool call still running after this returns an error (s)")


@dataclass(frozen=True)
class PriceConfig:
    """USD per 1M tokens."""

    text_in: float = _num(0.0, 0.0, 1000.0, "text input")
    text_in_cached: float = _num(0.0, 0.0, 1000.0, "cached text input")
    text_out: float = _num(0.0, 0.0, 1000.0, "text output")
    audio_in: float = _num(0.0, 0.0, 1000.0, "audio input")
    audio_in_cached: float = _num(0.0, 0.0, 1000.0, "cached audio input")
    audio_out: float = _num(0.0, 0.0, 1000.0, "audio output")


def _default_prices() -> dict[str, PriceConfig]:
    from .cost import DEFAULT_PRICES

    return {m: PriceConfig(**dataclasses.asdict(p)) for m, p in DEFAULT_PRICES.items()}


@dataclass(frozen=True)
class CostConfig:
    """Money: every reply's usage is priced and booked per day; at the daily budget edged stops
    opening sessions until the next day (and says so in the journal)."""

    daily_budget_usd: float = _num(0.0, 0.0, 100000.0, "most spent per day; 0: no limit (USD)")
    ledger_file: str = _text(
        "",
        "where the daily totals are kept across restarts; empty: cost-ledger.json in systemd's "
        "$STATE_DIRECTORY, or nowhere when there is none",
    )
    prices: dict[str, PriceConfig] = field(
        default_factory=_default_prices,
        metadata={"doc": "price table per model, USD per 1M tokens (the model in use must be listed)"},
    )


@dataclass(frozen=True)
class AudioConfig:
    """The live microphone and speaker (`edged run`); list devices with `edged devices`."""

    input_device: str = _text("", "microphone: part of its name or its index; empty: the system default")
    output_device: str = _text("", "speaker: part of its name or its index; empty: the system default")
    sample_rate_hz: int = _num(0, 0, 192000, "stream rate; 0: the microphone's default (resampled)")
    block_ms: int = _num(10, 5, 40, "samples moved per callback (ms)")
    latency: str = _choice("low", ("low", "high"), "PortAudio latency class: high survives busy machines")
    output_lead_ms: int = _num(
        40, 10, 500, "speaker audio queued ahead of the callback; more survives a late frame loop (ms)"
    )
    reopen_min_ms: int = _num(500, 50, 60000, "first retry after the device disappeared (ms); doubles")
    reopen_max_ms: int = _num(10000, 100, 600000, "longest wait between retries to open the device (ms)")


@dataclass(frozen=True)
class MetricsConfig:
    """Opt-in Prometheus counters for `edged run`: frames, xruns, turns, barge-ins, uploaded
    seconds, tokens, cost, frame-loop time."""

    listen: str = _text(
        "", "serve /metrics at host:port, host 127.0.0.1, [::1] or localhost only; empty: off"
    )
    textfile: str = _text(
        "", "node_exporter textfile (a path ending in .prom) rewritten atomically; empty: off"
    )
    textfile_every_ms: int = _num(10000, 1000, 600000, "how often the textfile is rewritten (ms)")


@dataclass(frozen=True)
class Config:
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    aec: AecConfig = field(default_factory=AecConfig)
    realtime: RealtimeConfig = field(default_factory=RealtimeConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def check(self) -> None:
        """Rules that span keys; called after every field passed its own check."""
        d, g = self.detector, self.gate
        if self.aec.half_duplex and not self.aec.enabled:
            raise ConfigError(
                "aec.half_duplex = true: needs aec.enabled = true (half duplex is how the echo slot "
                "handles the speaker; with the slot disabled nothing would mute the microphone)"
            )
        for hold, start in (
            ("hold_probability", "start_probability"),
            ("fresh_hold_probability", "fresh_start_probability"),
            ("fresh_denoised_hold_probability", "fresh_denoised_start_probability"),
        ):
            if getattr(d, hold) > getattr(d, start):
                raise ConfigError(
                    f"detector.{hold} = {getattr(d, hold)}: must not exceed "
                    f"detector.{start} ({getattr(d, start)})"
                )
        _check_url(self.realtime.url)
        if self.realtime.model not in self.cost.prices:
            raise ConfigError(
                f"realtime.model = {self.realtime.model!r}: cost.prices has no entry for it "
                f"(listed: {', '.join(sorted(self.cost.prices))})"
            )
        for model, price in self.cost.prices.items():
            for kind in ("text_in", "audio_in"):
                if getattr(price, f"{kind}_cached") > getattr(price, kind):
                    raise ConfigError(
                        f"cost.prices.{model}.{kind}_cached = {getattr(price, f'{kind}_cached')}: "
                        f"must not exceed {kind} ({getattr(price, kind)})"
                    )
        _check_tools(self.tools.enabled)
        _check_metrics(self.metrics)
        for section, lo, hi in (
            ("realtime", "reconnect_min_ms", "reconnect_max_ms"),
            ("audio", "reopen_min_ms", "reopen_max_ms"),
        ):
            sec = getattr(self, section)
            if getattr(sec, lo) > getattr(sec, hi):
                limit = f"{section}.{hi} ({getattr(sec, hi)})"
                raise ConfigError(f"{section}.{lo} = {getattr(sec, lo)}: must not exceed {limit}")
        for end in ("end_silence_ms", "early_end_silence_ms"):
            if g.post_roll_ms > getattr(g, end):
                raise ConfigError(
                    f"gate.post_roll_ms = {g.post_roll_ms}: must not exceed gate.{end} ({getattr(g, end)})"
                )


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _check_tools(names: tuple[str, ...]) -> None:
    """Enabled tools must exist now, not at the assistant's first call."""
    from .tools import ToolError, discover

    try:
        discover().select(names)
    except ToolError as e:
        raise ConfigError(f"tools.enabled = {list(names)!r}: {e}") from None


def _check_url(url: str) -> None:
    """wss:// anywhere; plain ws:// only to this machine, so a key never crosses a network unencrypted."""
    parts = urlsplit(url)
    if parts.scheme == "wss" and parts.hostname:
        return
    if parts.scheme == "ws" and parts.hostname in LOOPBACK_HOSTS:
        return
    raise ConfigError(
        f"realtime.url = {url!r}: must be a wss:// URL, or ws:// to a loopback host "
        f"({', '.join(LOOPBACK_HOSTS)})"
    )


def listen_address(spec: str) -> tuple[str, int]:
    """`metrics.listen` as (host, port): `host:port` or `[::1]:port`, loopback only, because
    the counters tell when someone in the house speaks. The config check and the daemon's
    endpoint read it through this one function."""
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]")
    if not (sep and host in LOOPBACK_HOSTS and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(
            f"metrics.listen = {spec!r}: must be host:port with host one of "
            f"{', '.join(LOOPBACK_HOSTS)} (IPv6 in brackets) and port 1-65535, or empty"
        )
    return host, int(port)


def _check_metrics(m: MetricsConfig) -> None:
    if m.listen:
        listen_address(m.listen)
    if m.textfile and not m.textfile.endswith(".prom"):
        raise ConfigError(
            f"metrics.textfile = {m.textfile!r}: must end in .prom (node_exporter reads only those), "
            "or be empty"
        )


def _allowed(f: dataclasses.Field, kind: Any) -> str:
    md = f.metadata
    origin = typing.get_origin(kind)
    if origin is tuple:
        return "a list of names"
    if origin is dict:
        return "a mapping of model name to " + ", ".join(x.name for x in dataclasses.fields(PriceConfig))
    if "choices" in md:
        return "one of " + ", ".join(repr(c) for c in md["choices"])
    if kind is bool:
        return "true or false"
    if kind is str:
        return "text"
    name = "an integer" if kind is int else "a number"
    if "min" in md:
        return f"{name} from {md['min']} to {md['max']}"
    return name


def _field_kind(cls: type, f: dataclasses.Field) -> Any:
    hints = typing.get_type_hints(cls)
    return hints[f.name]


def _convert(path: str, value: Any, f: dataclasses.Field, kind: type) -> Any:
    ok = False
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str)
    md = f.metadata
    if ok and "choices" in md:
        ok = value in md["choices"]
    if ok and "min" in md:
        ok = md["min"] <= value <= md["max"]
    if not ok:
        raise ConfigError(f"{path} = {value!r}: must be {_allowed(f, kind)}")
    return value


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        where = prefix or "the top level"
        raise ConfigError(f"{where} = {raw!r}: must be a mapping of keys to values")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            path = f"{prefix}.{key}" if prefix else str(key)
            raise ConfigError(f"{path}: unknown key (allowed: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        path = f"{prefix}.{name}" if prefix else name
        kind = _field_kind(cls, f)
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, raw[name], path)
        elif typing.get_origin(kind) is tuple:
            kwargs[name] = _names(path, raw[name], f, kind)
        elif typing.get_origin(kind) is dict:
            kwargs[name] = _mapping(path, raw[name], f, kind)
        else:
            kwargs[name] = _convert(path, raw[name], f, kind)
    return cls(**kwargs)


def _names(path: str, value: Any, f: dataclasses.Field, kind: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{path} = {value!r}: must be {_allowed(f, kind)}")
    return tuple(value)


def _mapping(path: str, value: Any, f: dataclasses.Field, kind: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{path} = {value!r}: must be {_allowed(f, kind)}")
    item = typing.get_args(kind)[1]
    required = [x.name for x in dataclasses.fields(item)]
    out = {}
    for k, v in value.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{path}: key {k!r} must be a model name")
        if not isinstance(v, Mapping) or set(v) != set(required):
            raise ConfigError(f"{path}.{k} = {v!r}: must give exactly {', '.join(required)}")
        out[k] = _build(item, v, f"{path}.{k}")
    return out


def apply_override(raw: dict, assignment: str) -> None:
    """Apply one `--set section.key=value`; the value is read as a YAML scalar."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: must look like section.key=value")
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")
    if any(not k for k in keys):
        raise ConfigError(f"--set {assignment!r}: key path {path!r} has an empty part")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {assignment!r}: value is not valid YAML ({e.problem})") from None
    node = raw
    for i, k in enumerate(keys[:-1]):
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        elif not isinstance(nxt, dict):
            where = ".".join(keys[: i + 1])
            raise ConfigError(f"--set {assignment!r}: {where} is not a section")
        node = nxt
    node[keys[-1]] = value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read YAML (or the built-in defaults when `path` is None), apply overrides, validate."""
    raw: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
        except UnicodeDecodeError as e:
            raise ConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
        if raw is None:
            raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    for assignment in overrides:
        apply_override(raw, assignment)
    cfg = _build(Config, raw, "")
    cfg.check()
    return cfg


def to_dict(cfg: Any) -> dict:
    """Plain YAML/JSON data: lists for tuples, so a dump reads back as the same config."""

    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))


HEADER = """\
# edged configuration. Every key is shown with its default, its unit and what is allowed.
# Check a file with `edged config check FILE`.
# Any key can be overridden on the command line: --set section.key=value (repeatable).
# This file is the output of `edged config show --documented`.
"""


def render_documented(cfg: Config) -> str:
    """YAML of `cfg` with each section's and key's documentation as comments."""
    lines = [HEADER]
    values = to_dict(cfg)
    for f in dataclasses.fields(Config):
        section = _field_kind(Config, f)
        lines.append(f"{f.name}:")
        doc = " ".join((section.__doc__ or "").split())
        lines += [f"  # {line}" for line in textwrap.wrap(doc, 96)]
        for path, _default, allowed, kdoc in describe(section, f.name):
            key = path.split(".")[-1]
            lines.append(f"  # {kdoc}. Allowed: {allowed}.")
            v = values[f.name][key]
            if isinstance(v, dict) and v:
                lines.append(f"  {key}:")
                for model, table in v.items():
                    row = ", ".join(f"{k}: {x}" for k, x in table.items())
                    lines.append(f"    {model}: {{{row}}}")
                continue
            value = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
            value = value.removesuffix("\n...").strip()
            lines.append(f"  {key}: {value}")
        lines.append("")
    return "\n".join(lines)


def describe(cls: type = Config, prefix: str = "") -> list[tuple[str, Any, str, str]]:
    """(key path, default, allowed, doc) for every leaf key: drives docs and their test."""
    out = []
    for f in dataclasses.fields(cls):
        path = f"{prefix}.{f.name}" if prefix else f.name
        kind = _field_kind(cls, f)
        if dataclasses.is_dataclass(kind):
            out += describe(kind, path)
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            out.append((path, default, _allowed(f, kind), f.metadata.get("doc", "")))
    return out


__all__ = [
    "EX_CONFIG",
    "AecConfig",
    "Config",
    "ConfigError",
    "CostConfig",
    "DetectorConfig",
    "GateConfig",
    "PriceConfig",
    "RealtimeConfig",
    "ToolsConfig",
    "apply_override",
    "describe",
    "load_config",
    "render_documented",
    "to_dict",
]
