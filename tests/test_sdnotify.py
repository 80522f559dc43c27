"""systemd's notify protocol over a real datagram socket, as systemd would receive it."""

from __future__ import annotations

import os
import socket
import time

import pytest

from edged.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_reloading_stopping_reach_the_socket(listener) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    n.ready("listening")
    assert recv(sock) == ["READY=1", "STATUS=listening"]
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    n.reloading()
    fields = dict(f.split("=", 1) for f in recv(sock))
    assert fields["RELOADING"] == "1" and int(fields["MONOTONIC_USEC"]) >= before
    n.watchdog()
    assert recv(sock) == ["WATCHDOG=1"]
    n.stopping()
    assert recv(sock) == ["STOPPING=1"]
    n.close()


def test_abstract_socket_names_are_understood() -> None:
    name = f"edged-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        Notifier({"NOTIFY_SOCKET": "@" + name}).status("replying")
        assert recv(sock) == ["STATUS=replying"]
    finally:
        sock.close()


def test_without_systemd_nothing_is_sent_and_a_dead_socket_is_not_fatal(tmp_path, caplog) -> None:
    quiet = Notifier({})
    assert not quiet.enabled and quiet.watchdog_interval_s is None
    quiet.ready()  # a no-op
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    gone.ready()
    gone.watchdog()
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1  # once


def test_watchdog_interval_is_half_of_watchdog_sec_and_only_for_this_process() -> None:
    assert Notifier({"WATCHDOG_USEC": "20000000"}).watchdog_interval_s == 10.0
    mine = {"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(mine).watchdog_interval_s == 2.0
    assert Notifier({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}).watchdog_interval_s is None


def test_a_listener_that_never_reads_cannot_block_the_daemon(listener, caplog) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    t0 = time.monotonic()
    for _ in range(5000):  # far more than a datagram socket buffers
        n.watchdog()
    assert time.monotonic() - t0 < 2.0
    assert sum("cannot notify systemd" in r.getMessage() for r in caplog.records) == 1
    assert recv(sock) == ["WATCHDOG=1"]  # what fitted was delivered
