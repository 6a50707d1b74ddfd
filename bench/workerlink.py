"""The node → media worker socket: CPU per frame sent, SOCK_SEQPACKET against SOCK_DGRAM.

A forked reader drains a Unix socket pair while this process sends N messages of the size
of a packed audio frame (~130 bytes). Printed per kind and repeat: wall time per send (it
includes waiting for the reader when the buffer fills) and this process's CPU per send.

    .venv/bin/python bench/workerlink.py
"""

from __future__ import annotations

import os
import socket
import time

N = 50_000
MESSAGE = b"x" * 130


def measure(kind: int) -> tuple[float, float]:
    a, b = socket.socketpair(socket.AF_UNIX, kind)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    pid = os.fork()
    if pid == 0:
        a.close()
        for _ in range(N):
            b.recv(65536)
        os._exit(0)
    b.close()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(N):
        a.send(MESSAGE)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    os.waitpid(pid, 0)
    a.close()
    return wall / N * 1e6, cpu / N * 1e6


def main() -> None:
    with open("/proc/loadavg") as f:
        print("load average:", " ".join(f.read().split()[:3]))
    for kind, name in (
        (socket.SOCK_SEQPACKET, "SOCK_SEQPACKET"),
        (socket.SOCK_DGRAM, "SOCK_DGRAM"),
    ):
        runs = [measure(kind) for _ in range(3)]
        print(
            f"{name:15}",
            "  ".join(f"wall {w:5.2f} µs, cpu {c:4.2f} µs per send" for w, c in runs),
        )


if __name__ == "__main__":
    main()
