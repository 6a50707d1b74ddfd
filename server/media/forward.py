"""The forwarding path of stage video, without decoding: packets, layers, viewer outlets.

A :class:`VideoPacket` is one RTP packet of one quality (layer) of one source
(``<pid>:camera``, ``<pid>:screen``, ``sign:<code>``). A :class:`VideoSource` on a node
fans a source's packets out to the :class:`VideoOutlet` s that show it (one per viewer's
tile) and to taps (a recording), and keeps which layers flow (:class:`Layers`).

An outlet forwards **one** layer at a time and changes layer only at a keyframe of the
new one (a decoder cannot start elsewhere). Whatever it forwards, the viewer sees one
stream: sequence numbers, RTP timestamps, VP8 PictureID and TL0PICIDX are re-based at each
switch so that they continue (a gap in sequence numbers makes the viewer NACK; a gap in
PictureID makes it wait for a frame that never comes: docs/architecture.md, "Video").

Nothing here does I/O or reads a clock: ``now`` is handed in, keyframe requests go to a
callback, packets to a :class:`Sink` (``vhook.VideoSender``; tests hand in a list).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Protocol

from ..protocol import pack, unpack
from . import h264, vp8

QUALITIES = ("l", "m", "h")
"""Low (320×180), medium (640×360), high (1280×720): the simulcast RIDs, low to high."""
RANK = {q: n for n, q in enumerate(QUALITIES)}
FLOWING = 2.0
"""A layer that sent nothing for this long no longer counts as flowing (s)."""
CLOCK = 90_000
"""The RTP clock of every video codec (RFC 7741 §4.1, RFC 6184 §5.1)."""
RETRY = 1.0
"""A layer switch waiting this long for its keyframe asks again (s)."""
HEADROOM = 1.2
"""A layer fits a viewer's estimate when its bitrate times this is under it."""
LOSSY = 0.1
"""Fraction lost (RTCP RR) above which a viewer steps one layer down."""
UPHOLD = 3.0
"""After the viewer's estimate or loss took a tile below the layer it had, this long before
it goes up again (s): a busy viewer's estimate swings, and each switch waits for a keyframe."""


class VideoPacket:
    """One RTP packet of one layer of one source, as it travels to the outlets."""

    __slots__ = (
        *("pub", "pid", "source", "q", "seq", "rtp", "ts", "marker", "payload", "codec"),
        *("key", "desc"),
    )

    def __init__(
        self,
        pub: str,
        pid: str,
        source: str,
        q: str,
        seq: int,
        rtp: int,
        ts: int,
        marker: bool,
        payload: bytes,
        codec: str = "vp8",
    ) -> None:
        self.pub, self.pid, self.source, self.q = pub, pid, source, q
        self.seq = seq
        """Counts this publisher layer's packets (the bus's loss accounting, as audio's)."""
        self.rtp = rtp
        """The publisher's RTP sequence number (16 bits)."""
        self.ts, self.marker, self.payload, self.codec = ts, marker, payload, codec
        self.desc: vp8.Vp8 | None = None
        if codec == "vp8":
            self.desc = vp8.parse(payload)
            self.key = self.desc.keyframe
        else:
            self.key = vp8.h264_keyframe(payload)

    def picture_size(self) -> tuple[int, int] | None:
        """The size a keyframe declares (VP8: its frame header; H.264: the SPS this packet
        carries), else ``None``; ``ValueError`` if that header is malformed."""
        if self.desc is not None:
            return (self.desc.width, self.desc.height) if self.desc.width else None
        return h264.picture_size(self.payload) if self.key else None

    def fast_args(self, now: float) -> tuple[object, ...]:
        """The arguments of a C writer's ``vp8`` for this packet (``Writer.vp8``)."""
        d = self.desc
        if d is None:
            return (self.rtp, self.ts, self.marker, self.payload, 0, False, -1, 0, -1, now)
        pic = -1 if d.picture_id is None else d.picture_id
        tl0 = -1 if d.tl0picidx is None else d.tl0picidx
        at, long_id = d.picture_id_at, d.long_id
        return (self.rtp, self.ts, self.marker, self.payload, at, long_id, pic, d.tl0_at, tl0, now)

    def to_bus(self) -> bytes:
        return pack(
            [self.seq, self.ts, self.payload, self.pub, self.pid, self.rtp, self.marker]
            + [self.q, self.codec]
        )

    @classmethod
    def from_bus(cls, data: bytes, source: str = "") -> VideoPacket:
        seq, ts, payload, pub, pid, rtp, marker, q, codec = unpack(data)[:9]
        if not (
            isinstance(seq, int)
            and isinstance(ts, int)
            and isinstance(rtp, int)
            and isinstance(payload, bytes)
            and isinstance(pub, str)
            and isinstance(pid, str)
            and q in RANK
            and codec in ("vp8", "h264")
        ):
            raise ValueError("malformed video packet")
        ts &= 0xFFFFFFFF
        return cls(pub, pid, source, q, seq, rtp & 0xFFFF, ts, bool(marker), payload, codec)


