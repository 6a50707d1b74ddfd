// Live audio: the player (what you listen to, the original underneath, a level meter), the
// microphone of speakers, the chair and interpreters, the chair's microphone board and
// recording. Signalling rides HC's WebSocket: rtc.offer / rtc.under / rtc.close, each
// answered by a reply with the same cid (docs/protocol.md, "Audio (WebRTC)"); recording is
// the ordinary commands recording.start / recording.stop. The server never mixes: the original underneath is a second track the
// browser plays at the level the slider sets.
"use strict";

(() => {
  const { h } = HC;

  // Mirrors of server/audio.py apply functions.
  const appliers = {
    "audio.muted": (s, ev) => { if (!s.audio.muted.includes(ev.pid)) s.audio.muted.push(ev.pid); },
    "audio.unmuted": (s, ev) => { s.audio.muted = s.audio.muted.filter((p) => p !== ev.pid); },
    "recording.started": (s, ev) => {
      s.audio.recording = { id: ev.id, node: ev.node, by: ev.by, since: ev.since };
    },
    "recording.stopped": (s) => { s.audio.recording = null; },
  };

  // What the page holds; tests read HC.audio (analysers, peer connections).
  const A = {
    ctx: null, pc: null, wantListen: false, analyser: null, under: 0, hearing: null,
    mic: null, wantMic: false, micAnalyser: null, levels: {}, els: {}, recordings: null,
    levelFrames: 0,
  };
  HC.audio = A;
  A.stopListening = () => stopListening(false);  // reach.js: "captions only"

  // --- signalling: any rtc.* request gets one reply with its cid -------------------

  const { rpc } = HC;

  // ICE servers with TURN credentials minted for this person (rtc.ice, server/media/turn.py),
  // asked once per socket; the node sends fresh ones (an rtc.ice message) before they
  // expire, so a new peer connection (a network change, a failure) never waits for them,
  // and live ones get them too (setConfiguration: for any allocation they make anew). The
  // welcome's servers if the node does not answer.
  A.ice = null;  // { iceServers, until }
  function keepIce(msg) {
    const ttl = msg.ttl ? msg.ttl * 1000 : Infinity;
    A.ice = { iceServers: msg.ice_servers, until: Date.now() + ttl * 0.9 };
    for (const pc of [A.pc, A.mic && A.mic.pc]) {
      if (!pc || pc.connectionState === "closed") continue;
      try {
        pc.setConfiguration({ ...pc.getConfiguration(), iceServers: msg.ice_servers });
      } catch (err) { console.warn("ICE servers not applied", err); }
    }
  }
  async function iceConfig() {
    if (A.ice && Date.now() < A.ice.until) return { iceServers: A.ice.iceServers };
    try {
      keepIce(await rpc("rtc.ice"));
      return { iceServers: A.ice.iceServers };
    } catch {
      return { iceServers: (HC.assembly.media || {}).ice_servers || [] };
    }
  }

  A.iceConfig = iceConfig;  // the stage's peer connections (video.js) use the same

  // aiortc takes the browser's candidates from the SDP only (no trickle): wait for them.
  // With UDP blocked, a turn:…?transport=udp URL keeps gathering for 40 s while the TCP and
  // TLS relay candidates come in 0.1 s: stop half a second after the first relay candidate.
  function gathered(pc, ms = 3000) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      pc.addEventListener("icecandidate", (e) => {
        if (e.candidate && e.candidate.type === "relay") setTimeout(resolve, 500);
      });
      setTimeout(resolve, ms);
    });
  }
  A.gathered = gathered;

  // The node bundles every m-line on the first one's transport (its answer's BUNDLE group),
  // so only that m-line's candidates are used; before the answer Chromium gathers for each
  // m-line, which with a TURN relay (a relay port per m-line) passes the node's limit of 8
  // candidates per offer (docs/security.md). Send the first m-line's candidates only.
  function firstCandidates(sdp) {
    let media = 0;
    return sdp.split("\r\n").filter((line) => {
      if (line.startsWith("m=")) media += 1;
      return media <= 1 || !line.startsWith("a=candidate:");
    }).join("\r\n");
  }

  // Clear failure and network changes (static/reach.js): it watches each peer connection
  // and calls restart() for a new one on the same signalling state.
  function watch(pc, which, restart) {
    if (HC.reach) HC.reach.watch(pc, which, restart);
  }

  function context() {
    if (!A.ctx) A.ctx = new AudioContext();
    if (A.ctx.state === "suspended") A.ctx.resume();
    return A.ctx;
  }

  function analyse(stream) {
    const ctx = context();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    ctx.createMediaStreamSource(stream).connect(analyser);
    // Chromium only pulls a graph that reaches the destination: connect it, silenced.
    const mute = ctx.createGain();
    mute.gain.value = 0;
    analyser.connect(mute).connect(ctx.destination);
    return analyser;
  }

  // --- listening ------------------------------------------------------------------------

  // Marks of the listening set-up (performance.getEntriesByType("mark"), "hc.listen.*"):
  // where the time goes between a click and sound (tests/test_reach_slow.py).
  const mark = (what) => performance.mark(`hc.listen.${what}`);

  // The listening peer connection is made as soon as the page is welcomed, *held*: ICE and
  // DTLS are done before anyone clicks, and the node sends nothing on it yet. The click
  // releases it (rtc.hold) and plays its tracks (a user gesture, which playout needs): sound
  // within a few hundred milliseconds instead of a second or two of set-up.
  function warm() {
    if (HC.reception && !HC.reception.audio()) return;  // captions only: no audio at all
    if (!A.wantListen && !A.pc && A.els.main) connect(true).catch(() => {});
  }

  async function startListening() {
    if (HC.reception && !HC.reception.audio()) { stopListening(false); return; } // captions only
    mark("start");
    A.wantListen = true;
    const pc = A.pc;
    if (pc && pc.hcHold && !["failed", "closed"].includes(pc.connectionState)) {
      if (pc.hcAnswered) await release(pc);  // else connect() releases it at its answer
      HC.render();
      return;
    }
    stopListening(true);
    await connect(false);
  }

  async function connect(hold) {
    const tag = hold ? "warm." : "";
    const config = await iceConfig();
    mark(`${tag}ice`);
    if (A.pc || !(hold || A.wantListen)) return;  // another start won meanwhile, or stopped
    const pc = new RTCPeerConnection(config);
    if (HC.reach) HC.reach.track(pc);  // candidate errors from the start
    A.pc = pc;
    pc.hcHold = hold;
    pc.hcTracks = [];
    const lanes = addLanes(pc);
    pc.hcLanes = lanes;
    pc.ontrack = (e) => {
      if (A.pc !== pc) return;
      mark(`${tag}track`);
      if (pc.hcHold) pc.hcTracks.push(e); else playLane(lanes, e);
    };
    pc.onconnectionstatechange = () => {
      if (A.pc === pc) mark(`${tag}pc.${pc.connectionState}`);
      HC.render();
    };
    pc.oniceconnectionstatechange = () => {
      if (A.pc === pc) mark(`${tag}ice.${pc.iceConnectionState}`);
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    mark(`${tag}gathered`);
    if (A.pc !== pc) return;
    try {
      const reply = await rpc("rtc.offer", { purpose: "listen", lanes: LANES, hold,
                                             sdp: firstCandidates(pc.localDescription.sdp) });
      mark(`${tag}answer`);
      if (A.pc !== pc) return;
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      pc.hcAnswered = true;
      if (!hold) {
        watch(pc, "listen", restartListening);
        if (A.under > 0) await rpc("rtc.under", { on: true });
      } else if (A.wantListen) {
        await release(pc);  // clicked while it was being made
      }
    } catch (err) {
      if (hold) {  // a held one failing unseen says nothing; after a click, try afresh
        if (A.pc === pc) { pc.close(); A.pc = null; }
        if (A.wantListen && !A.pc) connect(false);
        return;
      }
      if (A.pc === pc) stopListening(false);
      HC.explain(err);
    }
    HC.render();
  }

  // The click on a held connection: play what it carries, tell the node to send it.
  async function release(pc) {
    pc.hcHold = false;
    mark("release");
    for (const e of pc.hcTracks.splice(0)) playLane(pc.hcLanes, e);
    watch(pc, "listen", restartListening);
    try {
      await rpc("rtc.hold", { on: false });
      if (A.under > 0) await rpc("rtc.under", { on: true });
    } catch (err) {
      HC.explain(err);
    }
  }

  const restartListening = () => { if (A.wantListen) startListening(); };

  function stopListening(keepWanted) {
    if (!keepWanted) A.wantListen = false;
    // Stopping on purpose tells the node at once (its count of listeners without audio).
    if (A.pc && !keepWanted) rpc("rtc.close", { pc: "listen" }).catch(() => {});
    if (A.pc) { A.pc.close(); A.pc = null; }
    A.analyser = null;
    for (const el of laneElements()) el.srcObject = null;
    HC.render();
  }

  function setUnderVolume() {
    for (const el of laneElements("under")) el.volume = A.under / 100;
  }

  // --- the floor's lanes: several open microphones, mixed here ------------------------------
  // The server forwards up to LANES floor microphones at once (the chair interjecting, two
  // panelists overlapping), each on a track of its own; it never decodes to mix. What one
  // hears is a group of LANES tracks (a channel uses the first), and the floor underneath
  // another group: rtc.offer { lanes } with 2 × LANES m-lines (docs/protocol.md). Each track
  // plays in its own <audio> element (the browser mixes them), and the main group is mixed
  // into one WebAudio analyser for the meter.
  const LANES = 3;

  // The transceivers of a listening peer connection: { main: [...], under: [...] }.
  function addLanes(pc) {
    const group = () => Array.from({ length: LANES },
      () => pc.addTransceiver("audio", { direction: "recvonly" }));
    return { main: group(), under: group() };
  }

  // The <audio> elements of a group ("main", "under"; both when none given): lane 0 is
  // #audio-main / #audio-under, the others #audio-main-2 … made on first use.
  function laneElements(which) {
    const groups = which ? [which] : ["main", "under"];
    const out = [];
    for (const g of groups) {
      if (!A.els[g]) continue;
      A.els.lanes = A.els.lanes || {};
      if (!A.els.lanes[g]) {
        A.els.lanes[g] = [A.els[g]];
        for (let i = 2; i <= LANES; i++) {
          const el = h("audio", { id: `audio-${g}-${i}`, autoplay: true });
          A.els[g].after(el);
          A.els.lanes[g].push(el);
        }
      }
      out.push(...A.els.lanes[g]);
    }
    return out;
  }

  function playLane(lanes, e) {
    const stream = new MediaStream([e.track]);
    for (const g of ["main", "under"]) {
      const i = lanes[g].indexOf(e.transceiver);
      if (i < 0) continue;
      const el = laneElements(g)[i];
      el.srcObject = stream;
      el.play().catch((err) => { if (err.name === "NotAllowedError") blockedAutoplay(); });
      if (g === "main") mixInto(stream);
    }
    setUnderVolume();
  }

  // One analyser for everything heard in the main group (every lane of the floor at once).
  function mixInto(stream) {
    const ctx = context();
    if (!A.analyser) {
      A.analyser = ctx.createAnalyser();
      A.analyser.fftSize = 2048;
      const mute = ctx.createGain();  // Chromium only pulls a graph that reaches the output
      mute.gain.value = 0;
      A.analyser.connect(mute).connect(ctx.destination);
    }
    ctx.createMediaStreamSource(stream).connect(A.analyser);
  }

  function setUnder(value) {
    const was = A.under > 0;
    A.under = value;
    setUnderVolume();
    if (A.pc && was !== value > 0) rpc("rtc.under", { on: value > 0 }).catch(HC.explain);
  }

  // What the server routes to this person (mirror of audio.Routes.hearing).
  function hearing(hc) {
    const ch = hc.state.channels;
    const me = hc.you.pid;
    if (!ch || !ch.channels) return { main: "floor" };
    const carries = (c) => {
      if (c === "floor" || c === "original" || !c) return "floor";
      const channel = ch.channels[c];
      if (channel && channel.live) return c;
      return channel && ch.fallback === "silence" ? null : "floor";
    };
    const booth = (ch.interpreters || {})[me];
    if (hc.you.role === "interpreter" && booth) {
      const wanted = booth.input === booth.booth ? "floor" : booth.input;
      return { main: carries(wanted) };
    }
    return { main: carries((ch.choice || {})[me]) };
  }

  // --- the microphone ---------------------------------------------------------------------

  function micTarget(hc) {
    if (hc.you.role === "interpreter") {
      const mine = ((hc.state.channels || {}).interpreters || {})[hc.you.pid];
      return (mine && mine.booth) || hc.you.booth || null;
    }
    return "floor";
  }

  function mayPublish(hc) {
    const role = hc.you.role;
    if (role === "moderator") return true;
    if (role === "interpreter") return !!micTarget(hc);
    return hc.state.core.speakers.includes(hc.you.pid);
  }

  function micConstraints(hc) {
    // Interpreters wear headsets (ISO 20109): keep their voice unprocessed. Speakers in a
    // room get the browser's echo cancellation, noise suppression and gain control.
    const raw = hc.you.role === "interpreter";
    return { audio: { echoCancellation: !raw, noiseSuppression: !raw, autoGainControl: !raw } };
  }

  async function startMic(hc) {
    A.wantMic = true;
    stopMic(true);
    const target = micTarget(hc);
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(micConstraints(hc));
    } catch (err) {
      A.wantMic = false;
      A.micError = err && err.name === "NotAllowedError" ? "denied" : "unavailable";
      HC.explain({ code: "mic_denied", message: "microphone refused" });
      HC.render();
      return;
    }
    A.micError = null;
    const config = await iceConfig();
    if (!A.wantMic || A.mic) { for (const t of stream.getTracks()) t.stop(); return; }
    const pc = new RTCPeerConnection(config);
    if (HC.reach) HC.reach.track(pc);  // candidate errors from the start
    const mic = { pc, stream, target, onAir: false };
    A.mic = mic;
    A.micAnalyser = analyse(stream);
    pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly", streams: [stream] });
    pc.onconnectionstatechange = () => HC.render();
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    try {
      const reply = await rpc("rtc.offer", { purpose: "publish", target,
                                             sdp: pc.localDescription.sdp });
      if (A.mic !== mic) return;
      mic.onAir = reply.on_air;
      await pc.setRemoteDescription({ type: "answer", sdp: reply.sdp });
      watch(pc, "mic", () => { if (A.wantMic && mayPublish(HC)) startMic(HC); });
    } catch (err) {
      if (A.mic === mic) stopMic(false);
      HC.explain(err);
    }
    HC.render();
  }

  function stopMic(keepWanted) {
    if (!keepWanted) A.wantMic = false;
    if (A.mic) {
      A.mic.pc.close();
      for (const t of A.mic.stream.getTracks()) t.stop();
      A.mic = null;
    }
    A.micAnalyser = null;
    HC.render();
  }

  // --- meters ---------------------------------------------------------------------------

  // dBFS of what an analyser hears now (−100 when silent).
  function dbOf(analyser) {
    if (!analyser) return -100;
    const buf = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const v of buf) sum += v * v;
    const rms = Math.sqrt(sum / buf.length);
    return rms > 0 ? Math.max(-100, 20 * Math.log10(rms)) : -100;
  }

  const meterValue = (db) => Math.max(0, Math.min(100, (db + 60) * (100 / 60)));

  function tickMeters() {
    if (A.els.meter) A.els.meter.value = meterValue(dbOf(A.analyser));
    if (A.els.micMeter) A.els.micMeter.value = meterValue(dbOf(A.micAnalyser));
  }

  // --- recordings (chair) -----------------------------------------------------------------

  async function loadRecordings() {
    const r = await fetch("/api/recordings", { headers: { Authorization: `Bearer ${HC.token}` } });
    A.recordings = r.ok ? (await r.json()).recordings : [];
    HC.render();
  }

  async function download(id, name) {
    const r = await fetch(`/api/recordings/${HC.room}/${id}/${name}`,
                          { headers: { Authorization: `Bearer ${HC.token}` } });
    if (!r.ok) { HC.explain(await r.json()); return; }
    const url = URL.createObjectURL(await r.blob());
    const a = h("a", { href: url, download: `${HC.room}-${id}-${name}` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  // --- page -----------------------------------------------------------------------------

  function init(hc) {
    const section = h("section", { id: "audio-section", "aria-labelledby": "audio-h" },
      h("h2", { id: "audio-h" }, h("span", { "data-t": "audio" }, hc.t("audio")),
        h("span", { id: "rec-badge", class: "rec-badge", hidden: true, role: "status" })),
      h("div", { class: "actions" },
        h("button", { id: "listen-button", onclick: () => {
          // "Stop listening" holds a new connection for the next click ("captions only" not)
          if (A.wantListen) { stopListening(false); warm(); } else startListening();
        } })),
      h("p", { id: "hearing", class: "muted", "aria-live": "polite" }),
      h("label", { class: "meter-row" },
        h("span", { "data-t": "audio.level" }, hc.t("audio.level")),
        h("meter", { id: "audio-meter", min: 0, max: 100, value: 0 })),
      h("label", { class: "meter-row", id: "under-row" },
        h("span", { "data-t": "audio.under" }, hc.t("audio.under")),
        h("input", { id: "under-slider", type: "range", min: 0, max: 100, step: 5, value: 0,
                     oninput: (e) => setUnder(Number(e.target.value)) }),
        h("output", { id: "under-value" }, "0 %")),
      h("div", { id: "mic-box", hidden: true },
        h("div", { class: "actions" },
          h("button", { id: "mic-button", "aria-pressed": "false",
                        onclick: () => (A.wantMic ? stopMic(false) : startMic(hc)) }),
          h("span", { id: "mic-state", class: "mic-state", role: "status" })),
        h("label", { class: "meter-row" }, h("span", { id: "mic-into" }),
          h("meter", { id: "mic-meter", min: 0, max: 100, value: 0 }))),
      h("div", { id: "chair-box", hidden: true },
        h("h3", { "data-t": "mic.board" }, hc.t("mic.board")),
        h("ul", { id: "mic-board", class: "plain" }),
        h("div", { class: "actions" },
          h("button", { id: "rec-button", onclick: () => {
            const on = !!hc.state.audio.recording;
            HC.command(on ? "recording.stop" : "recording.start")
              .then(loadRecordings, HC.explain);
          } }),
          h("button", { class: "ghost", "data-t": "rec.list", onclick: loadRecordings },
            hc.t("rec.list"))),
        h("ul", { id: "rec-list", class: "plain" })),
      h("audio", { id: "audio-main", autoplay: true }),
      h("audio", { id: "audio-under", autoplay: true }));
    document.getElementById("features").append(section);
    A.els = {
      main: section.querySelector("#audio-main"), under: section.querySelector("#audio-under"),
      meter: section.querySelector("#audio-meter"), micMeter: section.querySelector("#mic-meter"),
    };
    placeForListeners(hc, section);
    setInterval(tickMeters, 100);
    setInterval(() => {  // forget microphones that stopped sending levels
      const now = Date.now();
      for (const [pid, l] of Object.entries(A.levels)) if (now - l.at > 2000) delete A.levels[pid];
    }, 1000);
  }

  // Everyone but interpreters (their console has its own): one "Listen in …" control beside
  // the channel picker (issue 11: two controls had to be pressed before any sound), and the
  // microphone beside "You have the floor". The Audio card keeps only the chair's board.
  function placeForListeners(hc, section) {
    if (hc.you.role === "interpreter") return;
    const picker = document.getElementById("channel-section");
    if (picker) {
      const box = h("div", { id: "listen-box", class: "listen-box" },
        section.querySelector("#listen-button").parentNode, section.querySelector("#hearing"),
        section.querySelector("#audio-meter").parentNode, section.querySelector("#under-row"));
      picker.querySelector("label").after(box);
      picker.querySelector("h2").after(section.querySelector("#rec-badge"));
    }
    const speak = document.getElementById("you-speak");
    if (speak) speak.after(section.querySelector("#mic-box"));
    section.hidden = !hc.isChair();
  }
  A.start = () => startListening();
  A.stop = () => stopListening(false);

  function langLabel(hc, source) {
    return source === "floor" ? hc.t("audio.original") : hc.langName(source);
  }

  function render(hc) {
    const listenButton = document.getElementById("listen-button");
    if (!listenButton) return;
    const choice = ((hc.state.channels || {}).choice || {})[hc.you.pid] || "original";
    const floorLang = hc.langName((hc.state.channels || {}).floor || "en");
    listenButton.textContent = A.wantListen ? hc.t("audio.stop")
      : hc.you.role === "interpreter" ? hc.t("audio.listen")
      : choice === "original" ? hc.t("listen.original", { lang: floorLang })
      : hc.t("listen.in", { lang: hc.langName(choice) });
    listenButton.setAttribute("aria-pressed", A.wantListen ? "true" : "false");
    listenButton.hidden = Boolean(HC.reception) && !HC.reception.audio(); // captions only
    A.hearing = hearing(hc);
    const connecting = A.wantListen && (!A.pc || A.pc.connectionState !== "connected");
    const reach = HC.reach && A.wantListen ? HC.reach.note("listen") : "";
    document.getElementById("hearing").textContent = !A.wantListen ? "" : reach
      ? hc.t(reach) : connecting ? hc.t("audio.connecting")
      : hc.t("audio.hearing", { what: A.hearing.main ? langLabel(hc, A.hearing.main)
                                                    : hc.t("audio.silence") });
    const underRow = document.getElementById("under-row");
    underRow.hidden = hc.you.role === "interpreter" || !A.hearing.main
      || A.hearing.main === "floor";
    document.getElementById("under-value").textContent = `${A.under} %`;

    const micBox = document.getElementById("mic-box");
    const may = mayPublish(hc);
    micBox.hidden = !may && !A.mic;
    const micButton = document.getElementById("mic-button");
    micButton.textContent = hc.t(A.wantMic ? "mic.off" : "mic.on");
    micButton.setAttribute("aria-pressed", A.wantMic ? "true" : "false");
    const target = micTarget(hc);
    document.getElementById("mic-into").textContent =
      target ? hc.t("mic.into", { what: langLabel(hc, target) }) : "";
    const micState = document.getElementById("mic-state");
    let stateKey = "";
    if (A.mic) {
      const ch = hc.state.channels;
      const muted = hc.state.audio.muted.includes(hc.you.pid);
      const live = target === "floor" ? !muted
        : !!(ch && ch.channels && ch.channels[target] && ch.channels[target].live === hc.you.pid
             && !ch.channels[target].cough);
      stateKey = muted ? "mic.muted" : live ? "mic.onair" : "mic.standby";
    }
    micState.textContent = stateKey ? hc.t(stateKey) : "";
    micState.dataset.state = stateKey;

    const rec = hc.state.audio.recording;
    const badge = document.getElementById("rec-badge");
    badge.hidden = !rec;
    badge.textContent = rec ? `● ${hc.t("rec.on")}` : "";

    const chair = hc.isChair();
    document.getElementById("chair-box").hidden = !chair;
    if (!chair) return;
    document.getElementById("rec-button").textContent = hc.t(rec ? "rec.stop" : "rec.start");
    renderBoard(hc);
    const list = document.getElementById("rec-list");
    const recKey = JSON.stringify([hc.lang, A.recordings]);
    if (list.dataset.key === recKey) return; // its download buttons keep their focus
    list.dataset.key = recKey;
    if (A.recordings === null) list.replaceChildren();
    else if (!A.recordings.length) list.replaceChildren(h("li", { class: "muted" }, hc.t("rec.none")));
    else list.replaceChildren(...A.recordings.map((r) => h("li", {}, h("strong", {}, r.id), " ",
      ...r.files.map((f) => h("button", { class: "small ghost",
                                          onclick: () => download(r.id, f.name) },
        `${f.name} (${Math.round(f.bytes / 1024)} KiB)`)))));
  }

  // The chair's microphones. Level frames come five times a second per room: the rows are
  // rebuilt only when who publishes (or their mute, on-air state) changes; otherwise only the
  // meters' values move, so a focused button keeps its focus (issue 11, item 2).
  function renderBoard(hc) {
    const board = document.getElementById("mic-board");
    const muted = hc.state.audio.muted;
    const rows = Object.entries(A.levels).map(([pid, l]) => [pid, l.source, !!l.on_air,
      muted.includes(pid), hc.person(pid)?.name || pid]);
    const key = JSON.stringify([hc.lang, rows]);
    if (board.dataset.key !== key) {
      board.dataset.key = key;
      board.replaceChildren(...rows.map(([pid, source, onAir, isMuted, name]) =>
        h("li", { dataset: { pid }, class: onAir ? "on-air" : "" },
          h("span", { class: "name" }, name), " ",
          h("small", {}, langLabel(hc, source)), " ",
          h("meter", { min: 0, max: 100, value: meterValue(A.levels[pid].db),
                       "aria-label": hc.t("mic.level_of", { name }) }),
          source === "floor" && pid !== hc.you.pid
            ? h("button", { class: "small", onclick: () => HC.command(
              isMuted ? "audio.unmute" : "audio.mute", { pid }).catch(HC.explain) },
            hc.t(isMuted ? "audio.unmute" : "audio.mute")) : null)));
    }
    for (const li of board.children) {
      const l = A.levels[li.dataset.pid];
      if (l) li.querySelector("meter").value = meterValue(l.db);
    }
  }

  let welcomed = false;

  function onMessage(hc, msg) {
    if (msg.type === "ephemeral" && msg.kind === "levels") {
      const now = Date.now();
      for (const [pid, l] of Object.entries(msg.levels)) A.levels[pid] = { ...l, at: now };
      A.levelFrames += 1; // tests wait on it: meters that moved
    } else if (msg.type === "rtc.closed") {
      if (msg.pc === "publish") {
        // The node gave up on the microphone's connection during an outage (its ICE consent
        // expired before the page's own patience ran out): an interpreter on air must not
        // lose the microphone for that, so make a new one, as reach.js would have.
        if (msg.code === "ice_failed" && A.wantMic && mayPublish(hc)) startMic(hc);
        else { stopMic(false); if (msg.code !== "not_granted") HC.explain(msg); }
      }
      if (msg.pc === "listen") {
        // Another window of this person took over the audio: stop here, do not fight back.
        if (msg.code === "replaced") { stopListening(false); HC.explain(msg); }
        else if (!A.wantListen) { if (A.pc) { A.pc.close(); A.pc = null; } }  // a held one
        else if (msg.code !== "no_path") startListening();  // no_path: reach.js said why
      }
    } else if (msg.type === "rtc.ice") {
      keepIce(msg);  // fresh TURN credentials before the last ones expire
    } else if (msg.type === "welcome") {
      // A new socket is a new session on the server: its peer connections are gone, and the
      // credentials are renewed for the new one only once it asks.
      A.ice = null;
      if (welcomed) {
        if (A.wantListen) startListening();
        else if (A.pc) { A.pc.close(); A.pc = null; }
        if (A.wantMic && mayPublish(hc)) startMic(hc); else if (A.mic) stopMic(false);
      }
      welcomed = true;
      warm();
    }
  }

  // --- for the interpreter console (static/booth.js) ------------------------------------
  // The console never asks for the air without a publishing microphone: it awaits
  // publishMic() first, which starts the microphone when needed and resolves to whether it
  // publishes (reasons in A.micError: "denied", "unavailable", "failed").

  function publishing() {
    const mic = A.mic;
    if (!mic || mic.pc.connectionState !== "connected") return false;
    const track = mic.stream.getAudioTracks()[0];
    return Boolean(track && track.readyState === "live");
  }

  async function publishMic(hc, within = 15000) {
    if (publishing()) return true;
    if (!A.wantMic || !A.mic) await startMic(hc);
    const until = Date.now() + within;
    while (A.mic && !publishing() && Date.now() < until
           && !["failed", "closed"].includes(A.mic.pc.connectionState)) {
      await new Promise((r) => { setTimeout(r, 50); });
    }
    if (publishing()) return true;
    if (!A.micError) A.micError = "failed";
    return false;
  }

  function blockedAutoplay() {
    if (A.blocked) return;
    A.blocked = true;
    HC.render();
    const resume = () => {
      A.blocked = false;
      if (A.ctx) A.ctx.resume();
      for (const el of laneElements()) if (el.srcObject) el.play().catch(() => {});
      HC.render();
    };
    window.addEventListener("pointerdown", resume, { once: true, capture: true });
    window.addEventListener("keydown", resume, { once: true, capture: true });
  }

  Object.assign(A, {
    publishing, publishMic, stopMic: () => stopMic(false), setUnder,
    listen: () => (A.wantListen ? undefined : startListening()),
    micDb: () => dbOf(A.micAnalyser), context, blocked: false, micError: null,
  });

  HC.register({ name: "audio", appliers, init, render, onMessage });
})();
