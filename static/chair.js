// The chair's console (issue 11). The live part fits one screen: the floor and the speakers'
// queue with the chair's microphone, the votes, the booths, the microphones and the recording,
// under a bar that always shows the members present and the quorum. The preparation (poll
// builder, attendance and exports, invites, people, the agenda, the full booth board) is a
// second view. This module only arranges what the feature modules built — their elements keep
// their ids and listeners — so it registers last and moves them in its init. Nothing here is
// rebuilt on a level frame: the bar's numbers change in place.
"use strict";

(() => {
  const { h } = HC;
  const $ = (id) => document.getElementById(id);
  const TABS = [["tab-live", "chair-live", "chair.tab_live"], ["tab-prep", "chair-prep", "chair.tab_prep"]];

  // --- members present and the quorum ---------------------------------------------------------

  // The rule of the vote that decides: the open roll vote's, else the next prepared one's.
  function quorumRule(s) {
    const polls = s.polls.order.map((id) => s.polls.polls[id])
      .filter((p) => p && p.electorate === "roll" && p.quorum);
    const pick = polls.find((p) => p.state === "open") || polls.find((p) => p.state === "draft");
    return pick ? pick.quorum : null;
  }

  const fraction = (f) => { const [a, b] = String(f).split("/"); return b ? Number(a) / Number(b) : Number(a); };

  // Members present: member organisations with a participant online — the chair, panelists,
  // interpreters and observers do not make a member present (issue 11, item 7).
  function presence(s) {
    const roll = s.polls.roll || {};
    const orgs = new Set();
    for (const p of Object.values(s.core.people)) {
      if (p.conns.length && p.role === "participant" && roll[p.org]) orgs.add(p.org);
    }
    const q = quorumRule(s);
    const weighted = !!(q && q.weighted);
    const amount = (ids) => (weighted ? ids.reduce((a, m) => a + roll[m].w, 0) / 100 : ids.length);
    const have = amount([...orgs]);
    const total = amount(Object.keys(roll));
    if (!q) return { have, total, need: null, met: null };
    const exact = fraction(q.fraction) * (q.of === "roll" ? total : have);
    const need = weighted ? Math.round(exact * 100) / 100 : Math.ceil(exact - 1e-9);
    return { have, total, need, met: q.of === "roll" ? have >= exact : null };
  }

  function renderBar(hc) {
    const p = presence(hc.state);
    const num = (n) => Number(n).toLocaleString(hc.lang, { maximumFractionDigits: 2 });
    const set = (id, text) => { const el = $(id); if (el.textContent !== text) el.textContent = text; };
    set("presence-line", hc.t("chair.present", { n: num(p.have), of: num(p.total) }));
    const quorum = $("quorum-line");
    quorum.dataset.met = p.met === null ? "" : String(p.met);
    set("quorum-line", p.need === null ? hc.t("chair.quorum_none")
      : hc.t("chair.quorum_need", { need: num(p.need) })
        + (p.met === null ? "" : ` — ${hc.t(p.met ? "poll.met" : "poll.missed")}`));
    const rec = hc.state.audio.recording;
    const recEl = $("chair-rec");
    recEl.dataset.on = rec ? "true" : "false";
    set("chair-rec", rec ? `● ${hc.t("rec.on")}` : hc.t("rec.off"));
    const current = hc.state.core.agenda[hc.state.core.current];
    set("agenda-now", current ? hc.t("chair.agenda_now", { title: (current.titles || {})[hc.lang] || current.title })
      : hc.t("chair.agenda_none"));
  }

  // --- tabs (WAI-ARIA tabs: arrows move between them, the panel follows) --------------------

  function select(tabId, focus) {
    for (const [id, panel] of TABS) {
      const on = id === tabId;
      const tab = $(id);
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      $(panel).hidden = !on;
      if (on && focus) tab.focus();
    }
  }

  function tabKeys(e) {
    const i = TABS.findIndex(([id]) => id === e.target.id);
    const n = TABS.length;
    const to = { ArrowRight: (i + 1) % n, ArrowLeft: (i + n - 1) % n, Home: 0, End: n - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    select(TABS[to][0], true);
  }

  // --- layout ----------------------------------------------------------------------------------

  const col = (id, ...children) => h("div", { id, class: "col" }, ...children.filter(Boolean));

  function init(hc) {
    if (!hc.isChair()) return;
    document.body.classList.add("chair-console");
    const main = document.querySelector("main");
    main.classList.remove("grid");
    main.classList.add("chair");
    const tablist = h("div", { role: "tablist", class: "tabs", "aria-label": hc.t("chair.views"),
      "data-t-label": "chair.views" },
    ...TABS.map(([id, panel, key]) => h("button", { role: "tab", id, "aria-controls": panel,
      type: "button", "data-t": key, onclick: () => select(id, false), onkeydown: tabKeys }, hc.t(key))));
    const bar = h("div", { id: "chair-bar", class: "chair-bar", role: "status" },
      h("strong", { id: "presence-line" }), h("span", { id: "quorum-line" }),
      h("span", { id: "chair-rec", class: "rec-state" }));
    const votes = h("section", { id: "chair-votes", "aria-labelledby": "chair-votes-h" },
      h("h2", { id: "chair-votes-h", "data-t": "polls.title" }, hc.t("polls.title")),
      $("polls-none"), $("polls-list"));
    // The chair's microphone sits under the floor, within reach of the queue.
    const floor = $("floor-section");
    const micBox = $("mic-box");
    if (micBox) floor.querySelector("h3").before(micBox);
    floor.querySelector(".actions").after($("notice-form"));
    const agendaNow = h("section", { id: "chair-agenda", "aria-labelledby": "chair-agenda-h" },
      h("h2", { id: "chair-agenda-h", "data-t": "agenda" }, hc.t("agenda")),
      h("p", { id: "agenda-now" }), $("agenda-next"));
    // The stage (static/stage.js: the picture, camera, share and the chair's stage controls)
    // stays in the live view, last in the room column: the booths, microphones and recording
    // above it stay in the first screen.
    const stage = h("div", { id: "chair-stage" }, $("stage-section"));
    const live = h("div", { id: "chair-live", role: "tabpanel", "aria-labelledby": "tab-live" },
      col("chair-col-floor", floor),
      col("chair-col-votes", votes),
      col("chair-col-room", $("booth-strip"), $("audio-section"), $("channel-section"), agendaNow, stage));
    // Attendance first in the second view: the figure the minutes need, above the builder.
    const attendance = document.querySelector("#polls-section .attendance");
    if (attendance) $("polls-h").after(attendance);
    const prep = h("div", { id: "chair-prep", role: "tabpanel", "aria-labelledby": "tab-prep", hidden: true },
      $("polls-section"), $("booth-board"), $("agenda-section"), $("people-section"),
      $("invites-section"));
    // What is left of the feature sections, and any a later module adds there, goes with
    // the preparation (#features keeps display: contents).
    const features = $("features");
    main.replaceChildren(bar, tablist, live, prep);
    if (features) prep.append(features);
    select("tab-live", false);
  }

  HC.register({
    name: "chair", init,
    render(hc) { if (hc.isChair() && $("chair-bar")) renderBar(hc); },
  });
})();
