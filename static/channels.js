// Language channels: the listener's picker and captions, the chair's booth board, the
// captioner's input, and the booth signals shown to the chair and the speakers.
// Event appliers mirror server/channels.py; the interpreter console is static/booth.js.
"use strict";

(() => {
  const { h } = HC;
  const CAPTION_KEEP = 50, CHAT_KEEP = 500, SIGNAL_KEEP = 20, SIGNAL_SHOW_MS = 15000;
  const PRESETS = ["slow_down", "speak_up", "no_sound", "use_mic", "pause"];

  // --- appliers: mirrors of server/channels.py -----------------------------------------------
  const newChannel = (lang, added) => ({ lang, added, live: null, since: null, cough: false,
    handover: null, away: null, last_off: null });
  const chan = (s, ev) => s.channels.channels[ev.lang];
  const append = (lines, ev, keep) => {
    const n = lines.length ? lines[lines.length - 1].n + 1 : 1;
    lines.push({ n, pid: ev.pid, text: ev.text, ts: ev.ts });
    if (lines.length > keep) lines.splice(0, lines.length - keep);
  };
  const closeHandover = (s, ev) => { chan(s, ev).handover = null; };
  const askHandover = (s, ev) => {
    chan(s, ev).handover = { kind: ev.type === "handover.requested" ? "request" : "offer",
      asker: ev.asker, answerer: ev.answerer, ts: ev.ts, expires: ev.expires };
  };
  const appliers = {
    "channel.chosen": (s, ev) => { s.channels.choice[ev.pid] = ev.lang; },
    "channel.added": (s, ev) => {
      const ch = s.channels;
      ch.channels[ev.lang] = newChannel(ev.lang, ev.ts);
      ch.captions[ev.lang] ??= [];
      // A chat is in the copy only where server/channels.py's view puts it: every chat for
      // the chair, "all" and their own booth's for an interpreter, none for the others.
      if (HC.you.role === "moderator" || (HC.you.role === "interpreter" && HC.you.booth === ev.lang)) {
        ch.chats[ev.lang] ??= [];
      }
    },
    "booth.assigned": (s, ev) => {
      s.channels.interpreters[ev.pid] = { pid: ev.pid, booth: ev.booth, pair: [...ev.pair],
        input: "floor", out: ev.booth };
    },
    "air.taken": (s, ev) => Object.assign(chan(s, ev),
      { live: ev.pid, since: ev.ts, cough: false, handover: null, away: null }),
    "air.released": (s, ev) => Object.assign(chan(s, ev), { live: null, since: null,
      cough: false, handover: null, away: null,
      last_off: { pid: ev.pid, reason: ev.reason, ts: ev.ts } }),
    "air.handed": (s, ev) => Object.assign(chan(s, ev),
      { live: ev.incoming, since: ev.ts, cough: false, handover: null, away: null }),
    "handover.requested": askHandover,
    "handover.offered": askHandover,
    "handover.declined": closeHandover,
    "handover.cancelled": closeHandover,
    "handover.expired": closeHandover,
    "booth.away": (s, ev) => Object.assign(chan(s, ev),
      { away: { pid: ev.pid, since: ev.since, until: ev.until }, cough: false }),
    "booth.back": (s, ev) => { chan(s, ev).away = null; },
    "input.selected": (s, ev) => { s.channels.interpreters[ev.pid].input = ev.input; },
    "output.selected": (s, ev) => { s.channels.interpreters[ev.pid].out = ev.out; },
    "cough": (s, ev) => { chan(s, ev).cough = ev.on; },
    // The room's number (ev.n): this copy holds those of the room's last SIGNAL_KEEP sent to it.
    "booth.signal": (s, ev) => {
      const list = s.channels.signals;
      list.push({ n: ev.n, lang: ev.lang, pid: ev.pid, preset: ev.preset, ts: ev.ts, to: ev.to });
      s.channels.signals = list.filter((x) => x.n > ev.n - SIGNAL_KEEP);
    },
    // Only into a chat this copy holds (see "channel.added"): a captioner whose invite names a
    // booth receives that booth's chat (fold.visible) but the view shows them no chats.
    "chat.posted": (s, ev) => {
      const lines = s.channels.chats[ev.chat];
      if (lines) append(lines, ev, CHAT_KEEP);
    },
    "caption": (s, ev) => { append(s.channels.captions[ev.lang] ??= [], ev, CAPTION_KEEP); },
  };

  // --- helpers shared with booth.js ----------------------------------------------------------
  const CH = {
    PRESETS,
    quiet: (name, args) => HC.command(name, args).catch((e) => HC.explain(e)),
    nameOf: (pid) => (pid && HC.person(pid)?.name) || pid || "",
    online: (pid) => Boolean(HC.person(pid)?.conns.length),
    langLabel: (lang) => lang === "original" ? HC.t("ch.original") : `${HC.langName(lang)} (${lang})`,
    listeners(s) {
      const counts = { original: 0 };
      for (const l of Object.keys(s.channels.channels)) counts[l] = 0;
      for (const [pid, p] of Object.entries(s.core.people)) {
        if (!p.conns.length || p.role === "interpreter") continue;
        const l = s.channels.choice[pid] ?? "original";
        counts[l in counts ? l : "original"] += 1;
      }
      return counts;
    },
    // One chat: the last lines and a form to post (chat: "all", "booth" or a booth's lang).
    chatBox(id, title, lines, chat) {
      const box = document.getElementById(id) || h("div", { id, class: "chat" },
        h("h3", {}, ""), h("ol", { class: "plain chat-lines", "aria-live": "polite" }),
        h("form", { onsubmit: (e) => {
          e.preventDefault();
          const input = e.target.querySelector("input");
          if (!input.value.trim()) return;
          CH.quiet("chat.post", { chat: box.dataset.chat, text: input.value })
            .then((r) => { if (r) input.value = ""; });
        } }, h("input", { maxlength: 1000, "aria-label": HC.t("chat.placeholder") }),
        h("button", { type: "submit" }, HC.t("chat.send"))));
      box.dataset.chat = chat;
      box.querySelector("h3").textContent = title;
      box.querySelector("input").placeholder = HC.t("chat.placeholder");
      box.querySelector("button").textContent = HC.t("chat.send");
      const list = box.querySelector("ol");
      const last = (lines || []).slice(-30);
      if (list.dataset.n !== String(last.length ? last[last.length - 1].n : 0)) {
        list.replaceChildren(...last.map((m) => h("li", {},
          h("small", {}, HC.time(m.ts), " "),
          h("strong", {}, CH.nameOf(m.pid), ": "), m.text)));
        list.dataset.n = String(last.length ? last[last.length - 1].n : 0);
        list.scrollTop = list.scrollHeight;
      }
      return box;
    },
  };
  window.HCChannels = CH;

  const features = () => document.getElementById("features");
  const mineChoice = (hc) => hc.state.channels.choice[hc.you.pid] ?? "original";

  // --- the listener: picker, who is interpreting, captions -----------------------------------
  function initListener(hc) {
    const select = h("select", { id: "channel-picker", onchange: () => {
      CH.quiet("channel.choose", { lang: select.value });
      // Picking a language is asking to hear it: start the audio too (static/audio.js).
      if (HC.audio && !HC.audio.wantListen) HC.audio.start();
    } });
    features().append(h("section", { id: "channel-section", "aria-labelledby": "channel-h" },
      h("h2", { id: "channel-h", "data-t": "ch.title" }, hc.t("ch.title")),
      h("label", {}, h("span", { "data-t": "ch.listen" }, hc.t("ch.listen")), " ", select),
      h("p", { id: "channel-live", class: "channel-live", role: "status", "aria-live": "polite" }),
      h("h3", { "data-t": "ch.captions" }, hc.t("ch.captions")),
      h("ol", { id: "captions", class: "plain captions", "aria-live": "polite" })));
  }

  function renderListener(hc) {
    const s = hc.state.channels;
    const select = document.getElementById("channel-picker");
    const langs = ["original", ...Object.keys(s.channels)];
    if (select.dataset.langs !== langs.join() + hc.lang) {
      select.replaceChildren(...langs.map((l) => h("option", { value: l }, CH.langLabel(l))));
      select.dataset.langs = langs.join() + hc.lang;
    }
    const choice = mineChoice(hc);
    if (document.activeElement !== select) select.value = choice;
    const liveEl = document.getElementById("channel-live");
    const channel = s.channels[choice];
    let text = "";
    liveEl.dataset.live = "";
    if (channel && channel.live) {
      const who = s.interpreters[channel.live];
      text = hc.t("ch.on_air", { name: CH.nameOf(channel.live) });
      if (who && who.out !== choice) text += ` — ${hc.t("ch.retour", { lang: hc.langName(who.out) })}`;
      if (channel.cough) text += ` · ${hc.t("ch.cough")}`;
      liveEl.dataset.live = channel.live;
    } else if (channel) {
      text = hc.t(s.fallback === "silence" ? "ch.no_one_silence" : "ch.no_one");
    }
    liveEl.textContent = text;
    liveEl.hidden = !text;
    const lines = (s.captions[choice] || []).slice(-8);
    const list = document.getElementById("captions");
    list.dataset.lang = choice;
    list.replaceChildren(...(lines.length ? lines.map((l) => h("li", { dataset: { n: l.n } }, l.text))
      : [h("li", { class: "muted" }, hc.t("ch.no_captions"))]));
  }

  // --- the captioner -------------------------------------------------------------------------
  function initCaptioner(hc) {
    const select = h("select", { id: "caption-lang" });
    const input = h("input", { id: "caption-input", maxlength: 1024 });
    features().append(h("section", { id: "caption-section", "aria-labelledby": "caption-h" },
      h("h2", { id: "caption-h", "data-t": "cap.title" }, hc.t("cap.title")),
      h("label", {}, h("span", { "data-t": "cap.channel" }, hc.t("cap.channel")), " ", select),
      h("form", { onsubmit: (e) => {
        e.preventDefault();
        if (!input.value.trim()) return;
        CH.quiet("caption.post", { lang: select.value, text: input.value })
          .then((r) => { if (r) input.value = ""; });
      } }, input, h("button", { type: "submit", "data-t": "cap.send" }, hc.t("cap.send")))));
  }

  function renderCaptioner(hc) {
    const s = hc.state.channels;
    const own = hc.you.booth;
    let langs = ["original", ...Object.keys(s.channels)];
    if (own) langs = langs.filter((l) => l === own || (l === "original" && own === s.floor));
    const select = document.getElementById("caption-lang");
    if (select.dataset.langs !== langs.join() + hc.lang) {
      const keep = select.value;
      select.replaceChildren(...langs.map((l) => h("option", { value: l }, CH.langLabel(l))));
      if (langs.includes(keep)) select.value = keep;
      select.dataset.langs = langs.join() + hc.lang;
    }
    document.getElementById("caption-input").placeholder = hc.t("cap.placeholder");
  }

  // --- the chair's booth board ---------------------------------------------------------------
  function initBoard(hc) {
    const input = h("input", { id: "channel-add-input", maxlength: 20,
      "aria-label": hc.t("board.add_placeholder"), "data-t-label": "board.add_placeholder" });
    features().append(h("section", { id: "booth-board", class: "wide", "aria-labelledby": "board-h" },
      h("h2", { id: "board-h", "data-t": "board.title" }, hc.t("board.title")),
      h("div", { id: "board-signals", role: "region", "aria-live": "assertive" }),
      h("table", { class: "board" }, h("thead"), h("tbody")),
      h("form", { id: "channel-add", onsubmit: (e) => {
        e.preventDefault();
        CH.quiet("channel.add", { lang: input.value.trim() })
          .then((r) => { if (r) input.value = ""; });
      } }, input, h("button", { type: "submit", "data-t": "board.add" }, hc.t("board.add"))),
      h("div", { id: "board-chats", class: "chats" })));
  }

  async function download(hc, lang, format) {
    const r = await fetch(`/api/transcripts/${hc.room}/${lang}?format=${format}`,
      { headers: { Authorization: `Bearer ${hc.token}` } });
    if (!r.ok) { hc.explain(await r.json()); return; }
    const url = URL.createObjectURL(await r.blob());
    const a = h("a", { href: url, download: `${hc.room}-${lang}.${format}` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function renderBoard(hc) {
    const s = hc.state.channels;
    const counts = CH.listeners(hc.state);
    const table = document.querySelector("#booth-board table");
    table.tHead.replaceChildren(h("tr", {}, ...["board.channel", "board.live", "board.handover",
      "board.booth", "board.listeners", "board.transcript"].map((k) => h("th", {}, hc.t(k)))));
    const rows = ["original", ...Object.keys(s.channels)].map((lang) => {
      const c = s.channels[lang];
      const transcript = h("td", {}, ...["vtt", "txt"].map((f) =>
        h("button", { class: "small ghost", onclick: () => download(hc, lang, f) }, f)));
      if (!c) {
        return h("tr", { dataset: { lang } }, h("th", {}, CH.langLabel(lang)), h("td", {}, ""),
          h("td", {}, ""), h("td", {}, ""), h("td", { class: "num" }, counts.original), transcript);
      }
      const live = c.live ? s.interpreters[c.live] : null;
      const liveCell = c.live ? h("td", { class: "live" },
        h("strong", {}, "● ", CH.nameOf(c.live)),
        c.cough ? h("small", {}, ` ${hc.t("ch.cough")}`) : null,
        c.away ? h("small", { class: "warn" }, ` ${hc.t("ch.away")}`) : null,
        live && live.input !== "floor" ? h("small", {}, ` · ${hc.t("board.relay", { lang: live.input })}`) : null,
        live && live.out !== lang ? h("small", {}, ` · ${hc.t("ch.retour", { lang: live.out })}`) : null,
        h("button", { class: "small ghost", onclick: () => CH.quiet("booth.clear", { lang }) },
          hc.t("board.clear")))
        : h("td", { class: "muted" }, hc.t("board.nobody"), c.last_off ? h("small", {}, " · ",
          hc.t("board.last_off", { name: CH.nameOf(c.last_off.pid),
            reason: hc.t(`reason.${c.last_off.reason}`) })) : null);
      const ho = c.handover;
      const hoCell = h("td", {}, ho ? hc.t(ho.kind === "request" ? "board.asks" : "board.offers",
        { a: CH.nameOf(ho.asker), b: CH.nameOf(ho.answerer) }) : "");
      const members = Object.values(s.interpreters).filter((i) => i.booth === lang);
      const boothCell = h("td", {}, ...members.map((i) => h("span", {
        class: `member ${CH.online(i.pid) ? "online" : "offline"}` }, CH.nameOf(i.pid))));
      return h("tr", { dataset: { lang, live: c.live || "" } }, h("th", {}, CH.langLabel(lang)),
        liveCell, hoCell, boothCell, h("td", { class: "num" }, counts[lang]), transcript);
    });
    table.tBodies[0].replaceChildren(...rows);
    const sig = [...s.signals].reverse().slice(0, 5);
    document.getElementById("board-signals").replaceChildren(
      h("h3", {}, hc.t("board.signals")),
      sig.length ? h("ul", { class: "plain" }, ...sig.map((x) => h("li", { dataset: { preset: x.preset } },
        h("small", {}, hc.time(x.ts, { second: "2-digit" }), " "),
        hc.t("signal.from", { lang: hc.langName(x.lang), text: hc.t(`preset.${x.preset}`) }),
        h("small", {}, ` (${CH.nameOf(x.pid)})`))))
        : h("p", { class: "muted" }, hc.t("board.no_signals")));
    document.getElementById("channel-add-input").placeholder = hc.t("board.add_placeholder");
    const chats = document.getElementById("board-chats");
    const boxes = ["all", ...Object.keys(s.channels)].map((k) => CH.chatBox(`chat-${k}`,
      k === "all" ? hc.t("chat.all") : hc.t("chat.booth", { lang: k }), s.chats[k], k));
    for (const b of boxes) if (b.parentNode !== chats) chats.append(b);
  }

  // --- booth signals shown to the chair and the speakers -------------------------------------
  let signalTimer = null;
  function renderSignal(hc) {
    let banner = document.getElementById("booth-signal");
    if (!banner) {
      banner = h("div", { id: "booth-signal", class: "booth-signal", role: "alert" });
      document.querySelector("main").before(banner);
    }
    if (hc.you.role === "interpreter") { banner.hidden = true; return; }
    const recent = hc.state.channels.signals.filter((x) => hc.now() - x.ts < SIGNAL_SHOW_MS);
    const last = recent[recent.length - 1];
    banner.hidden = !last;
    banner.textContent = last
      ? hc.t("signal.from", { lang: hc.langName(last.lang), text: hc.t(`preset.${last.preset}`) })
      : "";
    if (last) banner.dataset.preset = last.preset;
    clearTimeout(signalTimer);
    if (last) signalTimer = setTimeout(() => hc.render(), SIGNAL_SHOW_MS - (hc.now() - last.ts) + 50);
  }

  HC.register({
    name: "channels", appliers,
    init(hc) {
      const role = hc.you.role;
      if (role !== "interpreter") initListener(hc);
      if (role === "captioner") initCaptioner(hc);
      if (role === "moderator") initBoard(hc);
    },
    render(hc) {
      const role = hc.you.role;
      if (role !== "interpreter") renderListener(hc);
      if (role === "captioner") renderCaptioner(hc);
      if (role === "moderator") renderBoard(hc);
      renderSignal(hc);
    },
  });
})();
