"""The frame loop's actions carried to the Realtime session, in order.

Shared by the live daemon and the closed-loop conversation so both hand the
session exactly the same calls: a start (with its barge-in flag), the
confirmation, each chunk of upload audio, the commit with the last chunk, or
the discard.
"""

from __future__ import annotations

from collections.abc import Callable

from .frames import RATE_HZ
from .gate import Action, Commit, Confirm, Discard, Start
from .pipeline import FrameResult
from .realtime.session import RealtimeSession

OnAction = Callable[[Action], None]


def feed(session: RealtimeSession, res: FrameResult, on_action: OnAction | None = None) -> None:
    """`on_action` sees each action after the session has: the session's turn count is the
    turn's number by then."""
    uploads = iter(res.uploads)
    for a in res.actions:
        if isinstance(a, Start):
            session.turn_started(a.barge_in)
        elif isinstance(a, Confirm):
            session.turn_confirmed()
        elif isinstance(a, Commit):
            if last := next(uploads, ""):
                session.turn_audio(last)
            session.turn_committed((a.at - a.speech_end) * 1000 / RATE_HZ)
        elif isinstance(a, Discard):
            session.turn_discarded()
        elif chunk := next(uploads, ""):  # Append
            session.turn_audio(chunk)
        if on_action is not None:
            on_action(a)
