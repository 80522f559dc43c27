"""`edged run`: live audio → frame loop → Realtime session → speaker, under systemd.

The shell around the sans-I/O parts. One asyncio loop polls the audio rings every
few ms, runs what was captured through the pipeline, hands the actions to the
session and keeps the speaker's ring fed from the playback buffer. systemd hears
READY once audio flows, WATCHDOG only while frames keep arriving and the loop keeps
up (or while a vanished device is being reopened), STATUS with what the device is
doing; SIGHUP reloads the YAML (an invalid file is refused and the old one keeps
running), SIGTERM stops within two seconds with a reply in flight cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import time
from datetime import date, datetime
from typing import TextIO

from . import aec
from .audio import DeviceError, DuplexAudio
from .backoff import backoff_ms
from .config import Config, ConfigError, listen_address, load_config
from .feed import feed
from .gate import Action, Commit, Discard, Phase, Start
from .metrics import Metrics, serve, write_textfile
from .pipeline import Pipeline
from .playback import RATE_HZ as PLAY_RATE_HZ
from .playback import Playback
from .realtime.session import Budget, RealtimeSession, ledger_path, tool_runner
from .resample import StreamingResampler
from .sdnotify import Notifier
from .tools import ToolContext

log = logging.getLogger("edged")

POLL_S = 0.005
STALL_S = 1.0  # no captured audio for this long: the stream is stalled or the device is gone
START_GRACE_S = 3.0  # a stream just opened may take this long to deliver its first block
LAG_S = 0.5  # the loop fell this far behind the audio: do not feed the watchdog
STATUS_EVERY_S = 2.0
STOPPED = "stream stopped"
RESTART_EVERY_S = 10.0
STOP_TIMEOUT_S = 1.5


class Daemon:
    def __init__(
        self,
        cfg: Config,
        config_path: str | None,
        api_key: str,
        *,
        overrides: list[str] | None = None,
        notifier: Notifier | None = None,
        trace: TextIO | None = None,
        audio: DuplexAudio | None = None,
    ) -> None:
        self.cfg = cfg
        self.config_path = config_path
        self.overrides = overrides or []
        self.notifier = notifier or Notifier()
        self.audio = audio or DuplexAudio(cfg.audio)
        self.playback = Playback(prebuffer_ms=cfg.realtime.playback_prebuffer_ms)
        self.playback.on_flush.append(self.audio.stop_output)
        self.playback.downstream_samples = self._unheard_samples
        clock_s = time.monotonic
        self.tool_context = ToolContext(now=lambda: datetime.now().astimezone(), monotonic_s=clock_s)
        tools, run_tool = tool_runner(cfg.tools, self.tool_context)
        self.budget = Budget(cfg.cost, cfg.realtime.model, date.today, path=ledger_path(cfg.cost, os.environ))
        self.session = RealtimeSession(
            cfg.realtime,
            api_key,
            self.playback,
            tools=tools,
            run_tool=run_tool,
            trace=trace,
            budget=self.budget,
            tool_context=self.tool_context,
        )
        self.pipeline: Pipeline | None = None
        self.pipeline_rate = 0
        self._pending_cfg: Config | None = None
        self._to_speaker: StreamingResampler | None = None
        self._stop = asyncio.Event()
        self._last_audio_s = 0.0
        self._reopening = False
        self._restarted_s = -RESTART_EVERY_S
        self._next_watchdog = self._next_status = 0.0
        self._ready = False
        self.metrics = Metrics()
        self._textfile_ok = True

    # -- audio -----------------------------------------------------------------------------------
    def _unheard_samples(self) -> int:
        rate = self.audio.rate_hz
        return self.audio.queued_output() * PLAY_RATE_HZ // rate if rate else 0

    async def _open_audio(self) -> None:
        """Open the stream; while the device is missing, retry with backoff (never give up:
        a USB microphone plugged in later must just work)."""
        a = self.cfg.audio
        failures = 0
        self._reopening = True
        while not self._stop.is_set():
            try:
                self.audio.open()
            except DeviceError as e:
                failures += 1
                delay_ms = backoff_ms(failures, a.reopen_min_ms, a.reopen_max_ms)
                log.warning("audio device unavailable (%s); retrying in %.1f s", e, delay_ms / 1000)
                if not self._ready:
                    # started without a device: up and waiting for one (a card plugged in later
                    # must just work), not a start that systemd should time out and retry
                    self._ready = True
                    self.notifier.ready(self.status())
                await self._wait_alive(delay_ms / 1000)
                continue
            break
        self._reopening = False
        if not self._stop.is_set():
            self._opened()

    async def _wait_alive(self, seconds: float) -> None:
        """Wait for the next attempt (or a stop) while telling systemd the daemon is alive:
        waiting for a device is what it should be doing, not a hang to restart."""
        end = time.monotonic() + seconds
        while not self._stop.is_set() and (left := end - time.monotonic()) > 0:
            self._keep_alive(time.monotonic())
            step = min(left, self.notifier.watchdog_interval_s or left, STATUS_EVERY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), step)

    def _keep_alive(self, now: float) -> None:
        """WATCHDOG when due and healthy, STATUS and the xrun report every few seconds."""
        interval = self.notifier.watchdog_interval_s
        if interval and now >= self._next_watchdog and self._healthy(now):
            self.notifier.watchdog()
            self._next_watchdog = now + interval
        if now >= self._next_status:
            self.notifier.status(self.status())
            self._report_xruns()
            self._next_status = now + STATUS_EVERY_S

    def _opened(self) -> None:
        rate = self.audio.rate_hz
        if self.pipeline is None or self.pipeline_rate != rate:
            self.pipeline = Pipeline(self.cfg, rate, rate)
            self.pipeline_rate = rate
        self._to_speaker = StreamingResampler(PLAY_RATE_HZ, rate)
        self._last_audio_s = time.monotonic() + START_GRACE_S - STALL_S

    def _restart_in_place(self, limited: bool = True) -> bool:
        """A stream that stopped by itself (PortAudio's ALSA backend gives up after some
        underruns) while the device is still there: open it again at once and carry on, so
        a user mid-sentence loses a few ms of audio instead of the turn. At most once per
        RESTART_EVERY_S (unless not `limited`: a reload's new settings): a stream that keeps
        dying goes the slow way, with backoff."""
        now = time.monotonic()
        if limited and now - self._restarted_s < RESTART_EVERY_S:
            return False
        if limited:
            self._restarted_s = now
        rate = self.audio.rate_hz
        self.audio.close()
        try:
            self.audio.open(rescan=False)
        except DeviceError:
            return False
        if self.audio.rate_hz != rate:
            self.audio.close()
            return False
        self._opened()  # same rate: the pipeline, and the turn in it, carry on
        return True

    async def _reopen_audio(self, why: str) -> None:
        self._report_xruns()  # the stream's counters go with it: the xruns that killed it too
        self.metrics.add("edged_audio_reopens_total")
        if why == STOPPED and self._restart_in_place():
            log.warning("audio stream stopped by itself; restarted, the turn and the reply go on")
            return
        log.warning("audio stream lost (%s); ending the turn in progress and reopening", why)
        self._end_turn()
        self.audio.close()
        self.playback.flush()
        await self._open_audio()

    def _end_turn(self) -> None:
        if self.pipeline is not None:
            for res in self.pipeline.finish():
                feed(self.session, res, self._count)

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.session.start()
        server = await self._serve_metrics()
        try:
            # compiled before the stream runs (a first compile takes seconds), and also when
            # the canceller is off: a reload may turn it on
            t0 = time.monotonic()
            aec.warm_up()
            log.info("echo canceller ready in %.1f s", time.monotonic() - t0)
            await self._open_audio()
            next_textfile = 0.0
            while not self._stop.is_set():
                await asyncio.sleep(POLL_S)
                now = time.monotonic()
                if self._step(now) and not self._ready:
                    self._ready = True
                    self.notifier.ready(self.status())
                    log.info("listening")
                stopped = not self.audio.active
                if (stopped or now - self._last_audio_s > STALL_S) and not self._reopening:
                    await self._reopen_audio(STOPPED if stopped else "no audio for 1 s")
                    continue
                self._keep_alive(now)
                if self.cfg.metrics.textfile and now >= next_textfile:
                    self._write_textfile()
                    next_textfile = now + self.cfg.metrics.textfile_every_ms / 1000
        finally:
            if server is not None:
                server.close()
            await self._shutdown()
            if self.cfg.metrics.textfile:
                self._write_textfile()
        return 0

    def _step(self, now: float) -> bool:
        """One poll: run what was captured, feed the speaker. True if audio arrived."""
        mic, played = self.audio.read()
        if len(mic):
            self._last_audio_s = now
            if self._pending_cfg is not None and self._gate_idle():
                self._apply(self._pending_cfg)
            assert self.pipeline is not None
            t0 = time.perf_counter()
            results = self.pipeline.process(mic, played)
            for res in results:
                feed(self.session, res, self._count)
            m = self.metrics
            m.add("edged_frame_loop_seconds_total", time.perf_counter() - t0)
            m.add("edged_frames_total", len(results))
            m.add("edged_audio_seconds_total", len(mic) / self.audio.rate_hz)
        self._feed_speaker()
        return len(mic) > 0

    def _count(self, a: Action) -> None:
        if isinstance(a, Start) and a.barge_in:
            self.metrics.add("edged_barge_ins_total")
        elif isinstance(a, Commit):
            self.metrics.add("edged_turns_total")
            if a.reason == "max_length":
                log.warning(
                    "turn %d ran to gate.max_turn_ms (%d ms) without a pause: a TV or a crowd? "
                    "no new turn starts until the sound pauses",
                    a.turn,
                    self.cfg.gate.max_turn_ms,
                )
        elif isinstance(a, Discard):
            self.metrics.add("edged_false_starts_total")

    def _feed_speaker(self) -> None:
        a, rs = self.audio, self._to_speaker
        if rs is None or not a.rate_hz:
            return
        lead = a.rate_hz * self.cfg.audio.output_lead_ms // 1000
        missing = lead - a.queued_output()
        if missing <= 0:
            return
        n24 = -(-missing * PLAY_RATE_HZ // a.rate_hz)
        a.play(rs.process(self.playback.pull(n24)))

    def _healthy(self, now: float) -> bool:
        """Frames keep arriving and the loop keeps up: or a lost device is being reopened."""
        if self._reopening:
            return True
        return now - self._last_audio_s < STALL_S and self.audio.queued_input_s() < LAG_S

    def _gate_idle(self) -> bool:
        return self.pipeline is None or self.pipeline.gate.phase is Phase.IDLE

    def status(self) -> str:
        if self.pipeline is not None and not self._gate_idle():
            state = "user speaking"
        elif self.playback.active:
            state = "replying"
        elif self._reopening:
            state = "waiting for the audio device"
        else:
            state = "listening"
        today = self.budget.ledger.today(self.budget.today())
        return f"{state}; {today.turns} turns, ${today.usd:.2f} today"

    def _report_xruns(self) -> None:
        moved = self.audio.stats.news()
        if moved:
            log.warning("audio: %s", ", ".join(f"{k} +{v}" for k, v in moved.items()))
        for kind, n in moved.items():
            self.metrics.add("edged_xruns_total", n, kind)

    # -- metrics -------------------------------------------------------------------------------
    def render_metrics(self) -> str:
        m, t = self.metrics, self.session.totals
        m.set("edged_reconnects_total", self.session.core.reconnects)
        m.set("edged_replies_resumed_total", self.session.core.resumed_replies)
        m.set("edged_turns_joined_total", self.session.core.joined_turns)
        m.set("edged_uploaded_seconds_total", t.uploaded_ms / 1000)
        m.set("edged_tokens_total", t.tokens_in, "in")
        m.set("edged_tokens_total", t.tokens_out, "out")
        m.set("edged_cost_usd_total", t.usd)
        m.set("edged_cost_usd_today", self.budget.ledger.today(self.budget.today()).usd)
        m.set("edged_speaking", not self._gate_idle())
        m.set("edged_replying", self.playback.active)
        return m.render()

    async def _serve_metrics(self) -> asyncio.Server | None:
        if not self.cfg.metrics.listen:
            return None
        host, port = listen_address(self.cfg.metrics.listen)
        try:
            server = await serve(self.render_metrics, host, port)
        except OSError as e:  # the speaker matters more than its counters
            where = self.cfg.metrics.listen
            log.error("metrics: cannot listen on %s: %s; running without", where, e.strerror)
            return None
        log.info("metrics at http://%s/metrics", self.cfg.metrics.listen)
        return server

    def _write_textfile(self) -> None:
        ok = write_textfile(self.render_metrics(), self.cfg.metrics.textfile)
        if not ok and self._textfile_ok:
            log.warning("metrics: cannot write %s (is its directory writable?)", self.cfg.metrics.textfile)
        self._textfile_ok = ok

    # -- reload and stop -------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: read the YAML again; a bad file changes nothing."""
        self.notifier.reloading()
        try:
            new = load_config(self.config_path, self.overrides)
        except ConfigError as e:
            log.error("reload refused, the running configuration stays: %s", e)
            self.notifier.ready(self.status())
            return
        if self._gate_idle():
            self._apply(new)
        else:
            self._pending_cfg = new  # applied when the user's turn ends
            log.info("reload: applied when the current turn ends")
        self.notifier.ready(self.status())

    def _apply(self, new: Config) -> None:
        self._pending_cfg = None
        old, self.cfg = self.cfg, new
        if new.audio != old.audio:
            log.info("reload: audio settings changed; reopening the stream")
            self.audio.cfg = new.audio
            # at another rate (or if the new device will not open) the loop reopens it the
            # slow way and builds a pipeline for the new rate
            self._restart_in_place(limited=False)
        if (new.detector, new.gate, new.aec) != (old.detector, old.gate, old.aec) and self.audio.rate_hz:
            if self.pipeline is not None and self.pipeline_rate == self.audio.rate_hz:
                rebuilt = self.pipeline.reconfigure(new)  # between turns: see reload
                log.info("reload: %s rebuilt, the rest keeps what it has learnt", ", ".join(rebuilt))
            else:
                self.pipeline = Pipeline(new, self.audio.rate_hz, self.audio.rate_hz)
                self.pipeline_rate = self.audio.rate_hz
        self.budget.limit_usd = new.cost.daily_budget_usd
        if (new.realtime, new.tools, new.metrics) != (old.realtime, old.tools, old.metrics):
            log.warning("reload: realtime, tools and metrics settings take effect after a restart")
        log.info("configuration reloaded")

    async def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping")
        self._end_turn()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.session.stop(STOP_TIMEOUT_S), STOP_TIMEOUT_S)
        self.audio.close()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)


def run(config_path: str | None, overrides: list[str], trace_path: str | None) -> int:
    """`edged run`: exits 78 on a bad config or a missing key (systemd does not retry those)."""
    from .secrets import use_api_key

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1`: every thread's stack into the journal
    cfg = load_config(config_path, overrides)
    key = use_api_key(cfg.realtime.api_key_file)
    # line-buffered: `tail -f` follows a live daemon, and a crash loses no finished line
    trace_file = open(trace_path, "w", encoding="utf-8", buffering=1) if trace_path else None  # noqa: SIM115
    with trace_file or contextlib.nullcontext() as trace:
        daemon = Daemon(cfg, config_path, key, overrides=overrides, trace=trace)
        return asyncio.run(daemon.run())


__all__ = ["Daemon", "run"]
