// The interpreter console (ISO 20109 §5.7–5.11): one screen, keyboard first.
//
// What it promises: the air is only asked for with a publishing microphone (taking the air,
// asking for a handover and accepting an offer first await HC.audio.publishMic(); a refusal
// of the microphone is a prompt, and no command is sent); "ON AIR" is shown only while the
// microphone publishes, with its level beside it and a warning after SILENCE_MS of silence;
// the input (floor or relay) plays as soon as the console opens; off air, the live partner
// is heard underneath; a handover asked of you moves focus to Accept with a beep.
// Controls are built once and only updated in place (text, hidden, attributes), so focus
// never drops to <body>; when the focused control hides (its action is done) focus moves to
// the next action of the new state (FOCUS_ORDER). Access keys are unique (KEYS), shown on the
// page and listed in README.md ("Interpretation").
"use strict";

(() => {
  const { h } = HC;
  const CH = window.HCChannels;
  const COUGH_KEY = "F9";
  const SILENCE_MS = 3000;
  const SILENCE_DB = -55; // dBFS under which the microphone counts as silent
  const PARTNER_UNDER = 80; // % volume of the live partner heard underneath while off air
  // id → its shortcut, Alt + the letter (matched by e.code, so it works on every keyboard
  // layout and on macOS, where Option+letter types a symbol). Handled here rather than by
  // the accesskey attribute, whose modifiers differ per browser and which Chromium ignores
  // for synthetic keys. Alt+D, E, F and H are the browsers' own: not used.
  const KEYS = {
    "air-take": "t", "handover-request": "r", "handover-offer": "g", "handover-accept": "a",
    "handover-decline": "n", "handover-cancel": "x", "air-release": "o", "booth-input": "i",
    "booth-output": "s", "console-mic": "m",
  };
  // After an action hides the focused control, focus goes to the first visible one here.
  const FOCUS_ORDER = ["handover-accept", "air-take", "handover-request", "handover-offer",
    "handover-cancel", "console-mic", "air-release"];

  const C = { coughing: false, silentSince: null, beeps: 0, promptedFor: null, busy: false,
    lastFocus: null };
  HC.booth = C; // tests read beeps and the silence clock

  const $ = (id) => document.getElementById(id);
  const me = () => HC.state.channels.interpreters[HC.you.pid];
  const channel = () => { const m = me(); return m && HC.state.channels.channels[m.booth]; };
  const live = () => { const c = channel(); return Boolean(c && c.live === HC.you.pid); };

  const cough = (on) => {
    if (C.coughing === on) return;
    C.coughing = on;
    if (on && !live()) { C.coughing = false; return; }
    HC.command("booth.cough", { on }).catch((e) => { if (on) HC.explain(e); });
    HC.render();
  };

  // A short two-tone cue (WebAudio): a handover is asked of you.
  function beep() {
    C.beeps += 1;
    try {
      const ctx = HC.audio.context();
      const gain = ctx.createGain();
      gain.gain.value = 0.15;
      gain.connect(ctx.destination);
      [880, 1320].forEach((f, i) => {
        const osc = ctx.createOscillator();
        osc.frequency.value = f;
        osc.connect(gain);
        osc.start(ctx.currentTime + i * 0.16);
        osc.stop(ctx.currentTime + i * 0.16 + 0.12);
      });
    } catch (e) { console.warn("beep", e); }
  }

  // Start (or check) the microphone; false and a prompt when it does not publish.
  async function withMic() {
    const ok = await HC.audio.publishMic(HC);
    const prompt = $("mic-prompt");
    prompt.hidden = ok;
    if (!ok) prompt.textContent = HC.t(`console.mic_${HC.audio.micError || "failed"}`);
    HC.render();
    return ok;
  }

  // Commands that put me on air (or may: a request is accepted by the live partner).
  const airAction = (name) => async () => {
    if (C.busy) return;
    C.busy = true;
    try {
      // A sign-language booth's air is its camera (static/stage.js), not a microphone.
      const sign = (HC.state.channels.sign || []).includes(HC.you.booth);
      if (!sign && !(await withMic())) return;
      await CH.quiet(name, {});
    } finally { C.busy = false; HC.render(); }
  };
  const act = (name) => () => CH.quiet(name, {});

  const shortcut = (id) => KEYS[id] && `Alt+${KEYS[id].toUpperCase()}`;
  const btn = (id, key, onclick, cls, extra) => h("button", { id, type: "button", onclick,
    class: cls, "aria-keyshortcuts": shortcut(id), "data-t": key, ...extra }, HC.t(key));

  // Alt+letter: focus the control (so focus follows the action), then press it.
  function onShortcut(e) {
    if (!e.altKey || e.ctrlKey || e.metaKey || e.repeat) return;
    const id = Object.keys(KEYS).find((k) => e.code === `Key${KEYS[k].toUpperCase()}`);
    const el = id && $(id);
    if (!el) return;
    e.preventDefault();
    if (!visible(el) || el.getAttribute("aria-disabled") === "true") return;
    el.focus();
    if (el.tagName === "BUTTON") el.click();
  }

  function init(hc) {
    if (hc.you.role !== "interpreter") return;
    document.body.classList.add("console-page");
    const coughBtn = h("button", { id: "cough", type: "button", class: "cough",
      "aria-pressed": "false", "aria-keyshortcuts": COUGH_KEY, "data-t": "booth.cough" },
    hc.t("booth.cough"));
    coughBtn.addEventListener("pointerdown", (e) => { e.preventDefault(); cough(true); });
    for (const ev of ["pointerup", "pointerleave", "pointercancel"]) {
      coughBtn.addEventListener(ev, () => cough(false));
    }
    coughBtn.addEventListener("keydown", (e) => {
      if (e.key === " " || e.key === "Enter") { e.preventDefault(); if (!e.repeat) cough(true); }
    });
    coughBtn.addEventListener("keyup", (e) => {
      if (e.key === " " || e.key === "Enter") { e.preventDefault(); cough(false); }
    });
    window.addEventListener("keydown", (e) => {
      if (e.key === COUGH_KEY) { e.preventDefault(); if (!e.repeat) cough(true); }
    });
    window.addEventListener("keyup", (e) => { if (e.key === COUGH_KEY) cough(false); });
    window.addEventListener("blur", () => cough(false));
    window.addEventListener("keydown", onShortcut);

    const select = (id, cmd, arg) => h("select", { id, "aria-keyshortcuts": shortcut(id),
      onchange: (e) => CH.quiet(cmd, { [arg]: e.target.value }).then(() => hc.render()) });
    const input = select("booth-input", "booth.input", "input");
    const output = select("booth-output", "booth.output", "lang");
    const caption = h("input", { id: "booth-caption", maxlength: 1024 });
    const stage = h("div", { id: "console-stage", class: "console-stage" });
    const section = h("section", { id: "booth-console", class: "wide console",
      "aria-labelledby": "booth-h" },
    stage,
    h("div", { class: "console-main" },
      h("h2", { id: "booth-h" }),
      h("div", { class: "console-langs" },
        h("label", { class: "lang-box" }, h("span", { "data-t": "booth.input" }, hc.t("booth.input")),
          input),
        h("span", { class: "lang-arrow", "aria-hidden": "true" }, "→"),
        h("label", { class: "lang-box" }, h("span", { "data-t": "booth.output" }, hc.t("booth.output")),
          output)),
      h("p", { id: "console-hearing", class: "console-hearing", role: "status" }),
      h("div", { id: "onair-bar", class: "onair-bar" },
        h("div", { id: "onair", class: "onair off", role: "status", "aria-live": "polite" }),
        h("label", { class: "mic-level" },
          h("span", { "data-t": "console.input_level" }, hc.t("console.input_level")),
          h("meter", { id: "console-mic-meter", min: 0, max: 100, low: 20, optimum: 60, value: 0 })),
        h("span", { id: "air-time", class: "air-time", hidden: true })),
      h("p", { id: "silence-warning", class: "warning", role: "alert", hidden: true }),
      h("p", { id: "mic-prompt", class: "warning", role: "alert", hidden: true }),
      h("div", { id: "handover-prompt", class: "handover-prompt", hidden: true },
        h("span", { id: "handover-text", role: "status" }), " ",
        h("span", { id: "handover-countdown", class: "ho-countdown" }), " ",
        btn("handover-accept", "booth.accept", () => {
          const c = channel();
          const ho = c && c.handover;
          // Accepting an offer puts me on air: the microphone first. Accepting a request
          // hands my air to the asker, who started theirs before asking.
          (ho && ho.kind === "offer" ? airAction("handover.accept") : act("handover.accept"))();
        }, "", { "aria-describedby": "handover-text handover-countdown" }),
        btn("handover-decline", "booth.decline", act("handover.decline"), "ghost")),
      h("div", { class: "actions console-actions" },
        btn("air-take", "booth.take", airAction("air.take"), "primary"),
        btn("handover-request", "booth.request", airAction("handover.request"), "primary"),
        btn("handover-offer", "booth.offer", act("handover.offer")),
        btn("handover-cancel", "booth.cancel", act("handover.cancel"), "ghost"),
        btn("console-mic", "console.mic_on", () => withMic()),
        btn("air-release", "booth.release", act("air.release"), "ghost"),
        coughBtn),
      h("p", { class: "keys", id: "console-keys" }),
      h("div", { class: "actions presets", role: "group", "aria-labelledby": "presets-h" },
        h("span", { id: "presets-h", class: "presets-h", "data-t": "booth.presets" }, hc.t("booth.presets")),
        ...CH.PRESETS.map((p) => h("button", { type: "button", class: "ghost small",
          dataset: { preset: p }, onclick: () => CH.quiet("booth.signal", { preset: p }) },
        hc.t(`preset.${p}`)))),
      h("form", { id: "booth-caption-form", onsubmit: (e) => {
        e.preventDefault();
        if (!caption.value.trim()) return;
        CH.quiet("caption.post", { lang: me().booth, text: caption.value })
          .then((r) => { if (r) caption.value = ""; });
      } }, h("label", { for: "booth-caption", "data-t": "booth.caption" }, hc.t("booth.caption")),
      caption)),
    h("div", { class: "console-side" },
      h("p", { id: "booth-listeners", class: "listeners" }),
      h("h3", { "data-t": "booth.partners" }, hc.t("booth.partners")),
      h("ul", { id: "booth-partners", class: "plain" }),
      h("div", { id: "booth-chats", class: "chats" })));
    document.getElementById("features").append(section);
    section.addEventListener("focusin", (e) => { C.lastFocus = e.target.id || null; });
    if (HC.stage && typeof HC.stage.mount === "function") HC.stage.mount(stage, { mode: "speaker" });
    HC.audio.listen(); // the input plays at once (after a first gesture if autoplay is blocked)
    setInterval(tick, 100);
  }

  // Meters, clocks and the silence watch: numbers and attributes only, never new nodes.
  function tick() {
    if (!HC.state || !me()) return;
    const db = HC.audio.micDb();
    $("console-mic-meter").value = Math.max(0, Math.min(100, (db + 60) * (100 / 60)));
    const c = channel();
    const onAir = live() && HC.audio.publishing();
    if (onAir && !c.cough && db < SILENCE_DB) C.silentSince ??= Date.now();
    else C.silentSince = null;
    const silent = C.silentSince !== null && Date.now() - C.silentSince >= SILENCE_MS;
    const warn = $("silence-warning");
    if (warn.hidden === silent) {
      warn.hidden = !silent;
      warn.textContent = silent ? HC.t("console.silence") : "";
    }
    const time = $("air-time");
    time.hidden = !live() || !c.since;
    const aired = time.hidden ? "" : HC.t("console.air_time", { time: clock(HC.now() - c.since) });
    if (time.textContent !== aired) time.textContent = aired;
    const ho = c && c.handover;
    const left = ho ? Math.max(0, Math.ceil((ho.expires - HC.now()) / 1000)) : 0;
    const cd = $("handover-countdown");
    const text = ho ? HC.plural("console.expires", left) : "";
    if (cd.textContent !== text) cd.textContent = text;
  }

  const clock = (ms) => {
    const s = Math.max(0, Math.floor(ms / 1000));
    const mm = String(Math.floor(s / 60) % 60).padStart(2, "0");
    const ss = String(s % 60).padStart(2, "0");
    return s >= 3600 ? `${Math.floor(s / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
  };

  // Rebuild a select only when its options change, so keyboard use is not interrupted.
  function options(select, pairs, value) {
    const key = JSON.stringify(pairs);
    if (select.dataset.key !== key) {
      select.replaceChildren(...pairs.map(([v, label]) => h("option", { value: v }, label)));
      select.dataset.key = key;
    }
    if (document.activeElement !== select) select.value = value;
  }

  const visible = (el) => el && !el.hidden && !el.disabled && el.offsetParent !== null;

  // Focus stays where the keyboard user is; if that control just hid (its action is done),
  // it goes to the next action. A click elsewhere (focus on <body>, the control still shown)
  // is left alone.
  function keepFocus() {
    const active = document.activeElement;
    if (active && active !== document.body) {
      if (visible(active) || !active.closest("#booth-console")) return;
    } else {
      const last = C.lastFocus && $(C.lastFocus);
      if (!last || visible(last)) return;
    }
    const next = FOCUS_ORDER.map($).find(visible);
    if (next) next.focus();
  }

  function render(hc) {
    if (hc.you.role !== "interpreter") return;
    const s = hc.state.channels;
    const mine = me();
    const section = $("booth-console");
    const heading = $("booth-h");
    const c = mine && s.channels[mine.booth];
    if (!mine || !c) {
      heading.textContent = hc.t("booth.none");
      section.classList.add("empty");
      return;
    }
    section.classList.remove("empty");
    heading.textContent = hc.t("booth.title", { lang: hc.langName(mine.booth) });
    const isLive = c.live === hc.you.pid;
    const publishing = HC.audio.publishing();
    const free = !c.live || c.away;
    const onair = $("onair");
    const state = isLive ? (publishing ? (c.cough ? "coughing" : "live") : "dead") : "off";
    onair.className = `onair ${state}`;
    onair.dataset.live = c.live || "";
    onair.dataset.state = state;
    const words = {
      live: `● ${hc.t("booth.on_air")}`,
      coughing: `● ${hc.t("booth.on_air")} · ${hc.t("ch.cough")}`,
      dead: hc.t("console.dead_air"),
      off: c.live ? `${hc.t("booth.off_air")} · ${hc.t("booth.partner_live", { name: CH.nameOf(c.live) })}`
        : hc.t(s.fallback === "silence" ? "booth.free_silence" : "booth.free"),
    };
    if (onair.textContent !== words[state]) onair.textContent = words[state];

    const ho = c.handover;
    const toMe = Boolean(ho && ho.answerer === hc.you.pid);
    const fromMe = Boolean(ho && ho.asker === hc.you.pid);
    $("handover-prompt").hidden = !toMe && !fromMe;
    $("handover-text").textContent = toMe
      ? hc.t(ho.kind === "request" ? "booth.asks_you" : "booth.offers_you", { name: CH.nameOf(ho.asker) })
      : fromMe ? hc.t("booth.waiting", { name: CH.nameOf(ho.answerer) }) : "";
    $("handover-accept").hidden = !toMe;
    $("handover-decline").hidden = !toMe;
    const show = (id, on) => { $(id).hidden = !on; };
    show("air-take", !isLive && free);
    show("handover-request", !isLive && !free && !ho);
    show("handover-offer", isLive && !ho);
    show("handover-cancel", fromMe);
    show("air-release", isLive);
    const micBtn = $("console-mic");
    micBtn.hidden = publishing || (!isLive && !HC.audio.wantMic);
    const coughBtn = $("cough");
    coughBtn.disabled = !isLive;
    coughBtn.setAttribute("aria-pressed", c.cough ? "true" : "false");
    coughBtn.classList.toggle("held", Boolean(c.cough));
    // Busy (starting the microphone): aria-disabled, not disabled, which would drop focus.
    for (const id of ["air-take", "handover-request", "handover-accept"]) {
      $(id).setAttribute("aria-disabled", C.busy ? "true" : "false");
    }
    if (publishing) $("mic-prompt").hidden = true;

    // The partner on air underneath while I am off air (the server routes it so).
    const wantUnder = !isLive && Boolean(c.live) ? PARTNER_UNDER : 0;
    if (HC.audio.under !== wantUnder) HC.audio.setUnder(wantUnder);

    const hearing = $("console-hearing");
    const heard = HC.audio.blocked ? hc.t("console.autoplay")
      : hc.t("console.hearing", { what: mine.input === "floor"
        ? `${hc.t("booth.floor")} (${hc.langName(s.floor)})` : hc.langName(mine.input) })
        + (wantUnder ? ` · ${hc.t("console.partner_under", { name: CH.nameOf(c.live) })}` : "");
    if (hearing.textContent !== heard) hearing.textContent = heard;
    hearing.classList.toggle("warning", Boolean(HC.audio.blocked));

    const keys = hc.t("console.keys", { take: "Alt+T", request: "Alt+R", give: "Alt+G",
      accept: "Alt+A", decline: "Alt+N", cancel: "Alt+X", off: "Alt+O", cough: COUGH_KEY,
      input: "Alt+I", output: "Alt+S", mic: "Alt+M" });
    if ($("console-keys").textContent !== keys) $("console-keys").textContent = keys;

    $("booth-listeners").textContent =
      hc.plural("booth.listeners", CH.listeners(hc.state)[mine.booth] ?? 0);
    const sources = ["floor", ...Object.keys(s.channels).filter((l) => l !== mine.booth)];
    options($("booth-input"), sources.map((l) => {
      const on = s.channels[l]?.live;
      return [l, l === "floor" ? `${hc.t("booth.floor")} — ${hc.langName(s.floor)}`
        : hc.t("booth.relay", { lang: hc.langName(l) }) + (on ? ` — ${CH.nameOf(on)}` : "")];
    }), mine.input);
    options($("booth-output"), mine.pair.map((l) => [l, hc.langName(l)]), mine.out);

    const partners = Object.values(s.interpreters).filter((i) => i.booth === mine.booth);
    const list = $("booth-partners");
    const sig = JSON.stringify(partners.map((i) => [i.pid, CH.online(i.pid), c.live, c.away, hc.lang]));
    if (list.dataset.sig !== sig) {
      list.dataset.sig = sig;
      list.replaceChildren(...partners.map((i) => h("li",
        { dataset: { pid: i.pid }, class: CH.online(i.pid) ? "online" : "offline" },
        i.pid === c.live ? "● " : "○ ", CH.nameOf(i.pid),
        i.pid === hc.you.pid ? ` (${hc.t("you")})` : "",
        h("small", {}, " · ", hc.t(CH.online(i.pid) ? "booth.online" : "booth.offline"),
          i.pid === c.live ? ` · ${hc.t("booth.live_mark")}` : "",
          c.away && c.away.pid === i.pid ? ` · ${hc.t("booth.away", {
            time: hc.time(c.away.until) })}` : ""))));
    }
    $("booth-caption").disabled = !isLive;
    const chats = $("booth-chats");
    for (const box of [
      CH.chatBox("booth-chat", hc.t("chat.booth", { lang: mine.booth }), s.chats[mine.booth], "booth"),
      CH.chatBox("all-chat", hc.t("chat.all"), s.chats.all, "all"),
    ]) if (box.parentNode !== chats) chats.append(box);

    // A handover asked of me: the cue and Accept focused, once per request.
    const askId = toMe ? `${ho.asker}:${ho.ts}` : null;
    if (askId && C.promptedFor !== askId) {
      C.promptedFor = askId;
      beep();
      $("handover-accept").focus();
      C.lastFocus = "handover-accept";
    }
    keepFocus();
    tick();
  }

  HC.register({ name: "booth", init, render });
})();
