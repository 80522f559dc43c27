"""The API key is found where a device keeps it, and never printed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from edged.secrets import MASK, MissingKey, RedactingFilter, load_api_key

KEY = "sk-test-abcdef0123456789"


def test_credential_beats_environment_beats_file(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openai_api_key").write_text(KEY + "\n")
    f = tmp_path / "key"
    f.write_text("sk-from-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(creds), "OPENAI_API_KEY": "sk-from-env"}
    assert load_api_key(str(f), env) == KEY
    assert load_api_key(str(f), {"OPENAI_API_KEY": "sk-from-env"}) == "sk-from-env"
    assert load_api_key(str(f), {}) == "sk-from-file"


def test_missing_key_says_where_it_looked_not_what_it_found(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(MissingKey) as e:
        load_api_key(str(empty), {"OPENAI_API_KEY": "  "})
    assert "$OPENAI_API_KEY" in str(e.value) and "api_key_file" in str(e.value)
    with pytest.raises(MissingKey, match="cannot read"):
        load_api_key(str(tmp_path / "absent"), {})


def test_log_records_carrying_the_key_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("edged.test.secret")
    flt = RedactingFilter(KEY)
    caplog.handler.addFilter(flt)
    try:
        with caplog.at_level(logging.INFO, logger="edged.test.secret"):
            log.info("connecting with %s", f"Bearer {KEY}")
    finally:
        caplog.handler.removeFilter(flt)
    assert KEY not in caplog.text and MASK in caplog.text
