"""Run a command under the unit's system-call restrictions, without systemd.

`/usr/bin/python3 tests/syscall_sandbox.py UNIT COMMAND...` reads SystemCallFilter=,
SystemCallErrorNumber= and RestrictAddressFamilies= from the unit, expands the groups with
`systemd-analyze syscall-filter`, loads the same seccomp filter (with no_new_privs, as
NoNewPrivileges=yes) and execs the command. Needs Debian's python3-seccomp, so it runs on
the system interpreter, not the virtualenv's.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys

import seccomp


def expand(group: str, seen: set[str]) -> set[str]:
    out: set[str] = set()
    text = subprocess.run(
        ["systemd-analyze", "syscall-filter", group], capture_output=True, text=True, check=True
    ).stdout
    for line in text.splitlines()[1:]:
        name = line.strip()
        if not name or name.startswith("#"):
            continue
        if name.startswith("@"):
            if name not in seen:
                seen.add(name)
                out |= expand(name, seen)
        else:
            out.add(name)
    return out


def names(items: list[str]) -> set[str]:
    out: set[str] = set()
    for item in items:
        out |= expand(item, set()) if item.startswith("@") else {item}
    return out


def main() -> None:
    unit, command = sys.argv[1], sys.argv[2:]
    allow: set[str] = set()
    families: list[str] = []
    errno_name = "EPERM"
    with open(unit, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for line in lines:
        key, _, value = line.strip().partition("=")
        if key == "SystemCallFilter":
            if value.startswith("~"):
                allow -= names(value[1:].split())
            else:
                allow |= names(value.split())
        elif key == "SystemCallErrorNumber":
            errno_name = value
        elif key == "RestrictAddressFamilies":
            families = value.split()
    flt = seccomp.SyscallFilter(defaction=seccomp.ERRNO(getattr(errno, errno_name)))
    for name in sorted(allow - {"socket"}):
        with contextlib.suppress(RuntimeError, ValueError):  # not a system call on this architecture
            flt.add_rule(seccomp.ALLOW, name)
    for fam in families:  # RestrictAddressFamilies=: socket() for those only
        flt.add_rule(seccomp.ALLOW, "socket", seccomp.Arg(0, seccomp.EQ, int(getattr(socket, fam))))
    flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.GE, 0))
    flt.load()
    print(f"sandbox: {len(allow)} system calls, sockets {' '.join(families)}", file=sys.stderr)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
