// hemicycle page runtime: one WebSocket, a copy of the room state, feature modules.
//
// A feature module registers itself with HC.register({...}):
//   name:      "channels"
//   appliers:  {"event.type": (state, event) => {...}}   fold one event into HC.state (mirror
//              of the server's apply functions for that event)
//   init(HC):  called once after the first welcome (build DOM, bind buttons)
//   render(HC): called after every change (batched per animation frame)
//   onMessage(HC, msg): optional, sees every server frame (ephemeral messages, rtc signalling)
// UI text lives in static/i18n/<lang>.json (one flat key space, "{name}" placeholders), fetched
// before the first render; HC.t(key, vars) looks a key up (falling back to English), and
// HC.plural(key, n, vars) picks "<key>.<category>" by Intl.PluralRules (one/few/many/other)
// with {n} formatted for the locale. HC.time/HC.date format through Intl.DateTimeFormat with
// one hour cycle per locale (HOUR_CYCLE). The page language: a choice made on this device
// (localStorage "hc.lang") wins; otherwise the invite's language (the welcome's you.lang);
// before the welcome, the browser's.
// HC.applyEvents(events) folds events into HC.state with the registered appliers (what every
// "events" frame goes through; tests/test_page_state.py replays a session with it).
// HC.command(name, args) returns a promise of the reply; it rejects with {code, message}.
// HC.rpc(type, fields) sends one media signalling frame (rtc.*, video.*) and returns a promise
// of its reply (same cid); it is not re-sent after a reconnect and gives up after RPC_MS.
// Commands still unanswered when the socket drops are re-sent with the same cid after the
// reconnect: the server folds a cid once, so a retry is never counted twice.
// A heartbeat finds a network that is gone without a close (a laptop's Wi-Fi, a tunnel): a
// ping after PING_MS of quiet, and nothing heard for SILENT_MS means offline — the socket is
// dropped and the page reconnects, showing the offline banner (#offline) with the actions
// still waiting (HC.waiting()); on return each is sent again and a toast says it went
// through (a refusal is explained by the caller, as always). A socket not back within
// BANNER_AFTER_MS of a close shows the banner too.
"use strict";

