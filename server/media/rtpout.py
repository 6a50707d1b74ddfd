"""One outgoing RTP stream's write: header, SRTP protect, ``sendto`` — in C where built.

:class:`PyWriter` is the reference: what ``server/media/_rtp.c`` (``Writer``) does, in Python,
the same interface. :func:`writer` gives the C one when the extension was built (setup.py
builds it where a C compiler and Python's headers are, as on Debian) and this one otherwise;
``HC_PYTHON_WRITER=1`` forces this one. tests/test_rtpout.py runs both on the same packets.

A writer is bound to a connection's SRTP session and its nominated ICE pair's socket
(:meth:`bind`); ``forward`` writes a packet of the stream, counts it and — with a
``history`` — keeps it for a retransmission (``kept``); ``write`` writes one packet only
(a retransmission). Both return False for a packet not sent; after a failure that makes
the binding stale (libsrtp refused, the socket gone) ``error`` is set and the caller binds
again. A send that would block is a dropped packet (the C writer's ``MSG_DONTWAIT``; the
asyncio transport this one writes through would queue it instead).
"""

from __future__ import annotations

import os
import struct
from typing import Any

from aioice.turn import TurnTransport
from pylibsrtp._binding import ffi as srtp_ffi  # type: ignore[import-not-found]
from pylibsrtp._binding import lib as srtp_lib

try:
    from . import _rtp  # type: ignore[attr-defined]
except ImportError:  # not built (no C compiler where it was installed)
    _rtp = None

HEADER = struct.Struct("!BBHII")
ROOM = 1500 - 16
"""pylibsrtp's buffer is 1,500 bytes; protecting adds an authentication tag of up to 16."""

PROTECT = int(srtp_ffi.cast("uintptr_t", srtp_ffi.addressof(srtp_lib, "srtp_protect")))


def session_pointer(session: Any) -> int:
    """The ``srtp_t`` of a ``pylibsrtp.Session``."""
    return int(srtp_ffi.cast("uintptr_t", session._srtp[0]))


class PyWriter:
    """The write path in Python (the C ``Writer``'s reference and fallback)."""

    def __init__(self, history: int = 0) -> None:
        if history < 0 or history & (history - 1):
            raise ValueError("history must be 0 or a power of two")
        self.history = history
        self._kept: dict[int, tuple[int, int, bytes, int]] = {}
        self._send: Any = None
        self._addr: Any = None
        self._session: Any = None
        self._first = 0x80
        self._prefix = b""
        self._length = srtp_ffi.new("int *")
        self.sent = self.octets = self.dropped = 0
        self.error = 0

    @property
    def bound(self) -> bool:
        return self._send is not None

    def bind(
        self,
        sock: Any,
        host: str,
        port: int,
        session_ptr: int,
        protect_ptr: int,
        keep: Any,
        first: int,
        prefix: bytes,
    ) -> None:
        """``keep``: ``(send, session)`` — the transport's ``sendto`` and the
        ``pylibsrtp.Session`` (the C writer takes the socket and the pointers instead)."""
        self._send, self._session = keep
        self._addr = (host, port)
        self._first, self._prefix = first, prefix
        self.error = 0

    def unbind(self) -> None:
        self._send = self._session = None

    def write(self, second: int, seq: int, ts: int, ssrc: int, payload: bytes) -> bool:
        send, session = self._send, self._session
        if send is None:
            return False
        packet = HEADER.pack(self._first, second, seq, ts, ssrc) + self._prefix + payload
        size = len(packet)
        if size > ROOM:
            return False
        length = self._length
        length[0] = size
        buffer = session._buffer
        buffer[0:size] = packet
        if srtp_lib.srtp_protect(session._srtp[0], session._cdata, length):
            self.error = -1
            return False
        try:
            send(buffer[0 : length[0]], self._addr)
        except OSError as e:
            self.error = e.errno or -1
            return False
        return True

    def forward(self, second: int, seq: int, ts: int, ssrc: int, payload: bytes) -> bool:
        if not self.write(second, seq, ts, ssrc, payload):
            self.dropped += 1
            return False
        if self.history:
            kept = self._kept
            kept[seq] = (second, ts, payload, self.sent)
            kept.pop((seq - self.history) & 0xFFFF, None)
        self.sent += 1
        self.octets += len(payload)
        return True

    def kept(self, seq: int) -> tuple[int, int, bytes, int] | None:
        return self._kept.get(seq & 0xFFFF)


class PlainTransport:
    """A plain UDP socket as the transport :func:`bind` takes (benchmarks and tests: no ICE)."""

    def __init__(self, sock: Any) -> None:
        self.sock = sock
        self.sendto = sock.sendto

    def get_extra_info(self, name: str) -> Any:
        return self.sock if name == "socket" else None

    def is_closing(self) -> bool:
        return bool(self.sock.fileno() < 0)


def writer(history: int = 0) -> Any:
    """A new writer: the C one where it was built, else :class:`PyWriter`."""
    if _rtp is not None and not os.environ.get("HC_PYTHON_WRITER"):
        return _rtp.Writer(history)
    return PyWriter(history)


def to_python(w: Any) -> PyWriter:
    """A :class:`PyWriter` carrying on ``w``'s counts (for a pair the C writer cannot send
    on: a TURN allocation's). What ``w`` kept for retransmission is not carried over."""
    if isinstance(w, PyWriter):
        return w
    p = PyWriter(w.history)
    p.sent, p.octets, p.dropped = w.sent, w.octets, w.dropped
    w.unbind()
    return p


def bind(
    w: Any, transport: Any, addr: tuple[str, int], session: Any, first: int, prefix: bytes
) -> bool:
    """Bind ``w`` to an asyncio datagram ``transport`` (the ICE pair's) toward ``addr``, with
    the ``pylibsrtp.Session`` ``session``. A transport that is not a plain UDP socket (a
    TURN allocation's) gets a :class:`PyWriter`'s way: False, and the caller writes through
    a :class:`PyWriter` instead. Raises :class:`Stale` for a socket already closed."""
    if isinstance(w, PyWriter):
        w.bind(None, addr[0], addr[1], 0, 0, (transport.sendto, session), first, prefix)
        return True
    if isinstance(transport, TurnTransport):
        return False  # a TURN allocation wraps each packet: through its own sendto
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    keep = (sock, session, transport)
    try:
        w.bind(sock, addr[0], addr[1], session_pointer(session), PROTECT, keep, first, prefix)
    except (OSError, ValueError) as e:  # closed under us (fileno -1), an address not numeric
        w.unbind()
        raise Stale(str(e)) from e
    return True


class Stale(ConnectionError):
    """The pair's socket closed (or its address is unusable): not bound; bind again later."""
