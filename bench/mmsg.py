"""Receiving many UDP datagrams cheaply, for the benches' receiving children.

A bench's receivers stand in for viewers on other machines: their CPU is not the node's,
but on this 2-core machine it is taken from the same cores. ``recv`` per datagram from
Python costs the receiving child most of a core at 300 viewers of a camera (bench/video.py,
bench/panel.py), and the forwarder then waits for a core. ``recvmmsg(2)`` (Linux) takes up
to :data:`BATCH` datagrams per call; the child sweeps its sockets every few milliseconds
instead of waking for each datagram. The standard library has no ``recvmmsg``, nor does a
maintained package on PyPI we could find; ctypes calls libc's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
from collections.abc import Callable

BATCH = 64
SIZE = 2048
MSG_DONTWAIT = 0x40


def sockets(n: int, rcvbuf: int) -> list[socket.socket]:
    """``n`` non-blocking UDP sockets on 127.0.0.1, each with a ``rcvbuf``-byte buffer."""
    out = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        out.append(s)
    return out


# struct iovec, struct msghdr, struct mmsghdr (<sys/socket.h>, Linux x86-64 and arm64)
class IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(IoVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", MsgHdr), ("msg_len", ctypes.c_uint)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_recvmmsg = _libc.recvmmsg
_recvmmsg.argtypes = [
    ctypes.c_int,
    ctypes.POINTER(MMsgHdr),
    ctypes.c_uint,
    ctypes.c_int,
    ctypes.c_void_p,
]
_recvmmsg.restype = ctypes.c_int


class Receiver:
    """``drain(sock, on_datagram)``: every datagram waiting on ``sock``, ``BATCH`` a call;
    ``on_datagram(view)`` gets a memoryview of each (valid only during the call)."""

    def __init__(self) -> None:
        self._data = bytearray(BATCH * SIZE)
        base = ctypes.addressof((ctypes.c_char * len(self._data)).from_buffer(self._data))
        self._iov = (IoVec * BATCH)()
        self._vec = (MMsgHdr * BATCH)()
        for i in range(BATCH):
            self._iov[i].iov_base = base + i * SIZE
            self._iov[i].iov_len = SIZE
            self._vec[i].msg_hdr.msg_iov = ctypes.pointer(self._iov[i])
            self._vec[i].msg_hdr.msg_iovlen = 1
        self._view = memoryview(self._data)

    def drain(self, sock: socket.socket, on_datagram: Callable[[memoryview], None]) -> int:
        fd = sock.fileno()
        got = 0
        while True:
            n = _recvmmsg(fd, self._vec, BATCH, MSG_DONTWAIT, None)
            if n <= 0:
                return got
            view, vec = self._view, self._vec
            for i in range(n):
                at = i * SIZE
                on_datagram(view[at : at + vec[i].msg_len])
            got += n
            if n < BATCH:
                return got
