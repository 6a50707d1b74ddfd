// What this page receives (issue 12, low bandwidth): everything, "audio only" (no video: the
// stage shows names and asks the node for no tile, so the node sends no video) or "captions
// only" (no audio either; the captions stay). The choice is this device's (localStorage
// "hc.reception") and outlives a reload. Interpreters always receive everything: their work
// is the audio and the speaker's picture.
//
// The page proposes audio only when the video it receives does not get through, measured
// every EVERY ms from its viewing connection's getStats over the last window, in BAD windows
// in a row (one stall of a busy machine is not a slow link):
//   - inbound-rtp video packetsLost / (packetsLost + packetsReceived) above LOSS (what the
//     node's retransmissions did not repair: a recovered packet counts as received);
//   - totalFreezesDuration growing by more than FREEZE of the window (the picture stands),
//     with some loss too (a fifth of LOSS): a picture that stands while nothing is lost is
//     the publisher's or this computer's trouble (seen on a loaded test machine: freezes of
//     a third of the time with no packet lost), which audio only would not cure.
// Not used: candidate-pair availableIncomingBitrate. Chromium 156 reports it, but as its
// estimate of what arrives (about 20 kbit/s for a still camera that sends 20 kbit/s), not
// of what the link could carry; CDP's network emulation does not shape WebRTC's UDP either,
// so loss and freezes are what a slow link shows here (tests/test_reach_lowband.py drops
// the node's video towards the page with nftables).
// The proposal is a banner with the two switches and "keep video"; dismissed, it stays away
// for this visit. static/reach.js proposes captions only when the audio itself conceals too
// much, through HC.reception.set as well.
"use strict";

(() => {
  const { h } = HC;
  const MODES = ["full", "audio", "captions"];
  const KEY = "hc.reception";
  const EVERY = 4000;
  const LOSS = 0.05;
  const FREEZE = 0.2;
  const MIN_PACKETS = 40; // fewer video packets in a window: nothing to judge
  const BAD = 2;

  const stored = () => { const m = localStorage.getItem(KEY); return MODES.includes(m) ? m : "full"; };
  const L = { mode: stored(), proposed: false, dismissed: false, last: null, signals: null, bad: 0 };
  HC.reception = L;

  const applies = () => Boolean(HC.you) && HC.you.role !== "interpreter";
  L.video = () => !applies() || L.mode === "full";
  L.audio = () => !applies() || L.mode !== "captions";
  L.set = (mode) => {
    if (!MODES.includes(mode)) return;
    const was = L.mode;
    L.mode = mode;
    L.proposed = false;
    L.last = null;
    L.bad = 0;
    localStorage.setItem(KEY, mode);
    if (!L.audio() && HC.audio && HC.audio.wantListen) HC.audio.stopListening();
    // Leaving captions only is asking for the audio again: listen (a click, so it may play).
    if (was === "captions" && L.audio() && HC.audio && !HC.audio.wantListen) HC.audio.start();
    HC.render();
  };

  // --- the measure ------------------------------------------------------------------------

  async function sample() {
    const view = HC.video && HC.video.state.view;
    if (!applies() || L.mode !== "full" || L.proposed || L.dismissed || !view
        || view.pc.connectionState !== "connected") { L.last = null; L.bad = 0; return; }
    const now = { at: performance.now(), lost: 0, got: 0, frozen: 0, bytes: 0 };
    (await view.pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        now.lost += s.packetsLost || 0; now.got += s.packetsReceived || 0;
        now.frozen += s.totalFreezesDuration || 0; now.bytes += s.bytesReceived || 0;
      }
    });
    const last = L.last;
    L.last = now;
    if (!last) return;
    const seconds = (now.at - last.at) / 1000;
    const lost = now.lost - last.lost;
    const packets = lost + now.got - last.got;
    if (packets < MIN_PACKETS || seconds <= 0) return;
    L.signals = { loss: lost / packets, frozen: (now.frozen - last.frozen) / seconds,
                  rate: (8 * (now.bytes - last.bytes)) / seconds };
    const { loss, frozen } = L.signals;
    L.bad = loss > LOSS || (frozen > FREEZE && loss > LOSS / 5) ? L.bad + 1 : 0;
    if (L.bad >= BAD) {
      L.proposed = true;
      HC.render();
    }
  }

  // --- page -------------------------------------------------------------------------------

  function choose(mode) {
    L.set(mode);
    const radio = document.querySelector(`#reception input[value="${mode}"]`);
    if (radio) radio.focus();  // after a switch from the banner, keep the keyboard nearby
  }

  function init(hc) {
    const section = document.getElementById("stage-section");
    if (!section || !applies()) return;
    const radios = MODES.map((mode) => h("label", { class: "reception-mode" },
      h("input", { type: "radio", name: "reception", value: mode, checked: L.mode === mode,
                   onchange: (e) => { if (e.target.checked) L.set(mode); } }),
      " ", h("span", { "data-t": `reception.${mode}` }, hc.t(`reception.${mode}`))));
    const box = h("fieldset", { id: "reception", class: "reception" },
      h("legend", { "data-t": "reception" }, hc.t("reception")), ...radios);
    const note = h("p", { id: "reception-note", class: "muted", role: "status", "aria-live": "polite" });
    const offer = h("div", { id: "lowband-offer", class: "reach-box", role: "status", hidden: true },
      h("p", { "data-t": "reception.weak" }, hc.t("reception.weak")),
      h("div", { class: "actions" },
        h("button", { id: "lowband-audio", "data-t": "reception.audio",
                      onclick: () => choose("audio") }, hc.t("reception.audio")),
        h("button", { id: "lowband-captions", "data-t": "reception.captions",
                      onclick: () => choose("captions") }, hc.t("reception.captions")),
        h("button", { id: "lowband-keep", class: "ghost", "data-t": "reception.keep",
                      onclick: () => { L.proposed = false; L.dismissed = true; HC.render(); } },
          hc.t("reception.keep"))));
    section.querySelector("h2").after(offer);
    section.append(box, note);
    setInterval(() => { sample().catch(() => {}); }, EVERY);
  }

  function render(hc) {
    const box = document.getElementById("reception");
    if (!box) return;
    for (const input of box.querySelectorAll("input")) input.checked = input.value === L.mode;
    document.getElementById("lowband-offer").hidden = !L.proposed || L.mode !== "full";
    document.getElementById("reception-note").textContent =
      L.mode === "full" ? "" : hc.t(`reception.note.${L.mode}`);
  }

  HC.register({ name: "lowband", init, render });
})();
