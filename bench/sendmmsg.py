"""What ``sendmmsg`` could save in the audio fan-out: one syscall per packet or per batch.

    python bench/sendmmsg.py [--listeners 400] [--rounds 500]

A media worker sends each frame to each listener on that listener's own UDP socket (aiortc
binds one per ICE pair, and the pair's 5-tuple names it), so the fan-out of one frame is
one ``sendto`` on each of N sockets. ``sendmmsg`` sends many datagrams in one call but on
*one* socket. This measures, on loopback, per 120-byte packet:

- ``sendto`` on N sockets (what the worker does now),
- ``sendto`` N times on one socket,
- ``sendmmsg`` of N datagrams on one socket (what it would take: one local port for all).

The receivers are N sockets that are drained between rounds (not timed). Run it inside the
loopback-only namespace like the other benchmarks; numbers go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import socket
import statistics
import time

from mmsg import IoVec, MMsgHdr, sockets

PACKET = bytes(120)


class SockAddrIn(ctypes.Structure):
    _fields_ = [
        ("sin_family", ctypes.c_ushort),
        ("sin_port", ctypes.c_uint16),
        ("sin_addr", ctypes.c_uint32),
        ("sin_zero", ctypes.c_char * 8),
    ]


def drain(receivers: list[socket.socket]) -> int:
    got = 0
    for r in receivers:
        while True:
            try:
                r.recv(2048)
                got += 1
            except BlockingIOError:
                break
    return got


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listeners", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    n = args.listeners
    receivers = sockets(n, 1 << 20)
    addrs = [r.getsockname() for r in receivers]
    senders = sockets(n, 1 << 20)
    one = sockets(1, 1 << 20)[0]
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    buf = ctypes.create_string_buffer(PACKET, len(PACKET))
    names = (SockAddrIn * n)()
    iovs = (IoVec * n)()
    msgs = (MMsgHdr * n)()
    for i, (host, port) in enumerate(addrs):
        names[i].sin_family = socket.AF_INET
        names[i].sin_port = socket.htons(port)
        names[i].sin_addr = int.from_bytes(socket.inet_aton(host), "little")
        iovs[i].iov_base = ctypes.cast(buf, ctypes.c_void_p)
        iovs[i].iov_len = len(PACKET)
        hdr = msgs[i].msg_hdr
        hdr.msg_name = ctypes.cast(ctypes.byref(names[i]), ctypes.c_void_p)
        hdr.msg_namelen = ctypes.sizeof(SockAddrIn)
        hdr.msg_iov = ctypes.pointer(iovs[i])
        hdr.msg_iovlen = 1

    def many_sockets() -> None:
        for s, a in zip(senders, addrs, strict=True):
            s.sendto(PACKET, a)

    def one_socket() -> None:
        send = one.sendto
        for a in addrs:
            send(PACKET, a)

    def mmsg() -> None:
        sent = 0
        while sent < n:
            r = libc.sendmmsg(
                one.fileno(), ctypes.byref(msgs, sent * ctypes.sizeof(MMsgHdr)), n - sent, 0
            )
            if r < 0:
                raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
            sent += r

    results: dict[str, list[float]] = {"many": [], "one": [], "mmsg": []}
    ways = {"many": many_sockets, "one": one_socket, "mmsg": mmsg}
    for _ in range(args.rounds):
        for name, way in ways.items():  # interleaved: the machine's load falls on all alike
            t0 = time.perf_counter()
            way()
            results[name].append(time.perf_counter() - t0)
            if drain(receivers) != n:
                raise SystemExit(f"{name}: lost datagrams on loopback")
    print(
        f"{n} datagrams of {len(PACKET)} bytes per round, {args.rounds} rounds, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    for name, label in (
        ("many", f"sendto on {n} sockets (now)"),
        ("one", f"sendto x{n} on one socket"),
        ("mmsg", "sendmmsg on one socket"),
    ):
        v = sorted(results[name])
        med = statistics.median(v)
        print(
            f"  {label:32} median {med * 1e3:6.2f} ms  p99 {v[int(0.99 * len(v))] * 1e3:6.2f} ms"
            f"  = {med / n * 1e6:5.2f} µs a packet"
        )


if __name__ == "__main__":
    main()
