"""Ogg/Opus files from Opus packets as they arrived, by remuxing (no re-encode).

RFC 7845: an ``OpusHead`` page, an ``OpusTags`` page, then the packets. A :class:`Track`
runs on the wall clock: where its source was silent (nobody on air, a cough, a pause
between speakers) it inserts 20 ms Opus silence frames, so the files of one recording
stay aligned with each other and with the session's time (server/media/recording.py).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import IO

RATE = 48_000
SILENCE = b"\xf8\xff\xfe"
"""A 20 ms CELT fullband Opus frame that decodes to silence (as WebRTC stacks send)."""
PRE_SKIP = 312
PAGE_PACKETS = 50
"""Packets per Ogg page (about one second): a crash loses at most that much."""
JITTER = 3 * 960
"""Arrival jitter tolerated before a gap is filled with silence."""


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else r << 1
        table.append(r & 0xFFFFFFFF)
    return table


CRC = _crc_table()


def ogg_crc(data: bytes) -> int:
    """The Ogg page checksum (CRC-32, polynomial 0x04C11DB7, not reflected, RFC 3533)."""
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ CRC[((crc >> 24) & 0xFF) ^ byte]
    return crc


def opus_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) in one Opus packet, from its TOC byte (RFC 6716 §3.1)."""
    if not packet:
        return 0
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        size = (480, 960, 1920, 2880)[config & 3]
    elif config < 16:
        size = (480, 960)[config & 1]
    else:
        size = (120, 240, 480, 960)[config & 3]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    else:
        frames = packet[1] & 0x3F if len(packet) > 1 else 0
    return size * frames


class OggOpusWriter:
    """Writes Opus packets into one Ogg stream. ``write`` per packet, then ``close``."""

    def __init__(self, out: IO[bytes], serial: int, channels: int = 2) -> None:
        self.out = out
        self.serial = serial
        self.page = 0
        self.granule = 0
        self.pending: list[bytes] = []
        head = b"OpusHead" + struct.pack("<BBHIhB", 1, channels, PRE_SKIP, RATE, 0, 0)
        vendor = b"hemicycle"
        tags = b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", 0)
        self._page([head], granule=0, flags=0x02)
        self._page([tags], granule=0, flags=0)

    def write(self, packet: bytes) -> None:
        self.granule += opus_samples(packet)
        self.pending.append(packet)
        if len(self.pending) >= PAGE_PACKETS:
            self.flush()

    def flush(self, last: bool = False) -> None:
        if self.pending or last:
            self._page(self.pending, granule=self.granule + PRE_SKIP, flags=0x04 if last else 0)
            self.pending = []
        self.out.flush()

    def close(self) -> None:
        self.flush(last=True)
        self.out.close()

    def _page(self, packets: list[bytes], granule: int, flags: int) -> None:
        lacing = bytearray()
        for p in packets:
            lacing += b"\xff" * (len(p) // 255) + bytes([len(p) % 255])
        assert len(lacing) <= 255, "too many packets for one Ogg page"
        header = struct.pack(
            "<4sBBqIIIB", b"OggS", 0, flags, granule, self.serial, self.page, 0, len(lacing)
        ) + bytes(lacing)
        body = b"".join(packets)
        crc = ogg_crc(header + body)
        self.out.write(header[:22] + struct.pack("<I", crc) + header[26:] + body)
        self.page += 1


class Track:
    """One source's file: packets on the wall clock, gaps filled with silence."""

    def __init__(self, path: Path, serial: int, t0: float) -> None:
        self.writer = OggOpusWriter(path.open("wb"), serial)
        self.t0 = t0
        self.samples = 0
        self.packets = 0

    def _fill(self, until: int) -> None:
        while self.samples + 960 <= until:
            self.writer.write(SILENCE)
            self.samples += 960

    def add(self, payload: bytes, now: float) -> None:
        due = round((now - self.t0) * RATE)
        if due - self.samples > JITTER:
            self._fill(due - 960)
        self.writer.write(payload)
        self.samples += opus_samples(payload)
        self.packets += 1

    def close(self, now: float) -> None:
        self._fill(round((now - self.t0) * RATE))
        self.writer.close()