class Sink(Protocol):
    """Where an outlet's packets go (``vhook.VideoSender``)."""

    def write(self, codec: str, seq: int, ts: int, marker: bool, payload: bytes) -> bool: ...


class Layers:
    """Which layers of one source flow on this node, and at what bitrate."""

    def __init__(self) -> None:
        self.seen: dict[str, float] = {}
        self.bits: dict[str, float] = {}
        """Bits per second of each layer (an average over about a second)."""
        self._window: dict[str, tuple[float, int]] = {}

    def saw(self, q: str, size: int, now: float) -> None:
        self.seen[q] = now
        start, count = self._window.get(q, (now, 0))
        count += size
        if now - start >= 1.0:
            self.bits[q] = count * 8 / (now - start)
            start, count = now, 0
        self._window[q] = (start, count)

    def announced(self, qs: list[str], now: float) -> None:
        """Another node says these layers flow there (we may subscribe to none of them)."""
        for q in qs:
            if q in RANK:
                self.seen[q] = max(self.seen.get(q, 0.0), now)

    def flowing(self, now: float) -> list[str]:
        return [q for q in QUALITIES if now - self.seen.get(q, -FLOWING) < FLOWING]

    def best(self, target: str, now: float) -> str | None:
        """The best flowing layer not above ``target``; else the lowest flowing; else None."""
        flowing = self.flowing(now)
        under = [q for q in flowing if RANK[q] <= RANK[target]]
        if under:
            return under[-1]
        return flowing[0] if flowing else None


AskKeyframe = Callable[[str, str], None]
"""``ask(source, quality)``: a viewer needs a keyframe of that layer."""