const HC = (() => {
  const UI_LANGS = ["en", "es", "fr", "ru"];
  // One hour cycle per locale, used by every time shown: 24-hour in all four (the convention
  // of international meetings; the agenda, chat, signals and booth times agree).
  const HOUR_CYCLE = { en: "h23", es: "h23", fr: "h23", ru: "h23" };
  // Heartbeat (issue 11: "offline for 50 s, the status stayed Connected"): the banner must
  // show within 5 s of the network going away, so silence for 4 s is offline.
  const PING_MS = 1500, SILENT_MS = 4000, CONNECT_MS = 5000, WELCOME_MS = 15000;
  const BANNER_AFTER_MS = 2000;
  const RPC_MS = 15000;
  const modules = [];
  const strings = { en: {}, es: {}, fr: {}, ru: {} };
  const appliers = {};
  const pending = new Map(); // cid -> {msg, resolve, reject}
  const rpcWaiting = new Map(); // cid -> {resolve, reject}: signalling frames (HC.rpc)
  const cidPrefix = Math.random().toString(36).slice(2, 10);
  let cidCounter = 0;
  let ws = null;
  let renderQueued = false;
  let retryDelay = 250;
  let drainedBefore = false; // the last close was a drain (4010)
  let started = false;
  let stopped = false;
  let heardAt = 0; // when the socket last brought anything (a pong, an event)
  let pingedAt = 0;
  let bannerTimer = null;

  const hc = {
    state: null, you: null, assembly: null, room: null, last: null, token: null,
    lang: "en", connected: false, clockOffset: 0, status: "connecting",
    drains: 0, // times a draining node (4010) sent this page elsewhere
    offline: false, // the banner is up: the network is gone, or the socket has not come back

    register(mod) {
      modules.push(mod);
      Object.assign(appliers, mod.appliers || {});
      if (started && mod.init) mod.init(hc);
    },

    t(key, vars) {
      let s = strings[hc.lang][key] ?? strings.en[key] ?? key;
      if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, v);
      return s;
    },

    // n formatted for the locale as {n}; the key's plural forms are "<key>.one", ".few", …
    plural(key, n, vars) {
      let cat = "other";
      try { cat = new Intl.PluralRules(hc.lang).select(n); } catch { /* keep "other" */ }
      const full = strings[hc.lang][`${key}.${cat}`] !== undefined ? `${key}.${cat}` : `${key}.other`;
      return hc.t(full, { ...vars, n: Number(n).toLocaleString(hc.lang) });
    },

    time(value, opts = {}) {
      return new Intl.DateTimeFormat(hc.lang, {
        hour: "2-digit", minute: "2-digit", hourCycle: HOUR_CYCLE[hc.lang], ...opts,
      }).format(new Date(value));
    },

    date(value, opts = {}) {
      return new Intl.DateTimeFormat(hc.lang, opts).format(new Date(value));
    },

    // The person's choice on this device (remembered) or an automatic one (not remembered).
    async setLang(lang, remember = true) {
      if (!UI_LANGS.includes(lang)) return;
      await loadStrings(lang);
      hc.lang = lang;
      if (remember) localStorage.setItem("hc.lang", lang);
      document.documentElement.lang = lang;
      for (const el of document.querySelectorAll("[data-t]")) el.textContent = hc.t(el.dataset.t);
      for (const el of document.querySelectorAll("[data-t-label]")) {
        el.setAttribute("aria-label", hc.t(el.dataset.tLabel));
        el.title = hc.t(el.dataset.tLabel);
      }
      setStatus(hc.status);
      hc.render();
    },

    now() { return Date.now() + hc.clockOffset; },

    command(name, args = {}) {
      const cid = `${cidPrefix}-${++cidCounter}`;
      const msg = { type: "command", cid, name, args };
      return new Promise((resolve, reject) => {
        pending.set(cid, { msg, resolve, reject, queued: !hc.connected || hc.offline });
        send(msg);
        if (!hc.connected || hc.offline) { renderBanner(); hc.render(); } // shown as pending
      });
    },

    rpc(type, fields = {}) {
      const cid = `${cidPrefix}-rpc-${++cidCounter}`;
      return new Promise((resolve, reject) => {
        rpcWaiting.set(cid, { resolve, reject });
        send({ type, cid, ...fields });
        setTimeout(() => {
          if (rpcWaiting.delete(cid)) reject({ code: "timeout", message: "no answer from the server" });
        }, RPC_MS);
      });
    },

    // The commands sent but not answered yet, oldest first: [{name, args, queued}] (queued:
    // issued or caught while offline — the banner and the controls show them as pending).
    waiting() {
      return [...pending.values()].map((p) => ({ name: p.msg.name, args: p.msg.args, queued: p.queued }));
    },

    send(msg) { send(msg); },

    render() {
      if (renderQueued) return;
      renderQueued = true;
      requestAnimationFrame(() => {
        renderQueued = false;
        if (!hc.state) return;
        for (const m of modules) {
          try { m.render && m.render(hc); } catch (e) { console.error(m.name, e); }
        }
      });
    },

    toast(text, kind = "info") {
      const box = document.getElementById("toasts");
      if (!box) return;
      const el = document.createElement("div");
      el.className = `toast ${kind}`;
      el.setAttribute("role", kind === "error" ? "alert" : "status");
      el.textContent = text;
      box.append(el);
      setTimeout(() => el.remove(), 6000);
    },

    // Tell the user why a command failed, in their language when we know the code.
    explain(err) {
      const key = `err.${err.code}`;
      const text = hc.t(key) !== key ? hc.t(key) : err.message;
      hc.toast(text, "error");
    },

    person(pid) { return hc.state?.core.people[pid]; },
    isChair() { return hc.you?.role === "moderator"; },

    async start() {
      const params = new URLSearchParams(location.hash.slice(1));
      hc.token = params.get("t") || sessionStorage.getItem("hc.token");
      const saved = localStorage.getItem("hc.lang");
      const browser = (navigator.language || "en").slice(0, 2);
      // The socket opens while the strings load (one round trip fewer before the welcome on
      // a slow link); its frames wait in `held` until the strings are in.
      if (hc.token) {
        sessionStorage.setItem("hc.token", hc.token);
        held = [];
        connect();
      }
      await loadStrings("en"); // the fallback of every key
      await hc.setLang(saved || (UI_LANGS.includes(browser) ? browser : "en"), false);
      if (!hc.token) { setStatus("no_token"); return; }
      setStatus(hc.status);  // its words, now that they are loaded
      const frames = held || [];
      held = null;
      for (const m of frames) receive(m);
    },

    // Tests and the "leave" button use this; a dropped socket reconnects by itself.
    stop() { stopped = true; if (ws) ws.close(); },
    dropForTest() { if (ws) ws.close(); },
  };

  const loading = {};
  function loadStrings(lang) {
    loading[lang] ??= fetch(`/static/i18n/${lang}.json`)
      .then((r) => { if (!r.ok) throw new Error(`${lang}.json: ${r.status}`); return r.json(); })
      .then((table) => { strings[lang] = table; })
      .catch((e) => { delete loading[lang]; console.error("i18n", e); });
    return loading[lang];
  }

  function setStatus(status) {
    hc.status = status;
    const el = document.getElementById("status");
    if (el) { el.dataset.status = status; el.textContent = hc.t(`status.${status}`); }
    renderBanner();
  }

  // The offline banner: what happened, and the actions waiting to be sent.
  function renderBanner() {
    const box = document.getElementById("offline");
    if (!box) return;
    box.hidden = !hc.offline;
    if (!hc.offline) return;
    for (const p of pending.values()) p.queued = true; // unanswered at the drop: resent later
    const names = [...pending.values()].map((p) => actionName(p.msg.name));
    const text = box.querySelector(".offline-text") || box.appendChild(hc.h("p", { class: "offline-text" }));
    text.textContent = hc.t("offline.banner");
    const list = box.querySelector(".offline-waiting") || box.appendChild(hc.h("p", { class: "offline-waiting" }));
    list.textContent = names.length ? hc.t("offline.waiting", { actions: names.join(", ") }) : "";
    list.hidden = !names.length;
    box.dataset.waiting = String(names.length);
  }

  function actionName(name) {
    const key = `action.${name}`;
    return hc.t(key) !== key ? hc.t(key) : hc.t("action.any");
  }

  function goOffline() {
    if (hc.offline || stopped) return;
    hc.offline = true;
    setStatus("offline");
    hc.render();
  }

  // Nothing heard for SILENT_MS on an open socket: the network is gone. Drop the socket
  // without waiting for a closing handshake that cannot arrive, and reconnect.
  let tickedAt = Date.now();
  setInterval(() => {
    const gap = Date.now() - tickedAt;
    tickedAt = Date.now();
    if (!ws || stopped || ws.readyState !== WebSocket.OPEN) return;
    // Before the welcome the node may be busy (a large snapshot): only a socket that has not
    // been welcomed in WELCOME_MS is given up.
    if (!hc.connected) { if (Date.now() - heardAt > WELCOME_MS) abandon(ws, 1006); return; }
    // A late tick means this timer was held back (a background tab, a sleeping laptop), not
    // that the node is silent: ask once more and judge on the next ticks.
    if (gap > 4 * 250) { heardAt = Math.max(heardAt, Date.now() - PING_MS - 1); pingedAt = 0; }
    const quiet = Date.now() - heardAt;
    if (quiet > SILENT_MS) { goOffline(); abandon(ws, 1006); return; }
    // Pings count against the frame rate (docs/security.md): only when the socket is quiet.
    if (quiet > PING_MS && Date.now() - pingedAt > PING_MS) { pingedAt = Date.now(); send({ type: "ping" }); }
  }, 250);

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    let url = `${proto}//${location.host}/ws?token=${encodeURIComponent(hc.token)}`;
    if (hc.last) url += `&after=${encodeURIComponent(hc.last)}`;
    // The room, for a proxy that sends each room to its own nodes (docs/scaling.md).
    const inPath = location.pathname.match(/^\/r\/([^/]+)/);
    if (inPath) url += `&room=${inPath[1]}`;
    if (!hc.offline) setStatus(hc.state ? "reconnecting" : "connecting");
    const sock = new WebSocket(url, ["hemicycle.json"]);
    ws = sock;
    heardAt = Date.now();
    sock.onmessage = (e) => { heardAt = Date.now(); receive(JSON.parse(e.data)); };
    sock.onclose = (e) => closed(e.code);
    // A connection that hangs (the network is still gone) is given up and tried again.
    setTimeout(() => { if (ws === sock && sock.readyState === WebSocket.CONNECTING) abandon(sock, 1006); },
               CONNECT_MS);
  }

  function abandon(sock, code) {
    if (ws !== sock) return;
    sock.onclose = null; sock.onmessage = null;
    try { sock.close(); } catch { /* already closing */ }
    closed(code);
  }

  function closed(code) {
    ws = null;
    hc.connected = false;
    if (stopped) { setStatus("left"); return; }
    if ([4001, 4003, 4004, 4006, 4007].includes(code)) { setStatus("refused"); return; }
    if (code === 4009) { setStatus("displaced"); return; } // a newer window took over
    setStatus(hc.offline ? "offline" : "reconnecting");
    // Not back within BANNER_AFTER_MS: say so (a drain or a blip reconnects before that).
    clearTimeout(bannerTimer);
    bannerTimer = setTimeout(() => { if (!hc.connected) goOffline(); }, BANNER_AFTER_MS);
    // 4010: the node drains. Reconnect at once (the load balancer picks another node) and
    // resume after hc.last; a node that still drains on the next try gets the backoff.
    const drained = code === 4010 && !drainedBefore;
    drainedBefore = code === 4010;
    hc.drains += drained ? 1 : 0;
    setTimeout(connect, drained ? 0 : retryDelay);
    if (!drained) retryDelay = Math.min(retryDelay * 2, hc.offline ? 2000 : 5000);
  }

  // Frames wait here while the invite's language loads (before the first welcome is handled),
  // so that the page's first render is already in that language.
  let held = null;
  function receive(msg) {
    if (held) { held.push(msg); return; }
    const lang = msg.type === "welcome" && !started ? msg.you?.lang : null;
    if (lang && UI_LANGS.includes(lang) && lang !== hc.lang && !localStorage.getItem("hc.lang")) {
      held = [msg];
      hc.setLang(lang, false).finally(() => {
        const frames = held;
        held = null;
        for (const m of frames) onMessage(m);
      });
      return;
    }
    onMessage(msg);
  }

  // Fold events into HC.state with the modules' appliers, in order; returns the types that
  // had no applier (skipped). The WebSocket path and tests (tests/test_page_state.py) use it.
  function applyEvents(events) {
    const missing = [];
    for (const ev of events) {
      const fn = appliers[ev.type];
      if (fn) fn(hc.state, ev);
      else {
        console.warn("no applier for", ev.type);
        if (!missing.includes(ev.type)) missing.push(ev.type);
      }
    }
    return missing;
  }
  hc.applyEvents = applyEvents;

  function onMessage(msg) {
    switch (msg.type) {
      case "welcome": {
        hc.you = msg.you; hc.assembly = msg.assembly; hc.room = msg.room;
        hc.clockOffset = msg.now - Date.now();
        if (!msg.resumed) hc.state = msg.state;
        hc.last = msg.last;
        hc.connected = true; retryDelay = 250; drainedBefore = false;
        clearTimeout(bannerTimer);
        hc.offline = false;
        setStatus("connected");
        if (!started) {
          started = true;
          for (const m of modules) m.init && m.init(hc);
        }
        for (const p of pending.values()) send(p.msg); // retry with the same cid
        break;
      }
      case "events":
        applyEvents(msg.events);
        hc.last = msg.id;
        break;
      case "reply": {
        const r = rpcWaiting.get(msg.cid);
        if (r) {
          rpcWaiting.delete(msg.cid);
          msg.ok ? r.resolve(msg) : r.reject(msg);
          break;
        }
        const p = pending.get(msg.cid);
        if (p) {
          pending.delete(msg.cid);
          if (p.queued && msg.ok) hc.toast(hc.t("offline.sent", { action: actionName(p.msg.name) }));
          msg.ok ? p.resolve(msg) : p.reject(msg);
        }
        break;
      }
      case "error":
        if (msg.code !== "draining") hc.explain(msg); // the close (4010) that follows says it
        break;
    }
    for (const m of modules) {
      if (m.onMessage) {
        try { m.onMessage(hc, msg); } catch (e) { console.error(m.name, e); }
      }
    }
    hc.render();
  }

  // Small DOM helper: h("button", {class: "x", onclick: f}, "text", child…)
  hc.h = (tag, attrs = {}, ...children) => {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  };

  hc.countryName = (code) => {
    if (!code) return "";
    try { return new Intl.DisplayNames([hc.lang], { type: "region" }).of(code) || code; }
    catch { return code; }
  };

  hc.langName = (code) => {
    try { return new Intl.DisplayNames([hc.lang], { type: "language" }).of(code) || code; }
    catch { return code; }
  };

  return hc;
})();

window.HC = HC;
