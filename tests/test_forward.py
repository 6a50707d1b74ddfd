"""The video forwarding core (server/media/forward.py): layers, outlets, keyframe requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from server.media import vp8
from server.media.forward import (
    UPHOLD,
    Arrivals,
    KeyframeAsk,
    Layers,
    VideoOutlet,
    VideoPacket,
    VideoSource,
)

from .video_helpers import vp8_frames

SIZES = {"l": (320, 180), "m": (640, 360), "h": (1280, 720)}


@dataclass
class Wire:
    """A sink that keeps what an outlet wrote."""

    got: list[tuple[int, int, bool, bytes]] = field(default_factory=list)

    def write(self, codec: str, seq: int, ts: int, marker: bool, payload: bytes) -> bool:
        self.got.append((seq, ts, marker, payload))
        return True


def layer_packets(q: str, frames: int, gop: int = 10) -> list[list[VideoPacket]]:
    """Per frame, the packets of layer ``q`` as a browser sends them (own seq, ts, PictureID)."""
    w, h = SIZES[q]
    seq0, ts0, pic0 = {"l": (100, 5000, 7), "m": (30000, 900, 3000), "h": (65500, 77, 32700)}[q]
    out = []
    n = 0
    for f, (data, _key) in enumerate(vp8_frames(w, h, frames, gop=gop, bitrate=300_000)):
        pkts = []
        payloads = vp8.packetize(data, (pic0 + f) & 0x7FFF, tl0picidx=(f + 9) & 0xFF, tid=0)
        for i, payload in enumerate(payloads):
            seq = (seq0 + n) & 0xFFFF
            ts = (ts0 + 3000 * f) & 0xFFFFFFFF
            pkts.append(
                VideoPacket(
                    "p1", "ana", "ana:camera", q, n, seq, ts, i == len(payloads) - 1, payload
                )
            )
            n += 1
        out.append(pkts)
    return out


def test_outlet_starts_and_switches_only_at_keyframes_with_continuous_numbers() -> None:
    frames = {q: layer_packets(q, 25) for q in ("l", "h")}
    wire, asked = Wire(), []
    outlet = VideoOutlet("bo", wire, lambda s, q: asked.append((s, q)))
    source = VideoSource("ana:camera")
    source.outlets.add(outlet)
    outlet.show("ana:camera", "l")
    now = 0.0
    switch_at = 13
    for f in range(25):
        now += 1 / 30
        if f == 1:
            outlet.retarget(source.layers, now)  # both layers flow now: aim at l
        if f == switch_at:
            outlet.show("ana:camera", "h")
            outlet.retarget(source.layers, now)
        for q in ("l", "h"):
            for p in frames[q][f]:
                source.push(p, now)
    assert asked == [("ana:camera", "l"), ("ana:camera", "h")]
    seqs = [g[0] for g in wire.got]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False)), "no seq gap"
    descs = [vp8.parse(g[3]) for g in wire.got]
    starts = [d for d in descs if d.start]
    pics = [d.picture_id for d in starts]
    assert all((b - a) & 0x7FFF == 1 for a, b in zip(pics, pics[1:], strict=False)), pics
    tl0s = [d.tl0picidx for d in starts]
    assert all((b - a) & 0xFF == 1 for a, b in zip(tl0s, tl0s[1:], strict=False)), tl0s
    # The first packet sent, and the first after the switch, start keyframes of their layer.
    assert starts[0].keyframe and (starts[0].width, starts[0].height) == SIZES["l"]
    big = [d for d in starts if d.keyframe and d.width == 1280]
    assert big, "switched to h"
    first_h = descs.index(big[0])
    assert all(d.width in (0, 320) for d in descs[:first_h]), "l until h's keyframe"
    assert all(d.width in (0, 1280) for d in descs[first_h:]), "h after it, never l again"
    # Keyframes come at frames 0, 10, 20 (gop 10): l starts at 10, h takes over at 20
    # (l's frame 20 goes first: it was pushed before h's keyframe).
    assert len(starts[: starts.index(big[0])]) == 11
    tss = [g[1] for g in wire.got]
    assert all(0 <= (b - a) & 0xFFFFFFFF < 90_000 for a, b in zip(tss, tss[1:], strict=False))
    # Payload bytes past the descriptor are the encoder's, untouched.
    sent = b"".join(g[3][d.header :] for g, d in zip(wire.got, descs, strict=True))
    expected = b"".join(
        p.payload[p.desc.header :]  # type: ignore[union-attr]
        for q, span in (("l", range(10, 21)), ("h", range(20, 25)))
        for f in span
        for p in frames[q][f]
    )
    assert sent == expected
    assert outlet.switches == 2


def test_falls_back_to_the_best_layer_that_flows() -> None:
    layers = Layers()
    layers.saw("l", 100, 0.0)
    layers.saw("m", 100, 0.0)
    assert layers.best("h", 0.5) == "m"
    assert layers.best("l", 0.5) == "l"
    layers.saw("h", 100, 2.0)
    assert layers.best("h", 2.5) == "h" and layers.flowing(2.5) == ["h"]
    assert layers.best("l", 2.5) == "h", "nothing lower flows: the lowest that does"
    assert layers.best("h", 10.0) is None


def test_a_viewer_estimate_and_loss_lower_the_layer() -> None:
    layers = Layers()
    for t in range(0, 21):
        now = t / 10
        layers.saw("l", 2_000, now)
        layers.saw("m", 6_000, now)
        layers.saw("h", 18_000, now)
    outlet = VideoOutlet("bo", Wire(), lambda s, q: None)
    outlet.show("x", "h")
    assert outlet.aim(layers, 2.0) == "h"
    outlet.estimate = 1_000_000  # h is ~1.4 Mbit/s here, m ~0.5
    assert outlet.aim(layers, 2.0) == "m"
    outlet.estimate = None
    outlet.loss = 0.2
    assert outlet.aim(layers, 2.0) == "m"


def test_late_packets_from_before_a_switch_are_not_sent() -> None:
    frames = layer_packets("l", 12)
    wire = Wire()
    outlet = VideoOutlet("bo", wire, lambda s, q: None)
    source = VideoSource("s")
    source.outlets.add(outlet)
    outlet.show("s", "l")
    outlet.goal = "l"
    for p in frames[10]:  # the second keyframe (gop 10)
        source.push(p, 1.0)
    sent = len(wire.got)
    source.push(frames[9][0], 1.01)  # a retransmission of a packet before the keyframe
    assert len(wire.got) == sent


def test_keyframe_requests_are_merged_per_layer() -> None:
    ask = KeyframeAsk(interval=0.5)
    assert ask.ask(("a", "h"), 0.0)
    assert not ask.ask(("a", "h"), 0.1)
    assert not ask.ask(("a", "h"), 0.2)
    assert ask.ask(("a", "l"), 0.2), "another layer is not held back"
    assert ask.due(0.3) == []
    assert ask.due(0.5) == [("a", "h")]
    assert ask.due(0.6) == []
    assert (ask.sent, ask.merged) == (3, 1)


def test_packets_cross_the_bus_unchanged() -> None:
    p = layer_packets("m", 1)[0][0]
    again = VideoPacket.from_bus(p.to_bus(), "ana:camera")
    assert (again.payload, again.rtp, again.ts, again.q, again.key) == (
        p.payload,
        p.rtp,
        p.ts,
        "m",
        True,
    )


def test_arrivals_tell_a_repeat_from_a_late_first_arrival() -> None:
    arrivals = Arrivals()
    seqs = [(65530 + n) & 0xFFFF for n in range(12)]  # across the 16-bit wrap
    late = seqs.pop(5)  # lost, then retransmitted after the others
    assert all(arrivals.first(s) for s in seqs)
    assert not any(arrivals.first(s) for s in seqs[-4:]), "padding: copies of the last ones"
    assert arrivals.first(late), "a retransmission of a packet that never came passes"
    assert not arrivals.first(late), "once"
    assert not arrivals.first(seqs[0]), "still in the window"
    top = seqs[-1]
    assert arrivals.first((top + Arrivals.WINDOW - 1) & 0xFFFF)
    assert not arrivals.first(top), "at the window's far end, still known"
    assert arrivals.first((top + 2) & 0xFFFF), "skipped by the jump, inside the window"
    far = (top - 2 * Arrivals.WINDOW) & 0xFFFF
    assert arrivals.first(far), "far older than the window: the stream started over"
    assert not arrivals.first(far)


def test_after_the_estimate_fell_a_tile_goes_up_again_only_once_it_held() -> None:
    layers = Layers()
    for t in range(0, 101):
        now = t / 10
        for q, size in (("l", 2_000), ("m", 6_000), ("h", 18_000)):
            layers.saw(q, size, now)
    outlet = VideoOutlet("bo", Wire(), lambda s, q: None)
    outlet.show("x", "h")
    outlet.layer = "h"
    outlet.estimate = 5_000  # a busy viewer's estimate collapses...
    assert outlet.aim(layers, 5.0) == "l"
    outlet.layer = "l"
    outlet.estimate = 3_000_000  # ...and swings back
    assert outlet.aim(layers, 6.0) == "l", "held: a switch up costs a keyframe"
    assert outlet.aim(layers, 5.0 + UPHOLD) == "h"
    outlet.layer = "h"
    outlet.show("x", "l")  # the viewer's tile got small: not a fall
    assert outlet.aim(layers, 9.0) == "l"
    outlet.layer = "l"
    outlet.show("x", "h")
    assert outlet.aim(layers, 9.5) == "h", "the tile grew back: at once"
