"""Secrets never printed: URLs shown with their password (and secret query values) masked.

`mask_urls(text)` masks every URL inside a piece of text (a log line, an error message, a config value);
`RedactingFilter` applies it to every log record, so a driver's message that quotes a connection URL
cannot leak a password into the logs either.
"""

from __future__ import annotations

import logging
import re

MASK = "***"
# scheme://user:password@  (the user stays: it says which account, not how to log in)
_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^/@:\s]*):(?P<secret>[^/@\s]*)@", re.I)
# ?token=...&api_key=...: query parameters that carry credentials
_SECRET_QUERY = re.compile(
    r"(?P<head>[?&](?:password|passwd|pwd|secret|token|access_token|api_key|apikey|key|hapikey|sig|signature)=)"
    r"(?P<secret>[^&#\s]+)",
    re.I,
)


def mask_urls(text: str) -> str:
    """`text` with the password of every URL and every secret query value replaced by ***."""
    text = _PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
    return _SECRET_QUERY.sub(lambda m: f"{m.group('head')}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Masks URL credentials in a record's final message (arguments included)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is logging's business, not ours
            return True
        masked = mask_urls(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Attach the filter to every handler of `logger` (default: the root logger), once."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
