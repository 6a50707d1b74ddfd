"""Chromium end to end: the chair's fake camera on a member's stage, and a small tile's layer.

The chair's page publishes Chromium's fake camera, fed from a y4m file this test writes:
every frame has its own brightness (a counter), so the member's page can tell, by reading
its <video> back through a canvas, that frames arrive and advance. The camera is sent as
three simulcast layers; a tile asked at the low quality gets the 320×180 layer, at high the
1280×720 one — switched by the node at keyframes, never decoded there.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .audio_helpers import loopback_ice  # noqa: F401 (fixture)
from .conftest import timeout
from .reach_helpers import capture_args, chair_and_ana, open_as
from .stage_pages import camera_on, open_page, tile_plays
from .waiting import eventually

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("loopback_ice")]
W, H, FPS, FRAMES = 1280, 720, 15, 30


def counter_y4m(path: Path) -> Path:
    """A y4m clip whose frame n has luma 40 + 5·n: brightness is the frame counter."""
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        chroma = bytes([128]) * (W * H // 4)
        for n in range(FRAMES):
            f.write(b"FRAME\n" + bytes([40 + 5 * n]) * (W * H) + chroma + chroma)
    return path


@pytest.fixture
def browser_args(tmp_path: Path) -> list[str]:
    return capture_args(video=counter_y4m(tmp_path / "counter.y4m"))


# The tile's picture, read back: its mean brightness (the clip's counter) and size.
READ = """() => {
  const v = document.querySelector('#stage-area .tile:not(.novideo) video');
  if (!v || !v.videoWidth) return null;
  const c = document.createElement('canvas');
  c.width = 32; c.height = 18;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(v, 0, 0, 32, 18);
  const d = g.getImageData(0, 0, 32, 18).data;
  let sum = 0;
  for (let i = 0; i < d.length; i += 4) sum += d[i + 1];
  return { luma: Math.round(sum / (d.length / 4)), w: v.videoWidth, h: v.videoHeight };
}"""


async def advancing(page: Any, distinct: int, seconds: float) -> list[dict[str, int]]:
    """Read the tile until it has shown ``distinct`` different pictures (counter values)."""
    seen: list[dict[str, int]] = []
    deadline = time.monotonic() + timeout(seconds)
    while len({s["luma"] for s in seen}) < distinct:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the picture must advance with the clip's counter: {[s['luma'] for s in seen]}"
            )
        got = await page.evaluate(READ)
        if got:
            seen.append(got)
        await page.wait_for_timeout(100)
    return seen


async def low_layer(page: Any, source: str) -> list[dict[str, int]]:
    """Ask the page's first tile for ``source``'s low layer; the pictures it then shows."""
    await page.evaluate(
        f"() => HC.video.show(document.querySelector('#stage-area .tile video'), '{source}', 'l')"
    )
    await page.wait_for_function(
        "() => document.querySelector('#stage-area .tile video').videoWidth === 320",
        timeout=timeout(10) * 1000,
    )
    return await advancing(page, 3, 10)


async def watch(page: Any, seconds: float) -> list[dict[str, int]]:
    seen = []
    deadline = time.monotonic() + timeout(seconds)
    while time.monotonic() < deadline:
        got = await page.evaluate(READ)
        if got:
            seen.append(got)
        await page.wait_for_timeout(100)
    return seen


async def test_a_member_sees_the_chairs_camera_and_a_small_tile_gets_the_low_layer(
    start_node, invites, browser
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair, ana = await chair_and_ana(browser, node, invites, open_page)
    assert await ana.is_hidden("#stage-camera"), "a member off stage has no camera"
    await camera_on(chair, 10)
    assert await chair.text_content("#stage-camera") == "Turn camera off"
    await ana.wait_for_function(
        "() => document.querySelectorAll('#stage-area .tile:not(.novideo)').length === 1",
        timeout=timeout(10) * 1000,
    )
    await tile_plays(ana, 10)
    await advancing(ana, 5, 15)
    room = node.node.feature["video"].rooms["plenary"]
    source = next(iter(room.publishers))
    assert set(room.publishers[source].layer_of.values()) == {"l", "m", "h"}

    small = await low_layer(ana, source)
    assert {s["w"] for s in small} == {320}, "the low layer advances too"
    await ana.evaluate(
        f"() => HC.video.show(document.querySelector('#stage-area .tile video'), '{source}', 'h')"
    )
    await ana.wait_for_function(
        "() => document.querySelector('#stage-area .tile video').videoWidth >= 640",
        timeout=timeout(15) * 1000,
    )
    await chair.click("#stage-camera")
    await ana.wait_for_function(
        "() => document.querySelectorAll('#stage-area .tile:not(.novideo)').length === 0",
        timeout=timeout(10) * 1000,
    )
    await ana.close()
    await chair.close()


STATS = """async () => {
  const stats = await HC.video.state.view.pc.getStats();
  let pair = null, video = null;
  stats.forEach((r) => {  // the pair in use: the transport's selected one
    if (r.type === 'transport' && r.selectedCandidatePairId) {
      pair = stats.get(r.selectedCandidatePairId);
    }
  });
  stats.forEach((r) => {
    if (!pair && r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') pair = r;
    if (r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0) video = r;
  });
  const local = pair && stats.get(pair.localCandidateId);
  return { port: local ? local.port : null,
           decoded: video ? video.framesDecoded : 0, freezes: video ? video.freezeCount : 0,
           nacks: video ? video.nackCount : 0, lost: video ? video.packetsLost : 0 };
}"""


# Chromium pads its uplink with RTX copies of packets it sent: the node drops them as
# repeats (forward.Arrivals). Passed on, they had spent the camera's packet budget (its real
# packets dropped as a flood: gaps the viewer NACKed in vain) in about half of the runs.
async def test_at_three_percent_loss_the_member_does_not_freeze(
    start_node, invites, browser
) -> None:  # type: ignore[no-untyped-def]
    from .test_video import lossy

    node = await start_node()
    chair, ana = await chair_and_ana(browser, node, invites, open_page)
    await chair.click("#stage-camera")
    await tile_plays(ana, 15)
    seconds = 6
    start = await ana.evaluate(STATS)
    await watch(ana, seconds)  # the same time without loss: what this machine does anyway
    before = await ana.evaluate(STATS)
    assert before["port"], before
    # The fake camera's flat frames are a packet or two each: at 3 % a few seconds may lose
    # none, so the loss lasts until the viewer has NACKed (at most 3 × as long).
    with lossy(before["port"], 3):
        seen = await watch(ana, seconds)
        lasted = seconds
        after = await ana.evaluate(STATS)
        while after["nacks"] == before["nacks"] and lasted < 3 * seconds:
            seen += await watch(ana, 2)
            lasted += 2
            after = await ana.evaluate(STATS)
    room = node.node.feature["video"].rooms["plenary"]
    outlets = [o for p in room.peers.values() if p.viewer for o in p.viewer.outlets if o.source]
    retransmitted = sum(o.sink.retransmitted for o in outlets)
    decoded = after["decoded"] - before["decoded"]
    assert after["nacks"] > before["nacks"] and retransmitted > 0, (before, after)
    scale = lasted / seconds
    baseline = before["decoded"] - start["decoded"]
    assert decoded >= baseline * 0.6 * scale, (
        f"{decoded} frames decoded in {lasted} s under loss, {baseline} in {seconds} s without"
    )
    froze = after["freezes"] - before["freezes"]
    assert froze <= (before["freezes"] - start["freezes"]) * scale + 1, (start, before, after)
    assert len({s["luma"] for s in seen}) >= 10, "the picture kept advancing"
    await ana.close()
    await chair.close()


# A browser that prefers H.264 (as Safari does, or a phone with a hardware encoder): its
# camera's transceivers list H.264 first. The page itself leaves the choice to the browser.
PREFER_H264 = """(() => {
  const add = RTCPeerConnection.prototype.addTransceiver;
  RTCPeerConnection.prototype.addTransceiver = function (what, init) {
    const tr = add.call(this, what, init);
    if (init && init.direction === "sendonly") {
      const codecs = RTCRtpSender.getCapabilities("video").codecs;
      const h264 = (c) => c.mimeType === "video/H264";
      tr.setCodecPreferences([...codecs.filter(h264), ...codecs.filter((c) => !h264(c))]);
    }
    return tr;
  };
})();"""

CODEC = """async (pc) => {
  const stats = await pc.getStats();
  const out = [];
  stats.forEach((r) => {
    if ((r.type === "outbound-rtp" || r.type === "inbound-rtp") && r.kind === "video"
        && r.codecId && (r.framesEncoded || r.framesDecoded)) {
      out.push(stats.get(r.codecId).mimeType);
    }
  });
  return out;
}"""


async def test_a_camera_that_prefers_h264_reaches_the_member_in_h264(
    start_node, invites, browser
) -> None:  # type: ignore[no-untyped-def]
    node = await start_node()
    chair = await browser.new_page(viewport={"width": 1440, "height": 900})
    await chair.add_init_script(PREFER_H264)
    await chair.goto(
        f"{node.url}/r/plenary#t={invites.mint(room='plenary', role='moderator', name='Chair')}"
    )
    await chair.wait_for_function("() => HC.connected && HC.video", timeout=timeout(5) * 1000)
    ana = await open_as(browser, node, invites, "participant", "Ana", opener=open_page)
    await chair.click("#stage-camera")
    await tile_plays(ana, 15)
    await advancing(ana, 5, 15)
    sent = await chair.evaluate(f"() => ({CODEC})(HC.video.state.publishing.camera.pc)")
    got = await ana.evaluate(f"() => ({CODEC})(HC.video.state.view.pc)")
    room = node.node.feature["video"].rooms["plenary"]
    pub = next(iter(room.publishers.values()))
    assert set(sent) == {"video/H264"}, sent
    assert got == ["video/H264"], got
    # Chromium 156 sends H.264 as three simulcast layers too (OpenH264 per layer).
    assert set(pub.layer_of.values()) == {"l", "m", "h"}
    small = await low_layer(ana, pub.source)
    assert {s["w"] for s in small} == {320}, "the low layer advances, switched at an IDR"
    # The room's cap reads the size in OpenH264's SPS: it is the size Chromium decodes.
    sizes: dict[str, tuple[int, int]] = {}

    def sps_sizes(p: Any, now: float) -> None:
        size = p.picture_size()
        if size is not None:
            sizes[p.q] = size

    room.tap(pub.source, sps_sizes)
    for q in ("l", "m", "h"):
        room.ask_keyframe(pub.source, q)
    await eventually(
        lambda: set(sizes),
        until=lambda qs: qs == {"l", "m", "h"},
        timeout=10,
        message="an SPS of each layer after asking each for a keyframe",
    )
    room.untap(pub.source, sps_sizes)
    shown = await ana.evaluate(
        "() => { const v = document.querySelector('#stage-area .tile video');"
        " return [v.videoWidth, v.videoHeight]; }"
    )
    assert sizes["l"] == tuple(shown), (sizes, shown)
    assert sizes["l"][0] < sizes["m"][0] < sizes["h"][0], sizes
    assert room.publishers.get(pub.source) is pub, "within the cap: not closed"
    await ana.close()
    await chair.close()
