"""The RTP write path (server/media/rtpout.py): the C writer and its Python reference send the
same packets — a real SRTP receiver session decrypts what arrives on a real UDP socket."""

from __future__ import annotations

import os
import socket
from typing import Any

import pylibsrtp
import pytest
from aiortc.rtp import RtpPacket

from server.media import rtpout
from server.media.rtpout import PlainTransport

KEY = os.urandom(30)
KINDS = ["python", "c"]


def make(kind: str, history: int = 0) -> Any:
    if kind == "python":
        return rtpout.PyWriter(history)
    if rtpout._rtp is None:
        pytest.fail(
            "server/media/_rtp.c was not built: `pip install -e .` needs gcc and Python's headers"
        )
    return rtpout._rtp.Writer(history)


@pytest.fixture
def pair():
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    yield tx, rx
    tx.close()
    rx.close()


def sessions() -> tuple[pylibsrtp.Session, pylibsrtp.Session]:
    out = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    back = pylibsrtp.Session(pylibsrtp.Policy(key=KEY, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    return out, back


def received(rx: socket.socket, back: pylibsrtp.Session) -> RtpPacket:
    return RtpPacket.parse(back.unprotect(rx.recv(2048)))


@pytest.mark.parametrize("kind", KINDS)
def test_forwarded_packets_decrypt_to_the_header_and_payload_given(kind, pair):
    tx, rx = pair
    out, back = sessions()
    w = make(kind, history=16)
    prefix = bytes.fromhex("bede0001") + bytes([0x10, ord("0"), 0, 0])  # one-byte ext: mid "0"
    assert rtpout.bind(w, PlainTransport(tx), rx.getsockname(), out, 0x90, prefix)
    assert w.bound
    payloads = [os.urandom(n) for n in (1, 160, 1100)]
    for i, payload in enumerate(payloads):
        assert w.forward(
            0x80 | 96 if i == 2 else 96, 65534 + i & 0xFFFF, 3000 * i, 0xDEADBEEF, payload
        )
    for i, payload in enumerate(payloads):
        p = received(rx, back)
        assert (p.sequence_number, p.timestamp, p.ssrc) == (
            (65534 + i) & 0xFFFF,
            3000 * i,
            0xDEADBEEF,
        )
        assert p.payload_type == 96 and p.marker == (i == 2)
        assert p.payload == payload
        assert p.extensions.mid is None or p.extensions.mid == "0"
    assert (w.sent, w.octets, w.dropped) == (3, sum(map(len, payloads)), 0)
    second, ts, payload, at = w.kept(0)  # seq 65534 + 2 wrapped to 0
    assert (second, ts, payload, at) == (0x80 | 96, 6000, payloads[2], 2)
    assert w.kept(1) is None


def bound(kind: str, pair: Any, history: int) -> tuple[Any, socket.socket, pylibsrtp.Session]:
    """A writer of ``kind`` bound from ``pair``'s first socket to its second (no extensions),
    the receiving socket, and the session that decrypts there."""
    tx, rx = pair
    out, back = sessions()
    w = make(kind, history)
    assert rtpout.bind(w, PlainTransport(tx), rx.getsockname(), out, 0x80, b"")
    return w, rx, back


@pytest.mark.parametrize("kind", KINDS)
def test_a_retransmission_is_written_but_neither_counted_nor_kept(kind, pair):
    w, rx, back = bound(kind, pair, history=16)
    assert w.forward(96, 7, 100, 1, b"media")
    assert w.write(97, 1, 100, 2, (7).to_bytes(2, "big") + b"media")
    received(rx, back)
    p = received(rx, back)
    assert (p.payload_type, p.ssrc, p.payload) == (97, 2, b"\x00\x07media")
    assert w.sent == 1 and w.kept(1) is None


@pytest.mark.parametrize("kind", KINDS)
def test_history_keeps_the_last_packets_only(kind, pair):
    w, _, _ = bound(kind, pair, history=4)
    for seq in range(10):
        assert w.forward(96, seq, seq, 1, bytes([seq]))
    assert [w.kept(s) is not None for s in range(10)] == [False] * 6 + [True] * 4
    assert w.kept(9)[2] == b"\x09"


@pytest.mark.parametrize("kind", KINDS)
def test_too_large_or_unbound_is_dropped_and_counted(kind, pair):
    tx, rx = pair
    out, _ = sessions()
    w = make(kind)
    assert not w.bound
    assert not w.forward(96, 1, 1, 1, b"x")
    rtpout.bind(w, PlainTransport(tx), rx.getsockname(), out, 0x80, b"")
    assert not w.forward(96, 2, 1, 1, bytes(rtpout.ROOM - 11))
    assert w.forward(96, 3, 1, 1, bytes(rtpout.ROOM - 12))
    assert (w.sent, w.dropped, w.error) == (1, 2, 0)
    with pytest.raises(ValueError):
        make(kind, history=3)


def test_a_closed_socket_marks_the_c_binding_stale(pair):
    tx, rx = pair
    out, _ = sessions()
    w = make("c")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtpout.bind(w, PlainTransport(s), rx.getsockname(), out, 0x80, b"")
    s.close()
    assert not w.forward(96, 1, 1, 1, b"x")
    assert w.error != 0 and w.dropped == 1
    w.unbind()
    assert not w.bound


def test_a_turn_transport_is_left_to_the_python_writer(pair):
    from aioice.turn import TurnTransport

    out, _ = sessions()
    turn = TurnTransport.__new__(TurnTransport)
    w = make("c")
    assert not rtpout.bind(w, turn, ("127.0.0.1", 9), out, 0x80, b"")
    w.sent = 5
    p = rtpout.to_python(w)
    assert isinstance(p, rtpout.PyWriter) and p.sent == 5


def stand_in_sender(
    monkeypatch: Any, kind: str, tx: socket.socket, addr: Any, session: Any, **fields: Any
) -> Any:
    """What DirectSender._bind reads of an aiortc sender, its DTLS transport and nominated
    ICE pair, over a plain socket; ``kind`` picks the writer the sender will make."""
    from types import SimpleNamespace

    from aiortc.rtp import HeaderExtensionsMap

    if kind == "python":
        monkeypatch.setenv("HC_PYTHON_WRITER", "1")
    else:
        monkeypatch.delenv("HC_PYTHON_WRITER", raising=False)
    pair = SimpleNamespace(protocol=SimpleNamespace(transport=PlainTransport(tx)), remote_addr=addr)
    dtls = SimpleNamespace(
        state="connected",
        _tx_srtp=session,
        transport=SimpleNamespace(_connection=SimpleNamespace(_nominated={1: pair})),
    )
    sender = SimpleNamespace(transport=dtls, **fields)
    sender._RTCRtpSender__mid = None
    sender._RTCRtpSender__rtp_header_extensions_map = HeaderExtensionsMap()
    return sender


def listening_track(monkeypatch, kind: str, tx: socket.socket, addr: Any, session: Any) -> Any:
    """A relay.Outlet on a real DirectSender, its aiortc sender and ICE pair stood in for by
    what DirectSender._bind reads; ``kind`` picks the writer."""
    from server.media.passthrough import DirectSender
    from server.media.relay import Outlet

    sender = stand_in_sender(monkeypatch, kind, tx, addr, session, _ssrc=1234)
    outlet = Outlet("listener", DirectSender(sender, 111))  # type: ignore[arg-type]
    assert (outlet.opus is not None) == (kind == "c")
    return outlet, sender


@pytest.mark.parametrize("kind", KINDS)
def test_a_listening_track_in_c_sends_what_the_python_outlet_sends(kind, pair, monkeypatch):
    """Outlet.feed + DirectSender.push (Python) and Writer.opus (C) on the same frames: a
    handover, the listener's own microphone, a repeated and a late frame, a pause."""
    from server.media.relay import Frame, Source

    tx, rx = pair
    out, back = sessions()
    outlet, sender = listening_track(monkeypatch, kind, tx, rx.getsockname(), out)
    source = Source("fr")
    source.add(outlet)
    frames = [
        ("a", "pa", 1000, 0.00),
        ("a", "pa", 1960, 0.02),
        ("me", "listener", 5000, 0.03),  # the listener's own microphone: never sent back
        ("a", "pa", 1960, 0.04),  # repeated
        ("a", "pa", 2920, 0.04),
        ("b", "pb", 90000, 0.20),  # a new voice after 0.16 s: a marker, 8 frames of clock
        ("b", "pb", 90960, 0.22),
        ("b", "pb", 89040, 0.23),  # late
        *[("b", "pb", 90960 + 960 * k, 0.22 + 0.02 * k) for k in range(1, 11)],
        ("b", "pb", 90960 + 960 * 14, 0.50),  # three frames lost upstream: the clock moves on
    ]
    sent = [
        source.push(Frame(pub, pid, 0, ts, f"{pub}{ts}".encode(), None), now)
        for pub, pid, ts, now in frames
    ]
    assert sent == [1, 1, 0, 0, 1, 1, 1, 0] + [1] * 11
    got = [received(rx, back) for _ in range(sum(sent))]
    seq0, ts0 = got[0].sequence_number, got[0].timestamp
    shape = [
        ((p.sequence_number - seq0) & 0xFFFF, (p.timestamp - ts0) & 0xFFFFFFFF, p.marker)
        for p in got
    ]
    assert shape[:5] == [
        (0, 0, 0),
        (1, 960, 0),
        (2, 1920, 0),
        (3, 1920 + 960 * 8, 1),
        (4, 1920 + 960 * 9, 0),
    ]
    assert shape[-1] == (
        15,
        1920 + 960 * 9 + 960 * 14,
        1,
    )  # the gap: a marker (as the Python outlet)
    assert [p.payload for p in got][:4] == [b"a1000", b"a1960", b"a2920", b"b90000"]
    assert all(p.payload_type == 111 and p.ssrc == 1234 for p in got)
    assert outlet.sink.sent == 16
    assert sender._RTCRtpSender__packet_count == 11  # reported at the 1st packet, then every 10th


def test_binding_a_closed_socket_is_stale_not_an_error(pair):
    _, rx = pair
    out, _ = sessions()
    w = make("c")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.close()
    with pytest.raises(rtpout.Stale):
        rtpout.bind(w, PlainTransport(s), rx.getsockname(), out, 0x80, b"")
    assert not w.bound


def viewer_tile(monkeypatch: Any, kind: str, tx: socket.socket, addr: Any, session: Any) -> Any:
    """A forward.VideoOutlet on a real VideoSender (its aiortc sender and ICE pair stood in
    for, as in listening_track); ``kind`` picks the writer."""
    from server.media.forward import VideoOutlet
    from server.media.vhook import VideoSender

    async def rtcp(packet: Any) -> None:
        return None

    sender = stand_in_sender(
        monkeypatch, kind, tx, addr, session, _ssrc=4321, _rtx_ssrc=4322, _handle_rtcp_packet=rtcp
    )
    sink = VideoSender(sender, {"vp8": 96}, {96: 97})  # type: ignore[arg-type]
    outlet = VideoOutlet("viewer", sink, lambda source, q: None)
    outlet.show("cam", "h")
    return outlet, sink


def tile_run(kind: str, pair: Any, monkeypatch: Any) -> list[tuple[Any, ...]]:
    """One tile through a scripted run; what the viewer received, relative to its first packet."""
    from server.media import vp8
    from server.media.forward import VideoPacket, VideoSource

    from .video_helpers import vp8_frames

    tx, rx = pair
    out, back = sessions()
    outlet, sink = viewer_tile(monkeypatch, kind, tx, rx.getsockname(), out)
    source = VideoSource("cam")
    source.outlets.add(outlet)
    frames = {q: vp8_frames(64 * k, 48 * k, 4, gop=4) for q, k in (("h", 2), ("l", 1))}
    rtp = {"h": 1000, "l": 50000}
    sent = []

    def push(q: str, f: int, now: float, *, late: bool = False) -> None:
        data, _ = frames[q][f]
        for i, payload in enumerate(vp8.packetize(data, 300 + f, tl0picidx=7 + f, tid=0, size=64)):
            if not late:
                rtp[q] = (rtp[q] + 1) & 0xFFFF
            seq = (rtp[q] - 40) & 0xFFFF if late else rtp[q]
            p = VideoPacket("pub", "chair", "cam", q, 0, seq, 90000 * f + 3000 * f, i == 0, payload)
            sent.append(source.push(p, now))

    outlet.goal = "h"
    push("l", 0, 0.0)  # not its layer: nothing
    for f in range(3):
        push("h", f, 0.1 * f)
    push("h", 1, 0.35, late=True)  # older than the switch to h: its numbers are taken
    outlet.goal = "l"
    push("h", 3, 0.4)  # still h until l's keyframe
    push("l", 0, 0.5)  # the switch
    push("l", 1, 0.6)
    assert outlet.layer == "l" and outlet.switches == 2
    assert (outlet.fast is not None) == (kind == "c")  # the C path taken where built
    got = []
    rx.setblocking(False)
    while True:
        try:
            got.append(RtpPacket.parse(back.unprotect(rx.recv(2048))))
        except BlockingIOError:
            break
    assert len(got) == sum(sent) >= 7
    p0 = got[0]
    shape = []
    for p in got:
        d = vp8.parse(p.payload)
        shape.append(
            (
                (p.sequence_number - p0.sequence_number) & 0xFFFF,
                (p.timestamp - p0.timestamp) & 0xFFFFFFFF,
                p.marker,
                (d.picture_id - vp8.parse(p0.payload).picture_id) & 0x7FFF,
                (d.tl0picidx - vp8.parse(p0.payload).tl0picidx) & 0xFF,
                p.payload[d.header :],
            )
        )
    assert [s[0] for s in shape] == list(range(len(shape)))  # one continuous stream
    assert [s[3] for s in shape] == sorted(s[3] for s in shape)  # PictureIDs never go back
    assert shape[-1][3] == 5  # four h frames, then two l frames: six pictures
    assert {s[2] for s in shape} == {0, 1}
    # A NACK for the first packet of the switch: RTX carries the viewer's numbers.
    first_l = next(i for i, s in enumerate(shape) if s[3] == 4)
    seq = got[first_l].sequence_number
    assert sink.retransmit(seq)
    rx.setblocking(True)
    rtx = RtpPacket.parse(back.unprotect(rx.recv(2048)))
    assert (rtx.payload_type, rtx.ssrc) == (97, 4322)
    assert int.from_bytes(rtx.payload[:2], "big") == seq
    assert rtx.payload[2:] == got[first_l].payload
    assert sink.sent == len(got)
    return shape


def test_a_tile_in_c_sends_what_the_python_outlet_sends(monkeypatch):
    """VideoOutlet.feed + VideoSender.write (Python) and Writer.vp8 (C) on the same packets:
    a first keyframe, deltas, a packet older than the switch, a switch to another layer at
    its keyframe; PictureIDs and TL0PICIDX re-based; a NACK answered from the history."""
    shapes = {}
    for kind in KINDS:
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx,
        ):
            tx.bind(("127.0.0.1", 0))
            rx.bind(("127.0.0.1", 0))
            rx.settimeout(2)
            shapes[kind] = tile_run(kind, (tx, rx), monkeypatch)
    assert shapes["c"] == shapes["python"]


def test_a_tile_whose_sink_is_replaced_keeps_its_numbers_in_the_new_writer(monkeypatch):
    """The node makes a tile's outlet first and gives it its VideoSender after (video.py):
    the re-basing moves into that sender's C writer at the first switch."""
    from server.media.forward import Rebase, VideoOutlet

    udp = socket.AF_INET, socket.SOCK_DGRAM
    with socket.socket(*udp) as tx, socket.socket(*udp) as rx:
        rx.bind(("127.0.0.1", 0))
        out, _ = sessions()
        outlet, sink = viewer_tile(monkeypatch, "c", tx, rx.getsockname(), out)
        fresh = VideoOutlet("viewer", object(), lambda s, q: None)  # type: ignore[arg-type]
        assert isinstance(fresh._st, Rebase)
        last = fresh._st.last_seq
        fresh.sink = sink
        assert fresh._holder() is sink.tile_state() and sink.tile_state().last_seq == last
