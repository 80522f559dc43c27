"""Log lines for a terminal or for journald.

Under systemd (`JOURNAL_STREAM` set) each line starts with its syslog priority in
`<N>` form, which journald turns into the entry's priority (so `journalctl -p
warning` works), and carries no timestamp of its own: the journal adds one.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prio = PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        # a multi-line message (a traceback) keeps its priority on every line
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def setup_logging(environ: Mapping[str, str] | None = None, level: int = logging.INFO) -> None:
    env = os.environ if environ is None else environ
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    if env.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
