"""Token buckets: the frame rate per person, offers, packets, connections per address."""

from __future__ import annotations

import time


class TokenBucket:
    """``burst`` tokens at most, refilled at ``rate`` per second; ``take`` spends one."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.at = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def take(self) -> bool:
        self._refill()
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def full(self) -> bool:
        self._refill()
        return self.tokens >= self.burst


class PerKey:
    """One :class:`TokenBucket` per key (an address), forgetting full ones past ``keep``."""

    def __init__(self, rate: float, burst: float, keep: int = 10_000) -> None:
        self.rate, self.burst, self.keep = rate, burst, keep
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> bool:
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= self.keep:
                for other, b in list(self.buckets.items()):
                    if b.full():
                        del self.buckets[other]
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()
