// Reach: what the page does when the audio path is bad (issue 12; docs/deploy.md).
//
// - Clear failure: a peer connection that is not connected 10 s after the answer is a
//   failure the page names (UDP blocked, no TURN configured, the relay refused us) with a
//   "Retry" button. Chromium itself reports `failed` only after 15 s, and a connection with
//   no candidate at all stays `new` for good; icecandidateerror codes tell the cause.
// - Network changes: `disconnected` is transient (a short outage recovers by itself, notes:
//   5 s and 12 s outages resumed within 0.25 s of the network's return), so the page says
//   "Reconnecting audio…" and waits; after REBUILD_AFTER, on `failed`, or when the browser
//   comes back online, it makes a new peer connection on the same signalling state (aiortc
//   cannot ICE-restart as the answerer). The channel and the air state are room state: they
//   survive untouched.
// - Low bandwidth: "captions only" proposed when the audio conceals too much.
// - The chair's board: listeners without audio, summed over the nodes' `reach` messages.
// audio.js calls HC.reach.watch(pc, "listen" | "mic", restart) after each answer.
"use strict";

(() => {
  const { h } = HC;
  const FAIL_AFTER = 10000;
  const REBUILD_AFTER = 8000;
  const NODE_SILENT = 20000;
  const WEAK = 0.15;  // concealed share of samples over a window that proposes captions only

  const R = {
    watched: { listen: null, mic: null },
    nodes: {},      // chair: node -> {listening, no_audio, at}
    weak: false,    // proposal shown
    declined: false,
    lastStats: null,
  };
  HC.reach = R;

  const current = (w) => R.watched[w.which] === w;

  // Candidate errors come during gathering, before the answer: collect them from the start.
  R.track = (pc) => {
    pc.hcErrors = [];
    pc.addEventListener("icecandidateerror", (e) => pc.hcErrors.push(e.errorCode));
  };

  R.watch = (pc, which, restart) => {
    const before = R.watched[which];
    if (before) clearTimers(before);
    const w = { pc, which, restart, state: before && before.state !== "ok" && before.ever
      ? "reconnecting" : "connecting", ever: before ? before.ever : false, cause: "",
      timer: 0, lost: 0 };
    R.watched[which] = w;
    if (!pc.hcErrors) R.track(pc);
    pc.addEventListener("connectionstatechange", () => changed(w));
    w.timer = setTimeout(() => {
      if (current(w) && pc.connectionState !== "connected") fail(w);
    }, FAIL_AFTER);
    changed(w);
  };

  // The i18n key of what to say about `which` now, or "" when all is well.
  R.note = (which) => {
    const w = R.watched[which];
    if (!w) return "";
    if (w.state === "failed") return "reach.none";  // the box below says why
    if (w.state === "reconnecting") return "reach.reconnecting";
    return "";
  };

  function clearTimers(w) {
    clearTimeout(w.timer);
    clearTimeout(w.lost);
  }

  function changed(w) {
    if (!current(w)) return;
    const state = w.pc.connectionState;
    if (state === "connected") {
      clearTimers(w);
      w.state = "ok";
      w.ever = true;
    } else if (state === "disconnected" && w.state === "ok") {
      w.state = "reconnecting";
      w.lost = setTimeout(() => rebuild(w), REBUILD_AFTER);
    } else if (state === "failed") {
      if (w.ever && w.state !== "failed") rebuild(w); else fail(w);
    }
    HC.render();
  }

  function rebuild(w) {
    if (!current(w) || w.pc.connectionState === "connected") return;
    clearTimers(w);
    w.state = "reconnecting";
    HC.render();
    w.restart();
  }

  function fail(w) {
    clearTimers(w);
    w.state = "failed";
    w.cause = cause(w);
    HC.render();
  }

  // The likely cause, from the configuration and the candidate errors (RFC 5389 codes:
  // 401 the relay refused the credentials; 701 the relay could not be reached).
  function cause(w) {
    const servers = w.pc.getConfiguration().iceServers || [];
    const turn = servers.some((s) => [].concat(s.urls).some((u) => /^turns?:/.test(u)));
    if (!turn) return "reach.cause.no_turn";
    if (w.pc.hcErrors.includes(401)) return "reach.cause.turn_auth";
    return "reach.cause.blocked";
  }

  function retry() {
    for (const w of Object.values(R.watched)) if (w && w.state === "failed") {
      w.state = "connecting";
      w.restart();
    }
    HC.render();
  }

  // Back online (a new network, an address change): every watched connection that is not
  // connected gets a new one at once.
  window.addEventListener("online", () => {
    for (const w of Object.values(R.watched)) if (w && w.pc.connectionState !== "connected") {
      rebuild(w);
    }
  });
  window.addEventListener("offline", () => {
    for (const w of Object.values(R.watched)) if (w && w.state === "ok") {
      w.state = "reconnecting";
    }
    HC.render();
  });

  // --- low bandwidth: concealment over the last window ------------------------------------

  async function sample() {
    const A = HC.audio;
    const w = R.watched.listen;
    if (!A || !A.pc || !A.wantListen || !w || w.state !== "ok" || R.weak || R.declined) return;
    let concealed = 0;
    let total = 0;
    (await A.pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "audio") {
        concealed += s.concealedSamples || 0;
        total += s.totalSamplesReceived || 0;
      }
    });
    const last = R.lastStats;
    R.lastStats = { concealed, total };
    if (!last || total - last.total < 48000) return;
    const share = (concealed - last.concealed) / (total - last.total);
    const slow = navigator.connection && navigator.connection.downlink > 0
      && navigator.connection.downlink < 0.05;
    if (share > WEAK || slow) { R.weak = true; HC.render(); }
  }

  function captionsOnly() {
    R.weak = false;
    R.declined = true;
    if (HC.reception) HC.reception.set("captions"); // remembered (static/lowband.js)
    if (HC.audio && HC.audio.wantListen) HC.audio.stopListening();
    HC.render();
  }

  // --- page -----------------------------------------------------------------------------

  function init(hc) {
    const section = document.getElementById("audio-section");
    if (!section) return;
    const box = h("div", { id: "reach-box", class: "reach-box", role: "alert", hidden: true },
      h("p", { id: "reach-what" }),
      h("p", { id: "reach-cause", class: "muted" }),
      h("div", { class: "actions" },
        h("button", { id: "reach-retry", "data-t": "reach.retry", onclick: retry },
          hc.t("reach.retry"))));
    const weak = h("div", { id: "reach-weak", class: "reach-box", role: "status", hidden: true },
      h("p", { "data-t": "reach.weak" }, hc.t("reach.weak")),
      h("div", { class: "actions" },
        h("button", { id: "reach-captions", "data-t": "reach.captions", onclick: captionsOnly },
          hc.t("reach.captions")),
        h("button", { class: "ghost", "data-t": "reach.keep", onclick: () => {
          R.weak = false; R.declined = true; HC.render();
        } }, hc.t("reach.keep"))));
    // Beside the listening line, wherever audio.js placed it (the channel card for most).
    const hearing = document.getElementById("hearing");
    (hearing || section.lastChild).after(box, weak);
    const board = section.querySelector("#chair-box");
    if (board) board.prepend(h("p", { id: "reach-board", role: "status" }));
    setInterval(() => { sample().catch(() => {}); }, 5000);
  }

  function render(hc) {
    const box = document.getElementById("reach-box");
    if (!box) return;
    const failed = ["listen", "mic"].map((k) => R.watched[k]).find(
      (w) => w && w.state === "failed" && (w.which === "listen" ? HC.audio.wantListen
                                                                : HC.audio.wantMic));
    box.hidden = !failed;
    if (failed) {
      document.getElementById("reach-what").textContent = hc.t(`reach.failed.${failed.which}`);
      document.getElementById("reach-cause").textContent = hc.t(failed.cause);
    }
    document.getElementById("reach-weak").hidden = !R.weak;
    const board = document.getElementById("reach-board");
    if (board) {
      const now = Date.now();
      let listening = 0;
      let none = 0;
      for (const [node, f] of Object.entries(R.nodes)) {
        if (now - f.at > NODE_SILENT) { delete R.nodes[node]; continue; }
        listening += f.listening;
        none += f.no_audio;
      }
      board.textContent = hc.plural("reach.board", none, { total: listening });
      board.dataset.noAudio = String(none);
    }
  }

  function onMessage(hc, msg) {
    if (msg.type === "ephemeral" && msg.kind === "reach") {
      R.nodes[msg.node] = { listening: msg.listening, no_audio: msg.no_audio, at: Date.now() };
      HC.render();
    }
  }

  HC.register({ name: "reach", init, render, onMessage });
})();
