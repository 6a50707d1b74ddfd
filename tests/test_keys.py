"""The node's secret: checked at start, never a key itself; HKDF against RFC 5869."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import subprocess
import sys

import pytest
from itsdangerous import URLSafeSerializer

from server import blind
from server.errors import AuthError
from server.node import ballots, keys
from server.node.auth import SALT, Invites

from .conftest import SECRET


@pytest.mark.parametrize(
    ("ikm", "salt", "info", "length", "okm"),
    [
        (  # RFC 5869 A.1
            "0b" * 22,
            "000102030405060708090a0b0c",
            "f0f1f2f3f4f5f6f7f8f9",
            42,
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        ),
        (  # A.2: long inputs, 82 bytes out
            bytes(range(0x00, 0x50)).hex(),
            bytes(range(0x60, 0xB0)).hex(),
            bytes(range(0xB0, 0x100)).hex(),
            82,
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87",
        ),
        (  # A.3: no salt, no info
            "0b" * 22,
            "",
            "",
            42,
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        ),
    ],
)
def test_hkdf_gives_the_rfc_5869_vectors(
    ikm: str, salt: str, info: str, length: int, okm: str
) -> None:
    out = keys.hkdf(
        bytes.fromhex(ikm), salt=bytes.fromhex(salt), info=bytes.fromhex(info), length=length
    )
    assert out.hex() == okm


def test_each_purpose_has_its_own_key_and_none_is_the_secret() -> None:
    invite_key = keys.derive(SECRET, keys.INVITES)
    ballot_key = keys.derive(SECRET, keys.BALLOTS)
    assert len(invite_key) == len(ballot_key) == 32 and invite_key != ballot_key
    assert ballots.ballot_key(SECRET) == ballot_key.hex()
    assert SECRET.encode() not in (invite_key, ballot_key)
    # A ballot key's seed is keyed by the derived key, not by the secret any more.
    seed = blind.key_seed(ballots.ballot_key(SECRET), "plenary", "vote", 100)
    label = b"hemicycle.ballot-key.v1|plenary|vote|100"
    assert seed != hmac.new(SECRET.encode(), label, hashlib.sha256).digest()


def test_invites_are_signed_with_the_derived_key_only() -> None:
    invites = Invites(SECRET)
    token = invites.mint(room="plenary", role="moderator", name="Chair")
    assert invites.verify(token)["role"] == "moderator"
    # A token signed with the raw secret (what a leaked ballot seed would not give either)
    # is not an invite.
    forged = URLSafeSerializer(SECRET, salt=SALT).dumps(
        {"room": "plenary", "role": "moderator", "name": "X", "pid": "p", "exp": 2**40}
    )
    with pytest.raises(AuthError):
        invites.verify(forged)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("s" * 16, "too short"),
        ("0123456789abcdef0123456789abcde", "too short"),  # 31 characters
        ("x" * 64, "too little variety"),
        ("test-secret-" + "s" * 24, "too little variety"),
        ("password" * 4, "too little variety"),
        ("changeme" * 5, "too little variety"),
    ],
)
def test_a_weak_secret_is_refused_with_a_clear_message(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        Invites(secret)
    assert "HEMICYCLE_SECRET" in str(err.value) and "secrets.token_urlsafe" in str(err.value)


def test_generated_secrets_are_accepted() -> None:
    for _ in range(200):
        keys.check_secret(secrets.token_urlsafe(32))
        keys.check_secret(secrets.token_hex(16))
        keys.check_secret(secrets.token_hex(32))


def test_serve_refuses_a_weak_secret_at_start() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HEMICYCLE_SECRET": "correct-horse-correct-horse-correct"},
    )
    assert out.returncode == 2, out.stderr
    assert "HEMICYCLE_SECRET has too little variety" in out.stderr
    assert "Traceback" not in out.stderr