class VideoOutlet:
    """One viewer's tile: the packets of one layer of one source, as one continuous stream.

    Call :meth:`show` when the viewer changes what the tile shows, :meth:`retarget` a few
    times a second (and after each estimate), :meth:`feed` with every packet of the source.
    """

    def __init__(self, pid: str, sink: Sink, ask: AskKeyframe) -> None:
        self.pid = pid
        self.sink = sink
        self.ask = ask
        self.source: str | None = None
        self.want = "h"
        """The quality the viewer asked for (its tile's size)."""
        self.estimate: float | None = None
        """The viewer's receive estimate (REMB, bit/s), once it sent one."""
        self.loss = 0.0
        self.layer: str | None = None
        """The layer forwarded now (None: waiting for a first keyframe)."""
        self.goal: str | None = None
        """The layer to switch to at its next keyframe."""
        self.asked_at = 0.0
        self.switches = 0
        self.fell_at = float("-inf")
        """When the estimate or loss last took the aim below the layer forwarded."""
        st = self._st = Rebase()
        """The re-basing; moved into the sink's C writer, where it has one, at a switch
        (:meth:`_holder`: the sink may be replaced after the outlet is made)."""
        st.base = st.seq_off = st.ts_off = st.pic_off = st.tl0_off = 0
        st.last_seq = random.randrange(1 << 16)
        st.last_ts = random.randrange(1 << 32)
        st.last_pic = random.randrange(1 << 15)
        st.last_tl0 = random.randrange(1 << 8)
        st.last_at = 0.0
        self.fast: Callable[..., int] | None = None
        """The sink's C write of this tile's layer (``VideoSender.tile_fast``), once on one:
        :meth:`VideoSource.push` calls it for the packets of that layer instead of :meth:`feed`."""

    def show(self, source: str | None, want: str) -> None:
        if source != self.source:
            self.source = source
            self.layer = self.goal = None
        self.want = want

    def aim(self, layers: Layers, now: float) -> str | None:
        """The layer this viewer should get: its tile's quality, lowered to fit its
        estimate and loss (and not raised again within :data:`UPHOLD` of such a fall),
        then the best that actually flows."""
        q = self.want
        bits = layers.bits
        if self.estimate is not None:
            while RANK[q] > 0 and bits.get(q, 0.0) * HEADROOM > self.estimate:
                q = QUALITIES[RANK[q] - 1]
        if self.loss > LOSSY and RANK[q] > 0:
            q = QUALITIES[RANK[q] - 1]
        layer = self.layer
        if layer is not None:
            if RANK[q] < min(RANK[layer], RANK[self.want]):  # lowered, not asked lower
                self.fell_at = now
            elif RANK[q] > RANK[layer] and now - self.fell_at < UPHOLD:
                q = layer
        return layers.best(q, now)

    def retarget(self, layers: Layers, now: float) -> None:
        """Decide the layer to switch to; ask its keyframe (again after :data:`RETRY`)."""
        if self.source is None:
            return
        aim = self.aim(layers, now)
        if aim is None or aim == self.layer:
            self.goal = None
            return
        if aim != self.goal or now - self.asked_at >= RETRY:
            self.goal = aim
            self.asked_at = now
            self.ask(self.source, aim)

    def feed(self, p: VideoPacket, now: float) -> bool:
        st = self._st
        if p.q != self.layer:
            if p.q != self.goal or not p.key:
                return False
            self._rebase(p, now)
            st = self._st
        else:
            ahead = (p.rtp - st.base) & 0xFFFF
            if ahead >= 0x8000:
                return False  # older than the switch (a late retransmission): its seq is taken
        seq = (p.rtp + st.seq_off) & 0xFFFF
        ts = (p.ts + st.ts_off) & 0xFFFFFFFF
        payload = p.payload
        d = p.desc
        if d is not None and (d.picture_id is not None or d.tl0picidx is not None):
            pic = None if d.picture_id is None else (d.picture_id + st.pic_off) & 0x7FFF
            tl0 = None if d.tl0picidx is None else (d.tl0picidx + st.tl0_off) & 0xFF
            if st.pic_off or st.tl0_off:
                payload = vp8.rewrite(payload, d, pic, tl0)
            if pic is not None:
                st.last_pic = pic
            if tl0 is not None:
                st.last_tl0 = tl0
        if (seq - st.last_seq) & 0xFFFF < 0x8000:
            st.last_seq = seq
        if ts != st.last_ts:
            st.last_ts = ts
            st.last_at = now
        return self.sink.write(p.codec, seq, ts, p.marker, payload)

    def after(self, result: int, p: VideoPacket, now: float) -> bool:
        """:attr:`fast` returned 2 (sent; the sender's report is due) or 3 (not bound:
        nothing changed). Bind and send again; a sink that left C (a TURN pair) is fed from
        here on through :meth:`feed` (the re-basing stays where it is)."""
        sink: Any = self.sink
        if result == 2:
            sink.report()
            return True
        ready = sink.ready()
        if sink.tile_state() is None:  # now on the Python writer
            self.fast = None
            return self.feed(p, now)
        fast = self.fast
        result = 3 if not ready or fast is None else fast(*p.fast_args(now))
        if result == 2:
            sink.report()
        elif result == 3:  # not connected (yet): dropped and counted, as VideoSender.write does
            sink.dropped += 1
        return result in (1, 2)

    def _holder(self) -> Any:
        """Where the re-basing is kept: the sink's C writer where it has one (its values
        moved there the first time), else where it was."""
        state = getattr(self.sink, "tile_state", None)
        holder = None if state is None else state()
        st = self._st
        if holder is not None and holder is not st:
            for name in Rebase.__slots__:
                setattr(holder, name, getattr(st, name))
            self._st = st = holder
        return st

    def _rebase(self, p: VideoPacket, now: float) -> None:
        """Start forwarding ``p``'s layer: its numbers continue the ones sent so far."""
        st = self._holder()
        ticks = 1 if not self.switches else max(1, round((now - st.last_at) * CLOCK))
        st.seq_off = (st.last_seq + 1 - p.rtp) & 0xFFFF
        st.ts_off = (st.last_ts + ticks - p.ts) & 0xFFFFFFFF
        d = p.desc
        if d is not None:
            if d.picture_id is not None:
                st.pic_off = (st.last_pic + 1 - d.picture_id) & 0x7FFF
            if d.tl0picidx is not None:
                st.tl0_off = (st.last_tl0 + 1 - d.tl0picidx) & 0xFF
        st.base = p.rtp
        self.layer = p.q
        self.goal = None
        self.switches += 1
        tile_fast = getattr(self.sink, "tile_fast", None)
        self.fast = None if tile_fast is None else tile_fast(p.codec)


