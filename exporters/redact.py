"""Redacting secrets (webhook URLs, tokens, HMAC keys) from text that leaves the process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import quote

REDACTED = "<redacted>"

# Secrets recognisable by their shape even when nobody registered them:
# Slack webhook paths, Slack tokens, bearer credentials and URL passwords.
_PATTERNS = (
    (re.compile(r"(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s\"'<>]+"), r"\1" + REDACTED),
    (re.compile(r"\bxox[abposre]-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+"), r"\1" + REDACTED),
    (re.compile(r"(://[^/\s:@]+:)[^/\s@]+@"), r"\1" + REDACTED + "@"),
)

# Shorter registered values would mangle ordinary words; no real secret is this short.
MIN_SECRET_CHARS = 6


class Redactor:
    """Replaces registered secret values, in their raw, URL-quoted and JSON-escaped forms, and known secret shapes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            return
        self._values.update({secret, quote(secret, safe=""), quote(secret), json.dumps(secret)[1:-1]})

    def __call__(self, text: str) -> str:
        # Longest first, so a secret containing another is replaced whole.
        for value in sorted(self._values, key=len, reverse=True):
            text = text.replace(value, REDACTED)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text
