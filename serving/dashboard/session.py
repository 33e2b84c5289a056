"""Browser sessions of the dashboard: an API key is exchanged once for a signed, expiring cookie
(HttpOnly, SameSite=Strict), so the key never sits in the browser.

The signing secret is derived from the configured API keys' digests: every worker of the service signs
and checks alike without sharing state, and rotating the keys ends every session.
"""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE = "persona_session"


class SessionSigner:
    def __init__(self, digests: list[bytes], *, hours: float) -> None:
        self._secret = hashlib.sha256(b"persona-dashboard-session\0" + b"".join(sorted(digests))).digest()
        self.seconds = int(hours * 3600)

    def _sign(self, expires: int) -> str:
        return hmac.new(self._secret, str(expires).encode(), hashlib.sha256).hexdigest()

    def issue(self, *, now: float | None = None) -> str:
        """A token valid for `hours` from now: `<expiry epoch>.<hmac>`."""
        expires = int(now if now is not None else time.time()) + self.seconds
        return f"{expires}.{self._sign(expires)}"

    def valid(self, token: str | None, *, now: float | None = None) -> bool:
        if not token or "." not in token:
            return False
        expires_text, _, signature = token.partition(".")
        if not expires_text.isdigit():
            return False
        expires = int(expires_text)
        if expires < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(signature, self._sign(expires))
