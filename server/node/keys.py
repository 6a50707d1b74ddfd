"""The node's one secret, checked, and the separate keys derived from it (HKDF).

``HEMICYCLE_SECRET`` is the only secret an operator sets. It is never used as a key
itself: :func:`derive` turns it into one key per purpose with HKDF-SHA256 (RFC 5869), so
the key that signs invites and the key that seeds the ballot keys are independent — a
weakness found in one use (a forged invite signature, a leaked ballot seed) says nothing
about the other, and a new purpose gets a new key without touching the old ones.

HKDF is written out here (:func:`hkdf`, a dozen lines of ``hmac``): it predates
``cryptography`` becoming a dependency (for sealed ballots, server/seal.py), and the
construction is two HMAC steps fixed by the RFC, checked against its test vectors in
tests/test_keys.py.

:func:`check_secret` refuses, at start, a secret too short or too uniform to be a key
(docs/security.md, "Secrets and keys").
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import Counter

MIN_LENGTH = 32
MIN_BITS = 80.0
"""Least estimated bits of an accepted secret (:func:`estimate_bits`). Generated secrets
clear it widely: in 20,000 draws the hex of 16 random bytes scored at least 93, a
``token_urlsafe(32)`` at least 186; ``"password" * 4`` scores 30."""
SALT = b"hemicycle.keys.v1"
INVITES = b"hemicycle invite signing key v1"
BALLOTS = b"hemicycle ballot key seed v1"
HOW = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def hkdf(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 (RFC 5869): extract a pseudorandom key from ``ikm``, expand it for ``info``."""
    if length > 255 * 32:
        raise ValueError("HKDF-SHA256 gives at most 8160 bytes")
    prk = hmac.new(salt or bytes(32), ikm, hashlib.sha256).digest()  # 2.2: extract
    okm, block = b"", b""
    for counter in range(1, math.ceil(length / 32) + 1):  # 2.3: expand
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        okm += block
    return okm[:length]


def derive(secret: str, info: bytes) -> bytes:
    """The 32-byte key for one purpose (:data:`INVITES`, :data:`BALLOTS`) from the secret."""
    return hkdf(secret.encode(), salt=SALT, info=info)


def estimate_bits(secret: str) -> float:
    """A crude strength estimate: the Shannon entropy of the secret's own character
    frequencies, times its length counted without repeats (distinct 4-character windows,
    plus 3). It catches placeholders, repeats and short words (``changeme…``, ``xxxx…``,
    ``test-secret-ssss…``, a phrase said three times), not a long human sentence."""
    n = len(secret)
    if n == 0:
        return 0.0
    counts = Counter(secret)
    per_char = -sum(c / n * math.log2(c / n) for c in counts.values())
    windows = {secret[i : i + 4] for i in range(max(1, n - 3))}
    return min(n, len(windows) + 3) * per_char


def check_secret(secret: str) -> None:
    """Raise ``ValueError`` (a message for the operator) unless ``secret`` may be a key:
    at least :data:`MIN_LENGTH` characters and :data:`MIN_BITS` estimated bits."""
    if len(secret) < MIN_LENGTH:
        raise ValueError(
            f"HEMICYCLE_SECRET is too short ({len(secret)} characters; at least "
            f"{MIN_LENGTH} are needed): {HOW}"
        )
    bits = estimate_bits(secret)
    if bits < MIN_BITS:
        raise ValueError(
            f"HEMICYCLE_SECRET has too little variety to be a key (about {bits:.0f} bits "
            f"estimated; at least {MIN_BITS:.0f} are needed): {HOW}"
        )
