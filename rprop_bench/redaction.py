"""Credentials out of everything the harness writes: URIs, files, console output.

A tracking URI may carry a password (``postgresql://user:secret@host/db``), given on the
command line or in ``MLFLOW_TRACKING_URI``. MLflow needs it to connect, but nothing the
harness keeps or shows does: run params and tags, the config artifact, Hydra's ``.hydra``
files, the console and the reports get ``postgresql://user:***@host/db`` instead.
:class:`RedactingStream` wraps ``sys.stdout`` and ``sys.stderr`` in the CLI, so that a
message or traceback of any library is covered too.
"""

from __future__ import annotations

import io
import os
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

__all__ = ["MASK", "RedactingStream", "redact", "redact_file", "secrets_in"]

MASK = "***"
#: ``scheme://user:password@``: the password is what is masked; the user name stays. Hydra
#: logs an override's colons escaped (``postgresql\://user\:password@``): matched too.
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*\\?://[^\s:/@'\"]*?\\?:)[^\s@/'\"]+(?=@)")
#: A ``password=...`` query parameter of a database URL (psycopg, SQLAlchemy).
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&](?:password|passwd|pwd)=)[^&\s'\"]+", re.IGNORECASE)
#: Environment variables whose value is a secret MLflow reads (not shown where a URI is).
SECRET_ENV = ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


def secrets_in(uri: str) -> list[str]:
    """The password of ``uri`` as written and percent-decoded (both may appear in text)."""
    match = _USERINFO.search(uri)
    if not match:
        return []
    raw = uri[match.end("head") : match.end()]
    return sorted({raw, urllib.parse.unquote(raw)} - {""}, key=len, reverse=True)


def _known_secrets() -> list[str]:
    found = secrets_in(os.environ.get("MLFLOW_TRACKING_URI", ""))
    found += [os.environ[name] for name in SECRET_ENV if len(os.environ.get(name, "")) >= 4]
    return found


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every URI password masked, and every known secret (``extra``, the
    password of ``MLFLOW_TRACKING_URI``, ``MLFLOW_TRACKING_PASSWORD``) wherever it stands.

    >>> redact("store: postgresql://me:s3cret@db:5432/runs")
    'store: postgresql://me:***@db:5432/runs'
    """
    text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    text = _QUERY_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    for secret in [*extra, *_known_secrets()]:
        if secret and secret != MASK:
            text = text.replace(secret, MASK)
    return text


def redact_file(path: Path, extra: Iterable[str] = ()) -> None:
    """Rewrite the text file ``path`` redacted, and make it readable by its owner only."""
    text = path.read_text(encoding="utf-8", errors="replace")
    clean = redact(text, extra)
    if clean != text:
        path.write_text(clean, encoding="utf-8")
    path.chmod(0o600)


class RedactingStream(io.TextIOBase):
    """A text stream that writes to ``stream`` with :func:`redact` applied, line by line (a
    secret split across two writes is still caught: text is held back to the next newline,
    unless flushed)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending or "\r" in self._pending:
            cut = max(self._pending.rfind("\n"), self._pending.rfind("\r")) + 1
            done, self._pending = self._pending[:cut], self._pending[cut:]
            self._stream.write(redact(done))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(redact(self._pending))
            self._pending = ""
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
