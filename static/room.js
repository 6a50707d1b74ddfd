// The room itself: header (who you are, who is speaking), agenda, people, raised hands, the
// floor, the chair's notice.
"use strict";

(() => {
  const { h } = HC;

  // Mirrors of server/rooms.py apply functions.
  const appliers = {
    // The event carries the whole record as the state holds it (conns included).
    "person.joined": (s, ev) => { s.core.people[ev.person.pid] = structuredClone(ev.person); },
    "person.left": (s, ev) => {
      const p = s.core.people[ev.pid];
      if (p) p.conns = p.conns.filter((c) => c !== ev.conn);
    },
    "hand.raised": (s, ev) => {
      if (!s.core.hands.includes(ev.pid)) { s.core.hands.push(ev.pid); s.core.raised[ev.pid] = ev.ts; }
    },
    "hand.lowered": (s, ev) => {
      s.core.hands = s.core.hands.filter((p) => p !== ev.pid);
      delete s.core.raised[ev.pid];
    },
    "floor.granted": (s, ev) => {
      s.core.hands = s.core.hands.filter((p) => p !== ev.pid);
      delete s.core.raised[ev.pid];
      if (!s.core.speakers.includes(ev.pid)) {
        s.core.speakers.push(ev.pid);
        s.core.floor_since[ev.pid] = ev.ts;
      }
    },
    "floor.revoked": (s, ev) => {
      s.core.speakers = s.core.speakers.filter((p) => p !== ev.pid);
      delete s.core.floor_since[ev.pid];
    },
    "agenda.current": (s, ev) => { s.core.current = ev.index; },
    "notice": (s, ev) => { s.core.notice = ev.text ? { text: ev.text, ts: ev.ts } : null; },
  };

  const run = (name, args) => HC.command(name, args).catch((e) => HC.explain(e));

  function init(hc) {
    const select = document.getElementById("ui-lang");
    select.value = hc.lang;
    select.addEventListener("change", () => hc.setLang(select.value));
    document.body.dataset.role = hc.you.role;
    const noticeForm = document.getElementById("notice-form");
    noticeForm.hidden = !hc.isChair();
    noticeForm.addEventListener("submit", (e) => {
      e.preventDefault();
      const input = noticeForm.querySelector("input");
      run("notice.post", { text: input.value }).then(() => { input.value = ""; });
    });
    document.getElementById("agenda-next").hidden = !hc.isChair();
    document.getElementById("agenda-next").addEventListener("click", () => run("agenda.next"));
    document.getElementById("hand-button").addEventListener("click", () => {
      const mine = hc.state.core.hands.includes(hc.you.pid);
      run(mine ? "hand.lower" : "hand.raise");
    });
    document.getElementById("floor-next").addEventListener("click", () => run("floor.grant", {}));
    document.getElementById("floor-yield").addEventListener("click", () => run("floor.revoke", {}));
    // The chair's queue shows waiting times that tick every second: not a live region.
    if (hc.isChair()) document.getElementById("hands-list").setAttribute("aria-live", "off");
    setInterval(tickClocks, 1000);
    hc.setLang(hc.lang, false);
  }

  const fmt = (iso, opts) => HC.time(iso, opts);

  // The room's title in the page's language (the assembly's name is a name: never translated).
  function renderTitle(hc) {
    const title = (hc.assembly.titles || {})[hc.lang] || hc.assembly.title;
    const el = document.getElementById("room-title");
    if (el.textContent !== `${hc.assembly.name} — ${title}`) {
      el.textContent = `${hc.assembly.name} — ${title}`;
      document.title = `${title} · ${hc.assembly.name}`;
    }
  }

  function renderAgenda(hc) {
    const list = document.getElementById("agenda-list");
    const { agenda, current } = hc.state.core;
    if (!changed("agenda", [hc.lang, agenda, current])) return;
    list.replaceChildren(...agenda.map((item, i) => {
      const local = fmt(item.start, { hour: "2-digit", minute: "2-digit" });
      const utc = fmt(item.start, { hour: "2-digit", minute: "2-digit", timeZone: "UTC" });
      const day = hc.date(item.start, { weekday: "short", day: "numeric", month: "short" });
      const title = (item.titles || {})[hc.lang] || item.title;
      return h("li", { class: i === current ? "current" : "", "aria-current": i === current ? "step" : null },
        h("span", { class: "time" },
          h("time", { datetime: item.start, class: "local" }, `${day} ${local}`),
          h("small", { class: "utc" }, ` (${utc} UTC)`)),
        h("span", { class: "title" }, title),
        h("small", { class: "minutes" }, ` · ${item.minutes}′`),
        i === current ? h("strong", { class: "badge" }, hc.t("agenda.now")) : null);
    }));
  }

  function nameOf(hc, pid) {
    const p = hc.person(pid);
    return p ? p.name : pid;
  }

  function orgLine(hc, p) {
    const org = p.org && (hc.assembly.members || {})[p.org];
    // The member's country when the invite names none: a representative's organisation says it.
    const parts = [org ? org.name : p.org, hc.countryName(p.country || (org && org.country))].filter(Boolean);
    return parts.join(", ");
  }

  function renderPeople(hc) {
    const people = Object.values(hc.state.core.people);
    if (!changed("people", [hc.lang, people])) return;
    const online = people.filter((p) => p.conns.length);
    document.getElementById("people-count").textContent =
      hc.plural("people.online", online.length);
    const order = {
      moderator: 0, panelist: 1, interpreter: 2, captioner: 3, participant: 4, observer: 5,
    };
    people.sort((a, b) => (order[a.role] - order[b.role]) || a.name.localeCompare(b.name));
    document.getElementById("people-list").replaceChildren(...people.map((p) =>
      h("li", { class: p.conns.length ? "online" : "offline", dataset: { pid: p.pid } },
        h("span", { class: "name" }, p.name, p.pid === hc.you.pid ? ` (${hc.t("you")})` : ""),
        h("span", { class: `role role-${p.role}` }, hc.t(`role.${p.role}`)),
        h("small", { class: "org" }, orgLine(hc, p)),
        p.conns.length ? null : h("small", { class: "muted" }, ` · ${hc.t("offline")}`))));
  }

  // Speaking and waiting clocks: m:ss (h:mm:ss past an hour) since a log time. The elements
  // carry data-since (and data-clock, a key taking {t}); a timer updates their text in place.
  function clock(ts) {
    const s = Math.max(0, Math.floor((HC.now() - ts) / 1000));
    const two = (n) => String(n).padStart(2, "0");
    const [hh, mm, ss] = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
    return hh ? `${hh}:${two(mm)}:${two(ss)}` : `${mm}:${two(ss)}`;
  }
  function tickClocks() {
    for (const el of document.querySelectorAll("[data-since]")) {
      const t = clock(Number(el.dataset.since));
      const text = el.dataset.clock ? HC.t(el.dataset.clock, { t }) : t;
      if (el.textContent !== text) el.textContent = text;
    }
  }
  const clockEl = (ts, key, cls) => (ts ? h("span", { class: `clock ${cls}`,
    dataset: { since: ts, clock: key } }, HC.t(key, { t: clock(ts) })) : null);

  function who(hc, pid) {
    const p = hc.person(pid);
    return [nameOf(hc, pid), p ? orgLine(hc, p) : "", p && p.lang ? HC.langName(p.lang) : ""];
  }

  // The lists are rebuilt only when what they show changes, never on a level frame or a
  // clock tick: a focused "Give the floor" keeps its focus (issue 11, item 2).
  const keys = {};
  function changed(name, value) {
    const key = JSON.stringify(value);
    if (keys[name] === key) return false;
    keys[name] = key;
    return true;
  }

  function renderFloor(hc) {
    const { hands, speakers } = hc.state.core;
    const raised = hc.state.core.raised || {};
    const since = hc.state.core.floor_since || {};
    const chair = hc.isChair();
    const handList = document.getElementById("hands-list");
    let refocus = -1;
    const rows = hands.map((pid) => [pid, raised[pid], ...who(hc, pid)]);
    if (changed("hands", [hc.lang, chair, rows])) {
      // A keyboard user whose row went (they gave the floor, lowered a hand) lands on the
      // same button of the row that took its place, not on <body>.
      const active = handList.contains(document.activeElement) ? document.activeElement : null;
      const at = active ? [...handList.querySelectorAll("button")].indexOf(active) : -1;
      const same = active && [active.closest("li").dataset.pid, [...active.parentNode.children].indexOf(active)];
      if (!hands.length) handList.replaceChildren(h("li", { class: "muted" }, hc.t("hands.empty")));
      else handList.replaceChildren(...rows.map(([pid, ts, name, org, lang], i) => h("li", { dataset: { pid } },
        h("span", { class: "pos" }, `${i + 1}.`), " ",
        h("span", { class: "who" }, h("span", { class: "name" }, name),
          chair ? h("small", { class: "org" }, [org, lang].filter(Boolean).join(" · ")) : null),
        chair ? clockEl(ts, "queue.waiting", "wait") : null,
        chair ? h("span", { class: "row-actions" },
          h("button", { class: "small", onclick: () => run("floor.grant", { pid }) }, hc.t("floor.give")),
          h("button", { class: "small ghost", onclick: () => run("hand.lower", { pid }) }, hc.t("hand.lower")))
          : null)));
      refocus = at;
      const row = same && [...handList.children].find((li) => li.dataset.pid === same[0]);
      if (row) { row.querySelectorAll("button")[same[1]].focus(); refocus = -1; } // still there
    }
    const speaking = speakers.map((pid) => [pid, since[pid], ...who(hc, pid)]);
    if (changed("speakers", [hc.lang, chair, speaking])) {
      document.getElementById("speakers-list").replaceChildren(...speaking.map(([pid, ts, name, org]) =>
        h("li", { dataset: { pid } }, h("span", { class: "who" }, h("strong", { class: "name" }, name),
          org ? h("small", { class: "org" }, org) : null),
        clockEl(ts, "floor.speaking_for", "speaking"),
        chair ? h("button", { class: "small", onclick: () => run("floor.revoke", { pid }) },
          hc.t("floor.take")) : null)));
    }
    if (refocus >= 0) { // else the last speaker's "Take back" (the queue is empty now)
      const buttons = handList.querySelectorAll("button");
      const last = [...document.querySelectorAll("#speakers-list button")].pop();
      const to = buttons[Math.min(refocus, buttons.length - 1)] || last;
      if (to) to.focus();
    }
    tickClocks();
    const mine = hands.includes(hc.you.pid);
    const speakingNow = speakers.includes(hc.you.pid);
    const handButton = document.getElementById("hand-button");
    // The chair gives the floor: no hand of their own to raise (issue 11, item 7).
    handButton.hidden = !["participant", "panelist"].includes(hc.you.role) || speakingNow;
    handButton.textContent = hc.t(mine ? "hand.lower" : "hand.raise");
    handButton.setAttribute("aria-pressed", mine ? "true" : "false");
    // Raised or lowered while offline: the page shows it as waiting until the node answers.
    const waiting = hc.waiting().some((c) => c.queued && (c.name === "hand.raise" || c.name === "hand.lower"));
    const pendingEl = document.getElementById("hand-pending");
    pendingEl.hidden = !waiting || handButton.hidden;
    pendingEl.textContent = waiting ? hc.t("offline.pending") : "";
    handButton.dataset.pending = waiting ? "true" : "false";
    document.getElementById("floor-next").hidden = !chair || !hands.length;
    document.getElementById("floor-next").textContent = hc.t("floor.next");
    document.getElementById("floor-yield").hidden = !speakingNow;
    document.getElementById("you-speak").hidden = !speakingNow;
    document.body.dataset.floor = speakingNow ? "you" : ""; // style.css: the floor card first
  }

  // The line under the header on every page: who is speaking — the voice the floor carries
  // (static/stage.js's active speaker: the chair interjecting without the floor too) — and
  // who has the floor, with organisation and country.
  function renderSpeaking(hc) {
    const line = document.getElementById("speaking-line");
    const named = (pids) => pids.map((pid) => hc.person(pid)).filter(Boolean)
      .map((p) => [p.name, orgLine(hc, p)].filter(Boolean).join(" — ")).join("; ");
    const floor = hc.state.core.speakers;
    const voice = HC.stage && HC.stage.view ? HC.stage.view.speaker : null;
    const parts = [];
    if (voice && !floor.includes(voice) && hc.person(voice)) parts.push(hc.t("speaking.voice", { who: named([voice]) }));
    if (floor.length) parts.push(hc.t("speaking.now", { who: named(floor) }));
    const full = parts.join(" · ");
    if (line.textContent !== full) line.textContent = full;
  }

  // Who this page is for, with the role in words (an observer reads "Observer").
  function renderYou(hc) {
    const badge = document.getElementById("you-badge");
    const text = `${hc.you.name} · ${hc.t(`role.${hc.you.role}`)}`;
    badge.hidden = false;
    if (badge.textContent !== text) badge.textContent = text;
    badge.dataset.role = hc.you.role;
  }

  function renderNotice(hc) {
    const box = document.getElementById("notice");
    const notice = hc.state.core.notice;
    box.hidden = !notice;
    box.textContent = notice ? notice.text : "";
  }

  HC.register({
    name: "room", appliers, init,
    render(hc) {
      renderTitle(hc); renderYou(hc); renderSpeaking(hc); renderAgenda(hc); renderPeople(hc);
      renderFloor(hc); renderNotice(hc);
    },
    onMessage(hc, msg) {
      if (msg.type === "ephemeral" && msg.kind === "reaction") {
        const el = h("span", { class: "reaction" }, msg.emoji);
        document.getElementById("reactions").append(el);
        setTimeout(() => el.remove(), 3000);
      }
    },
  });
})();

document.addEventListener("DOMContentLoaded", () => HC.start());