class Rebase:
    """A tile's re-basing of the layer it forwards onto its own numbers (the fields of the C
    writer's that hold it where the sink has one)."""

    __slots__ = (
        *("base", "seq_off", "ts_off", "pic_off", "tl0_off"),
        *("last_seq", "last_ts", "last_pic", "last_tl0", "last_at"),
    )

    base: int
    seq_off: int
    ts_off: int
    pic_off: int
    tl0_off: int
    last_seq: int
    last_ts: int
    last_pic: int
    last_tl0: int
    last_at: float


class Arrivals:
    """Which sequence numbers of one RTP stream (one SSRC) arrived, over the last
    :attr:`WINDOW`: :meth:`first` is False for a packet seen before.

    Chromium's pacer pads a camera's uplink up to the estimate it is given with RTX copies
    of packets it already sent ("redundant payload padding"); once unwrapped they are the
    same packets again, hundreds a second. Passed on, they would spend the publisher's
    packet budget (its real packets then dropped as a flood, gaps no viewer's NACK can
    repair) and reach each viewer twice.
    """

    WINDOW = 1024

    def __init__(self) -> None:
        self.top: int | None = None
        self.seen = 0
        """Bit ``n``: packet ``top - n`` arrived."""

    def first(self, seq: int) -> bool:
        top = self.top
        if top is None:
            self.top, self.seen = seq, 1
            return True
        ahead = (seq - top) & 0xFFFF
        if ahead == 0:
            return False
        if ahead < 0x8000:
            self.top = seq
            self.seen = ((self.seen << ahead) | 1) & ((1 << self.WINDOW) - 1)
            return True
        back = 0x10000 - ahead
        if back >= self.WINDOW:  # far older than anything kept: the stream started over
            self.top, self.seen = seq, 1
            return True
        bit = 1 << back
        if self.seen & bit:
            return False
        self.seen |= bit
        return True


Tap = Callable[[VideoPacket, float], None]
"""``tap(packet, now)``: every packet of every layer a source forwards (a recording)."""


class VideoSource:
    """One source on this node: its layers, the outlets showing it, its taps."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.layers = Layers()
        self.outlets: set[VideoOutlet] = set()
        self.taps: list[Tap] = []

    def push(self, p: VideoPacket, now: float) -> int:
        self.layers.saw(p.q, len(p.payload), now)
        sent = 0
        q = p.q
        args = None
        for outlet in self.outlets:
            fast = outlet.fast
            if fast is None or outlet.layer != q:
                sent += outlet.feed(p, now)
                continue
            # The tile's steady state in its sink's C writer: VideoOutlet.feed, inlined.
            if args is None:
                args = p.fast_args(now)
            r = fast(*args)
            if r == 1:
                sent += 1
            elif r:
                sent += outlet.after(r, p, now)
        for tap in self.taps:
            tap(p, now)
        return sent

    def needs(self) -> set[str]:
        """The layers some outlet forwards or waits for (what must cross the bus)."""
        out: set[str] = set()
        for outlet in self.outlets:
            out.update(q for q in (outlet.layer, outlet.goal) if q is not None)
        return out

    @property
    def idle(self) -> bool:
        return not self.outlets and not self.taps


class KeyframeAsk:
    """Keyframe requests per publisher layer, at most one per ``interval``; the requests
    that arrive meanwhile are merged into one sent when the interval is over.

    A publisher answers every PLI with a keyframe, which costs it several times a normal
    frame's bits: ten viewers joining within a second must cost one or two, not ten.
    """

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.last: dict[tuple[str, str], float] = {}
        self.pending: set[tuple[str, str]] = set()
        self.sent = 0
        self.merged = 0

    def ask(self, key: tuple[str, str], now: float) -> bool:
        """Whether to send a request for ``key`` now (else it waits, merged)."""
        last = self.last.get(key)
        if last is None or now - last >= self.interval:
            self.last[key] = now
            self.pending.discard(key)
            self.sent += 1
            return True
        if key in self.pending:
            self.merged += 1
        self.pending.add(key)
        return False

    def due(self, now: float) -> list[tuple[str, str]]:
        """The merged requests whose interval is over: send them now."""
        out = [k for k in self.pending if now - self.last.get(k, 0.0) >= self.interval]
        for k in out:
            self.pending.discard(k)
            self.last[k] = now
            self.sent += 1
        return out
