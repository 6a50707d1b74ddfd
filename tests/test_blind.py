"""server/blind.py and the voter's device against the example vector in docs/voting.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from server import blind, seal
from server.node import ballots
from server.voter import SecretBallot

VOTING = Path(__file__).resolve().parent.parent / "docs" / "voting.md"


def example_vector() -> dict[str, Any]:
    """The JSON block under "Example vector" in docs/voting.md."""
    text = VOTING.read_text(encoding="utf-8")
    found = re.search(r"### Example vector\n.*?```json\n(.*?)\n```", text, re.S)
    assert found, "docs/voting.md has no example vector"
    vector: dict[str, Any] = json.loads(found.group(1))
    return vector


def test_the_documented_vector_end_to_end() -> None:
    v = example_vector()
    # The node: the key of this poll and weight class, from the assembly's secret.
    assert blind.key_seed(v["secret"], v["room"], v["poll"], v["w"]).hex() == v["key_seed"]
    private = ballots.private_key(v["secret"], v["room"], v["poll"], v["w"], v["key_bits"])
    assert private.public.to_wire() == v["key"]
    assert private.n.bit_length() == v["key_bits"]
    key = blind.PublicKey.from_wire(v["key"])
    # The device: chain, token, message, hash, blinding.
    public = seal.public_hex(seal.derive_key(v["secret"], v["room"], v["poll"]))
    device = SecretBallot(
        v["room"], v["poll"], v["w"], key, public, seed=v["seed"], r=int(v["r"], 16)
    )
    assert device.links == v["chain"] and device.token == v["token"] == v["chain"][0]
    assert all(blind.step(v["chain"][i + 1]) == v["chain"][i] for i in range(blind.CHAIN))
    message = blind.message(v["room"], v["poll"], v["w"], v["token"])
    assert message == v["message"].encode()
    assert format(blind.fdh(key, message), "x") == v["fdh"]
    assert device.blinded() == v["blinded"]
    # The node signs what it cannot read; the device unblinds and checks.
    assert format(private.sign(int(v["blinded"], 16)), "x") == v["signed"]
    device.take(v["signed"])
    deposit = device.ballot(["yes"])
    assert deposit["sig"] == v["sig"] and deposit["token"] == v["token"] and deposit["w"] == 150
    # Every node's fold: the signature verifies for this message, and for no other weight.
    assert blind.verify(key, message, int(v["sig"], 16))
    other = blind.message(v["room"], v["poll"], 100, v["token"])
    assert not blind.verify(key, other, int(v["sig"], 16))


def test_a_sealed_ballot_opens_only_with_its_polls_key() -> None:
    key = seal.derive_key("ab" * 32, "plenary", "vote")
    public = seal.public_hex(key)
    assert len(public) == 130 and public.startswith("04")
    assert seal.public_hex(seal.derive_key("ab" * 32, "plenary", "vote")) == public
    ballot = {
        "token": "aa" * 32,
        "sig": "1f",
        "w": 100,
        "choice": ["yes"],
        "rev": 0,
        "reveal": None,
    }
    one, two = (seal.seal(public, "plenary", "vote", ballot) for _ in range(2))
    # Fresh randomness each time (so re-sending means keeping the sealed text), one length
    # whatever the choice (the plaintext is padded).
    assert one != two and blind.tracker(one) != blind.tracker(two)
    longer = seal.seal(public, "plenary", "vote", {**ballot, "choice": ["abstain", "x" * 40]})
    assert len(longer) == len(one) == 2 * (65 + 12 + seal.PAD + 16)
    assert seal.unseal(key, "plenary", "vote", one) == ballot
    for room, poll, k in (
        ("plenary", "other", key),
        ("panel", "vote", key),
        ("plenary", "vote", seal.derive_key("cd" * 32, "plenary", "vote")),
    ):
        with pytest.raises(seal.SealError):
            seal.unseal(k, room, poll, one)
    tampered = one[:-2] + format(int(one[-2:], 16) ^ 1, "02x")
    for bad in (tampered, one[:100], "zz"):
        with pytest.raises(seal.SealError):
            seal.unseal(key, "plenary", "vote", bad)
    assert re.fullmatch(r"([A-Z2-7]{4}-){3}[A-Z2-7]{4}", blind.tracker(one))


def test_the_vector_writes_numbers_as_the_wire_does() -> None:
    v = example_vector()
    for name in ("key_seed", "seed", "token", "fdh", "r", "blinded", "signed", "sig"):
        assert re.fullmatch(r"[0-9a-f]+", v[name]), name
        assert v[name] == v[name].lower() and not v[name].startswith("0x")
    for name in ("fdh", "r", "blinded", "signed", "sig"):
        assert not v[name].startswith("0"), f"{name}: big numbers carry no leading zero"
    assert len(v["seed"]) == 64 and len(v["token"]) == 64
