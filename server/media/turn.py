"""TURN relays for browsers that cannot reach a node directly, with short-lived credentials.

Office networks often block UDP; a TURN server (coturn, docs/deploy.md) relays the media over
TCP or TLS for them. hemicycle never stores TURN passwords: it shares one secret with coturn
(``use-auth-secret``, the "TURN REST API" scheme of draft-uberti-behave-turn-rest-00, which
coturn implements) and mints each person, on request, a username ``"<expiry>:<pid>"`` and the
password ``base64(HMAC-SHA1(secret, username))``. coturn recomputes the password from the
username and refuses it after the expiry, so a leaked credential is worth little and nothing
has to be revoked.

``[media] turn = { urls = ["turn:…?transport=udp", "turn:…?transport=tcp", "turns:…:443"],
secret = "…", ttl = 43200 }``; the secret may come from ``HEMICYCLE_TURN_SECRET`` instead
(it then overrides the file), so the file can be committed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DEFAULT_TTL = 12 * 3600
"""Seconds a credential lasts. coturn checks the expiry only when a TURN session
authenticates anew (an allocation keeps the key it derived: its refreshes, permissions and
channel bindings go on after the expiry; seen with coturn 4.6.1, tests/test_reach_expiry.py),
so a call outlives its credential; the node sends each connection fresh ones before they
expire (``rtc.ice``, server/media/signalling.py), for its next allocation."""
MIN_SECRET = 16
MIN_TTL = 10


@dataclass(frozen=True)
class TurnConfig:
    """``[media] turn``: the relay URLs handed to browsers, the secret shared with coturn."""

    urls: tuple[str, ...]
    secret: str
    ttl: int = DEFAULT_TTL

    @classmethod
    def from_table(cls, table: Any, source: str, env_secret: str = "") -> TurnConfig | None:
        """The ``turn`` table of ``[media]`` (None when absent); a bad one names its key."""
        if table is None:
            return None
        if not isinstance(table, dict):
            raise ConfigError(source, "media.turn", "expected a table")
        unknown = set(table) - {"urls", "secret", "ttl"}
        if unknown:
            raise ConfigError(source, "media.turn", f"unknown key {sorted(unknown)[0]!r}")
        urls = table.get("urls")
        if isinstance(urls, str):
            urls = [urls]
        if (
            not isinstance(urls, list)
            or not urls
            or not all(isinstance(u, str) and u.split(":", 1)[0] in ("turn", "turns") for u in urls)
        ):
            raise ConfigError(source, "media.turn.urls", "expected turn:/turns: URLs")
        secret = env_secret or table.get("secret", "")
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            raise ConfigError(
                source,
                "media.turn.secret",
                f"expected the secret shared with coturn (at least {MIN_SECRET} characters), "
                "in the file or in HEMICYCLE_TURN_SECRET",
            )
        ttl = table.get("ttl", DEFAULT_TTL)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not MIN_TTL <= ttl <= 7 * 86400:
            raise ConfigError(source, "media.turn.ttl", f"expected seconds, {MIN_TTL} to 604800")
        return cls(tuple(urls), secret, ttl)

    def credentials(self, pid: str, now: float | None = None) -> dict[str, Any]:
        """An ICE server entry for ``pid`` (``{urls, username, credential}``), valid ``ttl`` s."""
        expiry = int(time.time() if now is None else now) + self.ttl
        username = f"{expiry}:{pid}"
        digest = hmac.new(self.secret.encode(), username.encode(), hashlib.sha1).digest()
        return {
            "urls": list(self.urls),
            "username": username,
            "credential": base64.b64encode(digest).decode("ascii"),
        }
