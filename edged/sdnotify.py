"""systemd's notify protocol: READY, WATCHDOG, STATUS, RELOADING, STOPPING.

A datagram per message to the socket named in $NOTIFY_SOCKET (a path, or an
abstract name written with a leading "@"). Without that variable every call is
a no-op, so the daemon runs the same under systemd, in a terminal and in tests.
A failed send is logged once and never raised: systemd missing a message must
not take the daemon down (the watchdog will say so if it matters).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger("edged.systemd")


class Notifier:
    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        if self._addr:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            # never wait for systemd: a full socket buffer drops the message, not the audio loop
            self._sock.setblocking(False)
        self._failed = False
        self.watchdog_interval_s = _watchdog_interval_s(env)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *fields: str) -> None:
        if self._sock is None:
            return
        try:
            self._sock.sendto("\n".join(fields).encode(), self._addr)
        except OSError as e:
            if not self._failed:
                why = e.strerror or type(e).__name__
                log.warning("cannot notify systemd at %s: %s", self._addr.lstrip("\0"), why)
            self._failed = True
        else:
            self._failed = False

    def ready(self, status: str = "") -> None:
        self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> None:
        # MONOTONIC_USEC lets systemd (Type=notify-reload and newer) order the reload
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _watchdog_interval_s(env: Mapping[str, str]) -> float | None:
    """Half of systemd's WatchdogSec, if the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 1e6 / 2
