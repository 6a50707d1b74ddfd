"""Sealed ballots: a secret ballot encrypted on the voter's device to its poll's key.

The device seals ``{token, sig, w, choice, rev, reveal}`` (docs/voting.md, "Sealing") with
ECDH on P-256 and AES-256-GCM — what WebCrypto offers a page (static/polls-crypto.js does
the same, byte for byte):

1. a fresh ephemeral key pair ``(e, E)``; ``Z`` = the x coordinate of ``e · P``, ``P`` the
   poll's public seal key;
2. ``K = HKDF-SHA256(IKM: Z, salt: E uncompressed (65 bytes), info: label, L: 32)`` with
   ``label`` = UTF-8 of ``"hemicycle.seal.v1|<room>|<poll>"``;
3. the plaintext is the ballot's JSON, UTF-8, padded with spaces to a multiple of
   :data:`PAD` bytes (so the length says nothing of the choice), encrypted with AES-GCM
   under ``K``, a random 12-byte nonce and ``label`` as associated data;
4. the sealed ballot is ``E ‖ nonce ‖ ciphertext‖tag``, as lower-case hex.

The poll's private key is derived on every node from the ballot key (:func:`derive_key`):
never stored, logged or shipped. Encrypting needs randomness, so this module is not part
of the pure core; the fold only hashes sealed ballots (:func:`server.blind.tracker`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import HemicycleError
from .polls_secret import check_ballot

PAD = 512
"""Plaintexts are padded to a multiple of this many bytes."""
POINT = 65
NONCE = 12
MAX_HEX = 8192
"""The longest sealed ballot accepted, in hex digits (a ballot pads to 1,024 or 1,536 bytes)."""
_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""The order of P-256's base point (SEC 2, 2.4.2)."""


class SealError(ValueError):
    """A sealed ballot that cannot be opened (bad length, bad point, wrong key, tampered)."""


def label(room: str, poll: str) -> bytes:
    return f"hemicycle.seal.v1|{room}|{poll}".encode()


def derive_key(ballot_key: str, room: str, poll: str) -> ec.EllipticCurvePrivateKey:
    """The poll's private seal key: ``d = HMAC-SHA256(ballot key hex, "hemicycle.seal-key.v1|
    room|poll") mod (q - 1) + 1`` — the same on every node, from the ballot key alone."""
    mac = hmac.new(
        ballot_key.encode(), f"hemicycle.seal-key.v1|{room}|{poll}".encode(), hashlib.sha256
    ).digest()
    d = int.from_bytes(mac, "big") % (_ORDER - 1) + 1
    return ec.derive_private_key(d, ec.SECP256R1())


def public_hex(key: ec.EllipticCurvePrivateKey) -> str:
    """The public key as the page imports it: the uncompressed point, 130 hex digits."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        .hex()
    )


def _aes_key(shared: bytes, ephemeral: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral, info=info).derive(shared)


def plaintext(ballot: dict[str, Any]) -> bytes:
    data = json.dumps(ballot, separators=(",", ":"), sort_keys=True).encode()
    return data + b" " * (-len(data) % PAD)


def seal(public: str, room: str, poll: str, ballot: dict[str, Any]) -> str:
    """What a device sends: ``ballot`` sealed to the poll's public key ``public`` (hex)."""
    peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes.fromhex(public))
    mine = ec.generate_private_key(ec.SECP256R1())
    ephemeral = mine.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    info = label(room, poll)
    key = _aes_key(mine.exchange(ec.ECDH(), peer), ephemeral, info)
    nonce = secrets.token_bytes(NONCE)
    return (ephemeral + nonce + AESGCM(key).encrypt(nonce, plaintext(ballot), info)).hex()


def unseal(key: ec.EllipticCurvePrivateKey, room: str, poll: str, sealed: str) -> Any:
    """Open a sealed ballot with the poll's private key: the decoded JSON (not yet checked)."""
    try:
        raw = bytes.fromhex(sealed)
    except ValueError as exc:
        raise SealError("not hexadecimal") from exc
    if len(raw) < POINT + NONCE + 16:
        raise SealError("too short")
    ephemeral, nonce, body = raw[:POINT], raw[POINT : POINT + NONCE], raw[POINT + NONCE :]
    try:
        peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), ephemeral)
        info = label(room, poll)
        opened = AESGCM(_aes_key(key.exchange(ec.ECDH(), peer), ephemeral, info)).decrypt(
            nonce, body, info
        )
        return json.loads(opened.decode())
    except (ValueError, InvalidTag, UnicodeDecodeError) as exc:
        raise SealError("cannot be opened with this poll's key") from exc


def open_all(
    key: ec.EllipticCurvePrivateKey, room: str, poll: str, stored: list[tuple[str, bool]]
) -> dict[str, Any]:
    """The ``ballot.reveal`` args for a poll's sealed ballots ``[(sealed, late)…]``: every
    ballot opened and shaped, sorted by token — no order of arrival survives — and how many
    could not be opened (or were not ballots) or came after the close with a change."""
    opened: list[dict[str, Any]] = []
    unreadable = late = 0
    for sealed, after_close in stored:
        try:
            ballot = check_ballot(unseal(key, room, poll, sealed))
        except (SealError, HemicycleError):
            unreadable += 1
            continue
        if after_close and ballot["rev"]:
            late += 1  # a change must be in before the close
            continue
        opened.append(ballot)
    opened.sort(key=lambda b: json.dumps(b, sort_keys=True))
    opened.sort(key=lambda b: (b["token"], b["rev"]))
    return {
        "poll": poll,
        "ballots": opened,
        "unreadable": unreadable,
        "late": late,
        "opened": len(stored),
    }


__all__ = ["MAX_HEX", "SealError", "derive_key", "open_all", "public_hex", "seal", "unseal"]
