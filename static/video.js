// Stage video: publishing a camera or a screen, and showing sources in <video> tiles.
// Signalling rides HC's WebSocket: video.offer / video.show / video.close, each answered by a
// reply with the same cid; the server says which sources publish with video.sources and
// closes a publisher with video.closed (docs/protocol.md, "Video"). The server forwards the
// encoded frames (never decodes): a camera is sent as three simulcast layers (rid l, m, h)
// and each tile gets the layer its size asks for.
//
// The API the stage layout uses (HC.video):
//   publish("camera"|"screen") → Promise       start sending (refused: rejects {code, message})
//   unpublish(source)                           stop ("camera", "screen" or "<pid>:camera")
//   show(videoEl, sourceId, quality)            show a source in a <video>, "h" | "m" | "l"
//   hide(videoEl)                               stop showing it there
//   onsources(fn)                               fn(Set of source ids publishing), now and on change
// The default stage below (a tile per source) only exists until a layout replaces it.
"use strict";

(() => {
  const { h } = HC;
  const LAYERS = [ // low to high: the simulcast encodings of a camera (RFC 8853 rids)
    { rid: "l", scaleResolutionDownBy: 4, maxBitrate: 150000 },
    { rid: "m", scaleResolutionDownBy: 2, maxBitrate: 500000 },
    { rid: "h", maxBitrate: 1500000 },
  ];

  const V = {
    sources: {}, // source id -> layers flowing
    publishing: {}, // "camera" | "screen" -> {pc, stream}
    view: null, // {pc, tiles: [{el, source, quality}]}
    listeners: [],
    els: {},
  };

  const { rpc } = HC;

  // TURN credentials and relay-aware gathering shared with the audio (static/audio.js):
  // a camera or a viewer behind a network that blocks UDP goes through the same relay.
  const iceConfig = async () => ({ ...(await HC.audio.iceConfig()), bundlePolicy: "max-bundle" });
  const maxTiles = () => (HC.assembly.video || {}).max_tiles || 4;

  const gathered = (pc) => HC.audio.gathered(pc);

  // --- publishing ------------------------------------------------------------------------

  async function publish(what) {
    if (what !== "camera" && what !== "screen") throw { code: "bad_args", message: what };
    unpublish(what, false);
    // Within the room's cap (a larger picture is refused by the node): a 1080p screen is
    // scaled down by the browser before it is encoded.
    const cap = HC.assembly.video || {};
    const size = { width: { max: cap.max_width || 1280 }, height: { max: cap.max_height || 720 } };
    const stream = what === "camera"
      ? await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 } })
      : await navigator.mediaDevices.getDisplayMedia({ video: size });
    const track = stream.getVideoTracks()[0];
    track.contentHint = what === "screen" ? "detail" : "motion";
    const pc = new RTCPeerConnection(await iceConfig());
    const held = { pc, stream };
    V.publishing[what] = held;
    const init = { direction: "sendonly", streams: [stream] };
    if (what === "camera") init.sendEncodings = LAYERS.map((l) => ({ ...l }));
    const { sender } = pc.addTransceiver(track, init);
    track.addEventListener("ended", () => unpublish(what));
    try {
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const reply = await rpc("video.offer", { purpose: "publish", source: what,
                                               sdp: pc.localDescription.sdp });
      if (V.publishing[what] !== held) return reply.source;
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      // Keep the size and drop frames rather than shrink the picture under a low estimate.
      const params = sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      await sender.setParameters(params).catch(() => {});
      HC.render();
      return reply.source;
    } catch (err) {
      if (V.publishing[what] === held) unpublish(what, false);
      throw err;
    }
  }

  function unpublish(source, tell = true) {
    const what = String(source).split(":").pop();
    const held = V.publishing[what];
    if (!held) return;
    delete V.publishing[what];
    for (const t of held.stream.getTracks()) t.stop();
    held.pc.close();
    if (tell) rpc("video.close", { pc: what }).catch(() => {});
    HC.render();
  }

  // --- viewing: one peer connection, a transceiver per tile ------------------------------

  let viewing = null;
  function viewer() {
    viewing ??= (async () => {
      const pc = new RTCPeerConnection(await iceConfig());
      const tiles = [];
      for (let n = 0; n < maxTiles(); n++) {
        const tr = pc.addTransceiver("video", { direction: "recvonly" });
        tiles.push({ el: null, source: null, quality: "h", track: tr.receiver.track });
      }
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc);
      const reply = await rpc("video.offer", { purpose: "view", sdp: pc.localDescription.sdp });
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      V.view = { pc, tiles };
      return V.view;
    })().catch((err) => { viewing = null; throw err; });
    return viewing;
  }

  let showing = Promise.resolve();
  function sendShown() {
    const slots = [];
    V.view.tiles.forEach((t, slot) => {
      if (t.source) slots.push({ slot, source: t.source, quality: t.quality });
    });
    showing = showing.then(() => rpc("video.show", { slots })).catch(HC.explain);
    return showing;
  }

  async function show(el, source, quality = "h") {
    if (HC.reception && !HC.reception.video()) return undefined; // audio or captions only
    const view = await viewer();
    let tile = view.tiles.find((t) => t.el === el) || view.tiles.find((t) => !t.el);
    if (!tile) throw { code: "too_many_tracks", message: "every tile is in use" };
    tile.el = el;
    tile.source = source;
    tile.quality = ["h", "m", "l"].includes(quality) ? quality : "h";
    if (!el.srcObject || el.srcObject.getVideoTracks()[0] !== tile.track) {
      el.srcObject = new MediaStream([tile.track]);
    }
    el.muted = true;
    el.playsInline = true;
    el.play().catch(() => {});
    return sendShown();
  }

  function hide(el) {
    const tile = V.view && V.view.tiles.find((t) => t.el === el);
    if (!tile) return;
    tile.el = null;
    tile.source = null;
    el.srcObject = null;
    sendShown();
  }

  function onsources(fn) {
    V.listeners.push(fn);
    fn(new Set(Object.keys(V.sources)));
  }

  function setSources(sources) {
    V.sources = sources || {};
    const ids = new Set(Object.keys(V.sources));
    for (const fn of V.listeners) {
      try { fn(new Set(ids)); } catch (e) { console.error("video.onsources", e); }
    }
    HC.render();
  }

  // --- lip sync: the picture waits for the sound -----------------------------------------
  // The floor audio (static/audio.js) and the stage video arrive on two peer connections, so
  // Chromium cannot pair them (its own lip sync works inside one connection); the audio's
  // jitter buffer, which grows on a jittery network or a busy machine, then lets the picture
  // run ahead of the voice (measured: 120–274 ms at the interpreter's console, docs/benchmarks.md
  // "Audio–video offset at the console"). Once a second the page reads how long the audio
  // waits (getStats: jitter buffer and the output's latency) and asks each video receiver to
  // hold its frames as long, less the video's own decode time (RTCRtpReceiver
  // .jitterBufferTarget, a minimum). The node forwards both as they come (bench/avsync.py).
  const SYNC_MS = 1000, SYNC_MAX = 1000, SYNC_STEP = 10; // ms
  const was = { audio: new Map(), video: new Map() };
  V.sync = { on: true, target: 0, audio: 0, decode: 0, out: 0 };

  // The delay (ms) of an inbound stream: the median of its means over each of the last
  // SYNC_OVER seconds (two counters a second apart). A median, because a busy machine or a
  // burst of loss makes NetEq's delay spike for a second or two; following each spike would
  // hold the picture back long after the sound has caught up.
  const SYNC_OVER = 5;
  function recent(kind, s, total, count) {
    const seen = was[kind].get(s.id) || [];
    seen.push([s[total], s[count]]);
    if (seen.length > SYNC_OVER + 1) seen.shift();
    was[kind].set(s.id, seen);
    const means = [];
    for (let i = 1; i < seen.length; i++) {
      const n = seen[i][1] - seen[i - 1][1];
      if (n > 0) means.push((1000 * (seen[i][0] - seen[i - 1][0])) / n);
    }
    if (!means.length) return null;
    means.sort((a, b) => a - b);
    return means[Math.floor(means.length / 2)];
  }

  async function lipSync() {
    const view = V.view, pc = HC.audio && HC.audio.pc;
    if (!view || view.pc.connectionState === "closed") return;
    let audio = null, decode = 0;
    if (V.sync.on && pc && pc.connectionState === "connected") {
      for (const s of (await pc.getStats()).values()) {
        if (s.type !== "inbound-rtp" || s.kind !== "audio") continue;
        const d = recent("audio", s, "jitterBufferDelay", "jitterBufferEmittedCount");
        if (d !== null && (audio === null || d > audio)) audio = d; // the lane that plays
      }
      for (const s of (await view.pc.getStats()).values()) {
        if (s.type !== "inbound-rtp" || s.kind !== "video") continue;
        const d = recent("video", s, "totalDecodeTime", "framesDecoded");
        if (d !== null) decode = Math.max(decode, d);
      }
    }
    const out = A_CTX() ? 1000 * (A_CTX().outputLatency || 0) : 0;
    const target = audio === null ? 0
      : Math.min(SYNC_MAX, Math.max(0, Math.round(audio + out - decode)));
    Object.assign(V.sync, { audio: audio || 0, decode, out });
    if (Math.abs(target - V.sync.target) < SYNC_STEP) return;
    V.sync.target = target;
    for (const tr of view.pc.getTransceivers()) {
      if ("jitterBufferTarget" in tr.receiver) tr.receiver.jitterBufferTarget = target;
    }
  }
  // The page's AudioContext, if listening made one (the same output device as <audio>).
  const A_CTX = () => (HC.audio && HC.audio.ctx) || null;
  setInterval(() => { lipSync().catch(() => {}); }, SYNC_MS);

  HC.video = { publish, unpublish, show, hide, onsources, state: V };

  // --- the default stage: a tile per publishing source -----------------------------------

  function mayPublish(hc) {
    // Mirror of server/stage.py video_publishers: moderators and whoever has the floor.
    return hc.you.role === "moderator" || hc.state.core.speakers.includes(hc.you.pid);
  }

  // The layer a tile asks for, from the size it is shown at (CSS pixels).
  const qualityFor = (el) => (el.clientWidth >= 480 ? "h" : el.clientWidth >= 240 ? "m" : "l");

  function label(hc, source) {
    const [pid, what] = source.split(":");
    if (pid === "sign") return hc.t("vid.sign", { lang: what });
    const name = (hc.person(pid) || {}).name || pid;
    return hc.t(what === "screen" ? "vid.of_screen" : "vid.of_camera", { name });
  }

  function layout(hc, ids) {
    const grid = V.els.grid;
    const have = new Map([...grid.children].map((fig) => [fig.dataset.source, fig]));
    for (const [source, fig] of have) {
      if (!ids.has(source)) { hide(fig.querySelector("video")); fig.remove(); }
    }
    for (const source of ids) {
      if (have.has(source)) continue;
      const video = h("video", { muted: true, autoplay: true, playsinline: true });
      const fig = h("figure", { class: "tile", dataset: { source } }, video,
        h("figcaption", {}, label(hc, source)));
      grid.append(fig);
      show(video, source, qualityFor(video)).catch(HC.explain);
    }
    V.els.none.hidden = ids.size > 0;
  }

  function init(hc) {
    // The sources publishing when this page joined (a reload while a camera is on): the
    // node sends video.sources only when the set changes.
    V.sources = (hc.assembly.video || {}).sources || {};
    if (HC.stage) return; // the stage layout (static/stage.js) replaces this default stage
    const button = (what) => h("button", {
      id: `video-${what}`,
      onclick: () => (V.publishing[what] ? unpublish(what)
                                          : publish(what).catch((e) => HC.explain(e.code ? e
                                            : { code: `${what}_denied`, message: String(e) }))),
    });
    const section = h("section", { id: "video-section", "aria-labelledby": "video-h" },
      h("h2", { id: "video-h", "data-t": "vid" }, hc.t("vid")),
      h("div", { class: "actions", id: "video-actions" }, button("camera"), button("screen")),
      h("p", { id: "video-none", class: "muted", "data-t": "vid.none" }, hc.t("vid.none")),
      h("div", { id: "video-grid", class: "video-grid" }));
    const features = document.getElementById("features");
    features.parentNode.insertBefore(section, features);
    V.els = { section, grid: section.querySelector("#video-grid"),
              none: section.querySelector("#video-none"),
              actions: section.querySelector("#video-actions") };
    onsources((ids) => layout(hc, ids));
    setSources((hc.assembly.video || {}).sources);
  }

  function render(hc) {
    if (!V.els.actions) return;
    const may = mayPublish(hc);
    V.els.actions.hidden = !may;
    for (const what of ["camera", "screen"]) {
      const on = !!V.publishing[what];
      const b = V.els.actions.querySelector(`#video-${what}`);
      b.textContent = hc.t(`vid.${what}.${on ? "stop" : "start"}`); // the label says the state
    }
    for (const fig of V.els.grid.children) {
      fig.querySelector("figcaption").textContent = label(hc, fig.dataset.source);
    }
    if (!may) for (const what of Object.keys(V.publishing)) unpublish(what);
  }

  function onMessage(hc, msg) {
    if (msg.type === "video.sources") {
      setSources(msg.sources);
    } else if (msg.type === "video.closed") {
      unpublish(msg.pc, false);
      if (msg.code !== "not_on_stage") HC.explain(msg);
    }
  }

  HC.register({ name: "video", init, render, onMessage });
})();
