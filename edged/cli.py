"""Command line: `edged replay|demo|config …`. Thin shell over the sans-I/O core.

Errors a user can fix (bad config, missing file) print one line and exit with
a sysexits code; 78 (EX_CONFIG) tells systemd not to restart into the same
bad file.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import yaml

from .config import EX_CONFIG, Config, ConfigError, load_config, render_documented, to_dict
from .secrets import MissingKey
from .wavio import AudioFileError

EX_CANTCREAT = 73


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE", help="YAML config (default: built-in defaults)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key (repeatable)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    ap = argparse.ArgumentParser(prog="edged", description="Voice daemon for smart speakers.")
    sub = ap.add_subparsers(dest="command", required=True)

    r = sub.add_parser("replay", parents=[common], help="run the decision pipeline on a WAV file")
    r.add_argument("input", help="microphone recording (any rate, any channel count)")
    r.add_argument("--far-end", metavar="WAV", help="what the speaker played, sample-aligned with INPUT")
    r.add_argument("--events", metavar="OUT.jsonl", help="write one JSON object per turn/discard/summary")
    r.add_argument("--clean-out", metavar="OUT.wav", help="write the audio that would be uploaded (24 kHz)")
    r.add_argument("--plot", metavar="OUT.png", help="draw waveform, levels, decisions and turns")
    r.add_argument(
        "--talk",
        choices=("local", "service"),
        help="send the turns for real: to edged's local server, or to realtime.url with the API key",
    )
    r.add_argument("--speed", type=float, default=4.0, help="with --talk local: times real time (default 4)")
    r.add_argument(
        "--trace", metavar="FILE.jsonl", help="with --talk: every client and server event, audio elided"
    )
    r.add_argument("--speaker-out", metavar="OUT.wav", help="with --talk: what the speaker played (24 kHz)")

    d = sub.add_parser(
        "demo",
        parents=[common],
        help="a bundled conversation through the whole device against the local server (no mic, no key)",
    )
    d.add_argument("--speed", type=float, default=4.0, help="times faster than real time (default 4)")
    d.add_argument("--out", metavar="OUT.wav", help="write what the speaker played (24 kHz)")
    d.add_argument("--trace", metavar="FILE.jsonl", help="write every client and server event, audio elided")
    d.add_argument(
        "--echo-db",
        type=float,
        default=10.0,
        help="the speaker's echo over the user's speech level at the microphone (dB, default 10)",
    )
    d.add_argument("--detect-only", action="store_true", help="only score the detector on the recording")

    cal = sub.add_parser(
        "calibrate", parents=[common], help="measure the room's noise and suggest detector thresholds (YAML)"
    )
    cal.add_argument("--seconds", type=float, default=None, help="how long to listen (default 20 s)")
    cal.add_argument("--input", metavar="WAV", help="a recording of the room instead of the microphone")

    mon = sub.add_parser(
        "monitor",
        parents=[common],
        help="live view of level, noise floor, detector and turn gate, to tune thresholds (sends nothing)",
    )
    mon.add_argument("--input", metavar="WAV", help="a recording instead of the microphone")
    mon.add_argument(
        "--speed",
        type=float,
        default=None,
        help="with --input: times real time, 0 = as fast as possible (default 1)",
    )
    mon.add_argument("--seconds", type=float, default=None, help="stop after this much audio (s)")
    mon.add_argument(
        "--plain", action="store_true", help="one text line per update (automatic when stdout is not a TTY)"
    )

    ls = sub.add_parser(
        "local-server",
        help="serve the Realtime protocol (GA) on loopback for development, tests and the demo",
    )
    ls.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ls.add_argument("--port", type=int, default=8765, help="port; 0 picks a free one (default 8765)")
    ls.add_argument(
        "--pace",
        type=float,
        default=4.0,
        help="reply audio speed, multiple of real time; 0 = no pacing (default 4)",
    )
    ls.add_argument(
        "--chunk-ms", type=int, default=100, help="audio per response.output_audio.delta (default 100)"
    )
    ls.add_argument(
        "--latency-ms", type=float, default=0.0, help="wait before the first audio delta (default 0)"
    )
    ls.add_argument("--slow-ms", type=float, default=0.0, help="fault: extra delay before every audio delta")
    ls.add_argument(
        "--max-session-s",
        type=float,
        default=3600.0,
        help="send session_expired after this long (default 3600)",
    )
    ls.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="ACTION[:ARG]@TRIGGER[:N]",
        help="fire once, in order given: drop|close[:CODE]|error[:CODE]|session_expired|malformed[:KIND] "
        "@connect|commit|response|delta:N, e.g. drop@delta:5 (repeatable)",
    )
    ls.add_argument(
        "--script",
        action="append",
        default=[],
        metavar="JSON",
        help='the next response, in order given, e.g. \'{"speak": 1, "repeat": 2}\' (the second bundled '
        'sentence said twice), \'{"fail": "rate_limit_exceeded"}\'; after them replies rotate (repeatable)',
    )
    ls.add_argument(
        "--transcript",
        action="append",
        default=[],
        metavar="TEXT",
        help="next user transcription (repeatable)",
    )
    ls.add_argument(
        "--api-key-env", metavar="VAR", help="accept only the key in this environment variable (else any key)"
    )

    run = sub.add_parser("run", parents=[common], help="the daemon: live microphone and speaker")
    run.add_argument("--trace", metavar="FILE.jsonl", help="every client and server event, audio elided")
    sub.add_parser("devices", help="list the audio devices (for audio.input_device / output_device)")

    c = sub.add_parser("config", help="validate or print configuration")
    csub = c.add_subparsers(dest="config_command", required=True)
    chk = csub.add_parser("check", parents=[common], help="validate a config file")
    chk.add_argument("file")
    show = csub.add_parser("show", parents=[common], help="print the effective config as YAML")
    show.add_argument("file", nargs="?")
    show.add_argument("--documented", action="store_true", help="with every key's unit and allowed values")
    return ap


def _config(args: argparse.Namespace, path: str | None = None) -> Config:
    if path and args.config and path != args.config:
        raise ConfigError(f"two config files given: {path} and --config {args.config}")
    return load_config(path or args.config, args.overrides)


def _replay(args: argparse.Namespace) -> int:
    from . import replay

    cfg = _config(args)
    if args.talk:
        return _replay_talk(args, cfg)
    if args.trace or args.speaker_out:
        print("edged: --trace and --speaker-out need --talk (without it nothing is sent)", file=sys.stderr)
        return 64
    result = replay.replay_file(
        cfg, args.input, args.far_end, trace=bool(args.plot), keep_upload=bool(args.clean_out)
    )
    print(replay.format_table(result))
    if args.events:
        with open(args.events, "w", encoding="utf-8") as f:
            replay.write_events(result, f)
    if args.clean_out:
        replay.write_clean(result, args.clean_out)
    if args.plot:
        replay.plot(result, args.plot, cfg)
    return 0


def _speed_ok(speed: float) -> bool:
    if 0.25 <= speed <= 50:
        return True
    print(f"edged: --speed {speed}: must be from 0.25 to 50", file=sys.stderr)
    return False


def _replay_talk(args: argparse.Namespace, cfg: Config) -> int:
    from .conversation import replay_conversation

    if args.far_end or args.events or args.clean_out or args.plot:
        print(
            "edged: --talk runs the conversation; --far-end, --events, --clean-out and --plot"
            " are for the offline replay",
            file=sys.stderr,
        )
        return 64
    if not _speed_ok(args.speed):
        return 64
    service = args.talk == "service"
    return replay_conversation(cfg, args.input, service, args.speed, args.trace, args.speaker_out)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_conversation_demo, run_demo

    cfg = _config(args)
    if args.detect_only:
        return run_demo(cfg)
    if not _speed_ok(args.speed):
        return 64
    return run_conversation_demo(cfg, args.speed, args.out, args.trace, args.echo_db)


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import run_calibrate

    seconds = args.seconds if args.seconds is not None else (0.0 if args.input else 20.0)
    sys.stdout.write(run_calibrate(_config(args), seconds, args.input))
    return 0


def _monitor(args: argparse.Namespace) -> int:
    from .monitor import run_monitor

    cfg = _config(args)
    if args.speed is not None and not args.input:
        print("edged: --speed needs --input (the microphone runs at real time)", file=sys.stderr)
        return 64
    speed = 1.0 if args.speed is None else args.speed
    if speed != 0 and not _speed_ok(speed):
        return 64
    if args.seconds is not None and not args.seconds > 0:
        print(f"edged: --seconds {args.seconds}: must be more than 0", file=sys.stderr)
        return 64
    return run_monitor(cfg, args.input, speed, args.seconds, plain=True if args.plain else None)


def _local_server(args: argparse.Namespace) -> int:
    """Runs until Ctrl-C/SIGTERM; prints the URL on stdout so a script can start it with --port 0."""
    import json
    import logging
    import os

    from .realtime.local_script import Turn
    from .realtime.local_server import Fault, serve
    from .wavio import EX_UNAVAILABLE

    try:
        faults = [Fault.parse(spec) for spec in args.fault]
    except (TypeError, ValueError) as e:
        print(f"edged: --fault: {e}", file=sys.stderr)
        return 64  # EX_USAGE
    try:
        specs = [json.loads(spec) for spec in args.script]
        for spec in specs:
            if not isinstance(spec, dict):
                raise ValueError(f"{json.dumps(spec)} is not a JSON object")
        script = [Turn.from_spec(spec) for spec in specs]
    except (TypeError, ValueError) as e:  # bad JSON, not an object, an unknown key or value
        print(f"edged: --script: {e}", file=sys.stderr)
        return 64
    api_key = os.environ.get(args.api_key_env) if args.api_key_env else None
    if args.api_key_env and not api_key:
        print(f"edged: --api-key-env: {args.api_key_env} is not set", file=sys.stderr)
        return EX_CONFIG
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        serve(
            args.host,
            args.port,
            on_ready=lambda server: print(server.url, flush=True),
            api_key=api_key,
            pace=args.pace,
            chunk_ms=args.chunk_ms,
            latency_ms=args.latency_ms,
            slow_frames_ms=args.slow_ms,
            max_session_s=args.max_session_s,
            faults=faults,
            script=script,
            transcripts=args.transcript,
        )
    except ValueError as e:
        print(f"edged: local-server: {e}", file=sys.stderr)
        return 64
    except OSError as e:
        print(f"edged: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return EX_UNAVAILABLE
    return 0


def _run(args: argparse.Namespace) -> int:
    from .daemon import run
    from .logs import setup_logging

    setup_logging()
    return run(args.config, args.overrides, args.trace)


def _devices(_args: argparse.Namespace) -> int:
    import sounddevice as sd

    from .audio import list_devices

    print(list_devices(sd))
    return 0


def _config_cmd(args: argparse.Namespace) -> int:
    if args.config_command == "check":
        _config(args, args.file)
        print(f"{args.file}: ok")
        return 0
    cfg = _config(args, args.file)
    if args.documented:
        sys.stdout.write(render_documented(cfg))
    else:
        sys.stdout.write(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "replay": _replay,
        "demo": _demo,
        "calibrate": _calibrate,
        "monitor": _monitor,
        "local-server": _local_server,
        "config": _config_cmd,
        "run": _run,
        "devices": _devices,
    }
    try:
        return handlers[args.command](args)
    except ConfigError as e:
        print(f"edged: config error: {e}", file=sys.stderr)
        return EX_CONFIG
    except MissingKey as e:  # the key is configuration too: systemd must not retry without one
        print(f"edged: {e}", file=sys.stderr)
        return EX_CONFIG
    except AudioFileError as e:
        print(f"edged: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `edged monitor --plain | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit either
        return 128 + 13  # as a shell reports a command ended by SIGPIPE
    except OSError as e:  # an output file that cannot be written
        print(f"edged: cannot write {e.filename}: {e.strerror}", file=sys.stderr)
        return EX_CANTCREAT


if __name__ == "__main__":
    sys.exit(main())
