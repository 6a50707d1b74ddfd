"""Signed, expiring invite tokens: one per person and role, carried in the invite link.

A token is an itsdangerous-signed map ``{room, role, pid, name, org, country, lang, exp,
…}``, signed with the invite key derived from the node's secret (``keys.derive``, HKDF),
never with the secret itself. The person id ``pid`` is fixed when the invite is minted,
so reloading the link or opening it on a second device is the same person, never a
second one.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from ..errors import AuthError, BadArgs
from ..types import ROLES, arg_str
from . import keys

SALT = "hemicycle.invite.v1"
DEFAULT_HOURS = 72.0


@dataclass(frozen=True)
class Invites:
    secret: str

    def __post_init__(self) -> None:
        keys.check_secret(self.secret)

    @cached_property
    def _serializer(self) -> URLSafeSerializer:
        return URLSafeSerializer(keys.derive(self.secret, keys.INVITES), salt=SALT)

    def mint(
        self,
        *,
        room: str,
        role: str,
        name: str,
        hours: float = DEFAULT_HOURS,
        pid: str | None = None,
        **extra: Any,
    ) -> str:
        """A token for one person. ``extra`` may hold org, country, lang, booth, pair."""
        return self.mint_claims(room=room, role=role, name=name, hours=hours, pid=pid, **extra)[0]

    def mint_claims(
        self,
        *,
        room: str,
        role: str,
        name: str,
        hours: float = DEFAULT_HOURS,
        pid: str | None = None,
        **extra: Any,
    ) -> tuple[str, dict[str, Any]]:
        """:meth:`mint`, and the claims the token carries (to record the invite).

        Every invite gets its own id ``jti`` (RFC 7519's name), by which the chair revokes
        it; the person id ``pid`` may be shared by several invites of one person.
        """
        claims = validate_claims({"room": room, "role": role, "name": name, **extra})
        claims["pid"] = pid or secrets.token_urlsafe(9)
        claims["jti"] = secrets.token_urlsafe(12)
        claims["exp"] = int(time.time() + hours * 3600)
        token: str = self._serializer.dumps(claims)
        return token, claims

    def verify(self, token: str | None, *, now: float | None = None) -> dict[str, Any]:
        """The token's claims, or :class:`AuthError` if missing, tampered or expired."""
        if not token:
            raise AuthError("no invite token: open the link you were sent")
        try:
            claims = self._serializer.loads(token)
        except BadSignature:
            raise AuthError(
                "this invite link is not valid (tampered or for another event)"
            ) from None
        if not isinstance(claims, dict) or "exp" not in claims:
            raise AuthError("this invite link is not valid")
        if (now if now is not None else time.time()) > claims["exp"]:
            raise AuthError(
                "this invite link has expired; ask the organisers for a new one",
                code="token_expired",
            )
        return claims


def validate_claims(data: dict[str, Any]) -> dict[str, Any]:
    """Check what an invite may carry; raise ``BadArgs`` naming the bad field."""
    out: dict[str, Any] = {}
    out["room"] = arg_str(data, "room", max_len=40)
    out["role"] = arg_str(data, "role", max_len=20)
    if out["role"] not in ROLES:
        raise BadArgs(f"unknown role {out['role']!r}; one of {', '.join(ROLES)}")
    out["name"] = arg_str(data, "name", max_len=120)
    if not out["name"].strip():
        raise BadArgs("'name' must not be empty")
    for key in ("org", "country", "lang", "booth"):
        value = arg_str(data, key, max_len=120, required=False)
        if value:
            out[key] = value
    if data.get("pair") is not None:
        pair = data["pair"]
        if not isinstance(pair, list) or not all(isinstance(x, str) for x in pair):
            raise BadArgs("'pair' must be a list of language codes")
        out["pair"] = pair
    return out
