"""The API key: found in the places a device keeps secrets, and never shown.

Order: the systemd credential (`LoadCredential=openai_api_key:…` puts it in
$CREDENTIALS_DIRECTORY, readable only by the service), then $OPENAI_API_KEY, then
the file named in the config. Errors say where edged looked, never what it found;
a logging filter masks the key should any message ever carry it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

CREDENTIAL_NAME = "openai_api_key"
MASK = "[redacted key]"


class MissingKey(Exception):
    """No usable key anywhere; the message lists where edged looked."""


def _read_first_line(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8 text"
        raise MissingKey(f"cannot read the API key file {path}: {reason}") from None
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def load_api_key(key_file: str = "", environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    looked = []
    creds = env.get("CREDENTIALS_DIRECTORY")
    if creds:
        path = Path(creds) / CREDENTIAL_NAME
        looked.append(f"credential {CREDENTIAL_NAME}")
        if path.exists() and (key := _read_first_line(path)):
            return key
    looked.append("$OPENAI_API_KEY")
    if key := env.get("OPENAI_API_KEY", "").strip():
        return key
    if key_file:
        looked.append(f"realtime.api_key_file ({key_file})")
        if key := _read_first_line(Path(key_file)):
            return key
    raise MissingKey("no OpenAI API key found (looked in: " + ", ".join(looked) + ")")


def redact(text: str, key: str) -> str:
    return text.replace(key, MASK) if key else text


class RedactingFilter(logging.Filter):
    """Masks the key in every record passing through a handler, whatever formatted it."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self._key = key

    def filter(self, record: logging.LogRecord) -> bool:
        if self._key:
            msg = record.getMessage()
            if self._key in msg:
                record.msg, record.args = redact(msg, self._key), None
        return True


def use_api_key(key_file: str = "") -> str:
    """The key for this process, with every current log handler masking it from now on."""
    key = load_api_key(key_file)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter(key))
    return key
