"""RSA blind signatures (Chaum, 1983) and ballot tokens for secret ballots. Pure arithmetic.

Who calls what, in order (docs/voting.md tells the whole story):

1. The voter's device picks a secret seed, builds the token chain (:func:`chain`) and
   blinds the ballot message with a random ``r`` (:func:`blind`); ``r`` never leaves it.
2. A node signs the blinded value for an accepted claim (:meth:`PrivateKey.sign`).
3. The device unblinds (:func:`unblind`) and deposits ``token, signature, choice``.
4. Every node's fold checks it (:func:`verify`) without learning who it came from.

Keys are derived from a seed (:func:`derive_key`): every node holding the assembly's secret
derives the same key per poll and weight class, so no key is stored or shipped. Signatures
are raw RSA over a full-domain hash (MGF1 with SHA-256), the form RFC 9474 calls
"RSABSSA … deterministic, no prefix"; the browser side (static/polls.js) mirrors it byte for
byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

_mpz: Callable[[int], Any] = int
_powmod: Callable[[Any, Any, Any], Any] = pow
try:  # optional (pip install hemicycle[fast]): GMP's powmod signs about 8x faster
    import gmpy2

    _mpz, _powmod = gmpy2.mpz, gmpy2.powmod
except ImportError:  # pragma: no cover - depends on the environment
    pass

E = 65537
BITS = 2048
CHAIN = 8
"""Ballot changes a secret voter may make: each change reveals one more link of the chain."""

_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % q for q in range(2, int(p**0.5) + 1))]


@dataclass(frozen=True)
class PublicKey:
    n: int
    e: int = E

    def to_wire(self) -> dict[str, Any]:
        return {"n": format(self.n, "x"), "e": self.e}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> PublicKey:
        return cls(int(data["n"], 16), int(data["e"]))


@dataclass(frozen=True)
class PrivateKey:
    p: int
    q: int
    e: int = E

    @property
    def n(self) -> int:
        return self.p * self.q

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.n, self.e)

    @cached_property
    def _crt(self) -> tuple[Any, ...]:
        p, q = self.p, self.q
        d = pow(self.e, -1, (p - 1) * (q - 1))
        return (_mpz(p), _mpz(q), _mpz(d % (p - 1)), _mpz(d % (q - 1)), _mpz(pow(q, -1, p)))

    def sign(self, value: int) -> int:
        """``value ** d mod n`` by the Chinese remainder theorem (about 4x faster)."""
        p, q, dp, dq, qinv = self._crt
        m1 = _powmod(value % p, dp, p)
        m2 = _powmod(value % q, dq, q)
        h = (qinv * (m1 - m2)) % p
        return int(m2 + h * q)


class _Stream:
    """A deterministic byte stream from a seed (SHA-256 in counter mode)."""

    def __init__(self, seed: bytes) -> None:
        self.seed, self.counter = seed, 0

    def take(self, nbytes: int) -> bytes:
        out = b""
        while len(out) < nbytes:
            out += hashlib.sha256(self.seed + self.counter.to_bytes(8, "big")).digest()
            self.counter += 1
        return out[:nbytes]

    def below(self, bits: int) -> int:
        return int.from_bytes(self.take((bits + 7) // 8), "big") >> (-bits % 8)


def _probable_prime(n: int, stream: _Stream, rounds: int = 40) -> bool:
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for i in range(rounds):
        a = 2 if i == 0 else 2 + stream.below(n.bit_length() - 1) % (n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(stream: _Stream, bits: int) -> int:
    while True:
        candidate = stream.below(bits) | (3 << (bits - 2)) | 1  # top two bits: n has 2*bits
        if (candidate - 1) % E == 0:
            continue
        # Test only the first round cheaply; most composites die on base 2.
        if _probable_prime(candidate, stream, rounds=1) and _probable_prime(candidate, stream):
            return candidate


def derive_key(seed: bytes, bits: int = BITS) -> PrivateKey:
    """The RSA key for ``seed``: the same on every node, found again after a restart."""
    stream = _Stream(hashlib.sha256(b"hemicycle.rsa.v1" + seed).digest())
    p = _prime(stream, bits // 2)
    q = _prime(stream, bits // 2)
    while q == p:
        q = _prime(stream, bits // 2)
    return PrivateKey(max(p, q), min(p, q))


def key_seed(secret: str, room: str, poll: str, weight: int) -> bytes:
    """The seed of one poll's key for one weight class (hundredths), keyed by the secret."""
    label = f"hemicycle.ballot-key.v1|{room}|{poll}|{weight}".encode()
    return hmac.new(secret.encode(), label, hashlib.sha256).digest()


def _mgf1(data: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(data + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def message(room: str, poll: str, weight: int, token: str) -> bytes:
    """What a ballot's signature covers: the room, the poll, the weight class, the token."""
    return f"hemicycle.ballot.v1|{room}|{poll}|{weight}|{token}".encode()


def fdh(key: PublicKey, data: bytes) -> int:
    """Full-domain hash of ``data`` into ``[0, n)``."""
    k = (key.n.bit_length() + 7) // 8
    return int.from_bytes(_mgf1(data, k), "big") % key.n


def blind(key: PublicKey, data: bytes, r: int) -> int:
    """The value a node signs: it reveals nothing of ``data`` without ``r``."""
    return fdh(key, data) * pow(r, key.e, key.n) % key.n


def unblind(key: PublicKey, signed: int, r: int) -> int:
    return signed * pow(r, -1, key.n) % key.n


def verify(key: PublicKey, data: bytes, signature: int) -> bool:
    return 0 < signature < key.n and pow(signature, key.e, key.n) == fdh(key, data)


def step(value: str) -> str:
    """One link down the token chain: ``sha256`` of the value's bytes, in hex."""
    return hashlib.sha256(bytes.fromhex(value)).hexdigest()


def chain(seed: str, length: int = CHAIN) -> list[str]:
    """``[v0, v1, …, v_length]`` with ``step(v_i) == v_(i-1)``; ``v0`` is the token.

    A ballot is deposited with ``v0``; its i-th change reveals ``v_i``, which only the
    device that holds ``seed`` can produce.
    """
    values = [seed]
    for _ in range(length):
        values.append(step(values[-1]))
    return values[::-1]


def follows(value: str, steps: int, target: str) -> bool:
    """Whether ``steps`` links from ``value`` lead to ``target``."""
    try:
        for _ in range(steps):
            value = step(value)
    except ValueError:
        return False
    return hmac.compare_digest(value, target)


def tracker(sealed: str) -> str:
    """A sealed ballot's tracker: 4-4-4-4 base32 of SHA-256 of its bytes (``sealed`` is hex).

    The voter keeps it and finds it in the published list of ballots received; it says
    nothing of what the sealed ballot holds (docs/voting.md, "What a receipt proves")."""
    digest = hashlib.sha256(bytes.fromhex(sealed)).digest()
    code = base64.b32encode(digest)[:16].decode()
    return "-".join(code[i : i + 4] for i in range(0, 16, 4))
