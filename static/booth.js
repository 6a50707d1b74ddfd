// The interpreter console (ISO 20109 §5.7–5.11): on-air state, handover, input (floor or
// relay), outgoing language, cough (hold the button, Space/Enter on it, or F9 anywhere),
// presets to the chair, listener count, booth and all-interpreters chats, captions.
// Everything is a native button, select or input: usable with the keyboard alone.
"use strict";

(() => {
  const { h } = HC;
  const CH = window.HCChannels;
  const COUGH_KEY = "F9";

  let coughing = false;
  const cough = (on) => {
    if (coughing === on) return;
    coughing = on;
    const c = HC.state.channels.channels[HC.you.booth];
    if (on && (!c || c.live !== HC.you.pid)) { coughing = false; return; }
    HC.command("booth.cough", { on }).catch((e) => { if (on) HC.explain(e); });
    HC.render();
  };

  const btn = (id, key, onclick, accesskey) =>
    h("button", { id, type: "button", onclick, accesskey, "data-t": key }, HC.t(key));

  function init(hc) {
    if (hc.you.role !== "interpreter") return;
    const me = () => hc.state.channels.interpreters[hc.you.pid];
    const act = (name) => () => CH.quiet(name, {});
    const coughBtn = h("button", { id: "cough", type: "button", class: "cough",
      "aria-pressed": "false" }, hc.t("booth.cough"));
    coughBtn.addEventListener("pointerdown", (e) => { e.preventDefault(); cough(true); });
    for (const ev of ["pointerup", "pointerleave", "pointercancel"]) {
      coughBtn.addEventListener(ev, () => cough(false));
    }
    coughBtn.addEventListener("keydown", (e) => {
      if (e.key === " " || e.key === "Enter") { e.preventDefault(); cough(true); }
    });
    coughBtn.addEventListener("keyup", (e) => {
      if (e.key === " " || e.key === "Enter") { e.preventDefault(); cough(false); }
    });
    window.addEventListener("keydown", (e) => {
      if (e.key === COUGH_KEY) { e.preventDefault(); if (!e.repeat) cough(true); }
    });
    window.addEventListener("keyup", (e) => { if (e.key === COUGH_KEY) cough(false); });
    window.addEventListener("blur", () => cough(false));

    const input = h("select", { id: "booth-input", onchange: (e) =>
      CH.quiet("booth.input", { input: e.target.value }).then(() => hc.render()) });
    const output = h("select", { id: "booth-output", onchange: (e) =>
      CH.quiet("booth.output", { lang: e.target.value }).then(() => hc.render()) });
    const caption = h("input", { id: "booth-caption", maxlength: 1024 });
    document.getElementById("features").append(h("section", { id: "booth-console",
      class: "wide console", "aria-labelledby": "booth-h" },
      h("h2", { id: "booth-h" }),
      h("div", { id: "onair", class: "onair", role: "status", "aria-live": "assertive" }),
      h("div", { id: "handover-prompt", class: "handover-prompt", role: "alert", hidden: true },
        h("span", { id: "handover-text" }), " ",
        btn("handover-accept", "booth.accept", act("handover.accept"), "a"),
        btn("handover-decline", "booth.decline", act("handover.decline"), "d")),
      h("div", { class: "actions" },
        btn("air-take", "booth.take", act("air.take"), "t"),
        btn("handover-request", "booth.request", act("handover.request"), "h"),
        btn("handover-offer", "booth.offer", act("handover.offer"), "h"),
        btn("handover-cancel", "booth.cancel", act("handover.cancel"), "x"),
        btn("air-release", "booth.release", act("air.release"), "o"),
        coughBtn, h("small", { "data-t": "booth.cough_hint" }, hc.t("booth.cough_hint"))),
      h("p", { id: "booth-listeners", class: "listeners" }),
      h("div", { class: "row" },
        h("label", {}, h("span", { "data-t": "booth.input" }, hc.t("booth.input")), " ", input),
        h("label", {}, h("span", { "data-t": "booth.output" }, hc.t("booth.output")), " ", output)),
      h("h3", { "data-t": "booth.partners" }, hc.t("booth.partners")),
      h("ul", { id: "booth-partners", class: "plain" }),
      h("h3", { "data-t": "booth.presets" }, hc.t("booth.presets")),
      h("div", { class: "actions presets" }, ...CH.PRESETS.map((p) => h("button", {
        type: "button", class: "ghost", dataset: { preset: p },
        onclick: () => CH.quiet("booth.signal", { preset: p }) }, hc.t(`preset.${p}`)))),
      h("form", { id: "booth-caption-form", onsubmit: (e) => {
        e.preventDefault();
        if (!caption.value.trim()) return;
        CH.quiet("caption.post", { lang: me().booth, text: caption.value })
          .then((r) => { if (r) caption.value = ""; });
      } }, h("label", { for: "booth-caption", "data-t": "booth.caption" }, hc.t("booth.caption")),
        caption),
      h("div", { id: "booth-chats", class: "chats" })));
  }

  // Rebuild a select only when its options change, so keyboard use is not interrupted.
  function options(select, pairs, value) {
    const key = JSON.stringify(pairs);
    if (select.dataset.key !== key) {
      select.replaceChildren(...pairs.map(([v, label]) => h("option", { value: v }, label)));
      select.dataset.key = key;
    }
    if (document.activeElement !== select) select.value = value;
  }

  function render(hc) {
    if (hc.you.role !== "interpreter") return;
    const s = hc.state.channels;
    const me = s.interpreters[hc.you.pid];
    const section = document.getElementById("booth-console");
    const heading = document.getElementById("booth-h");
    const c = me && s.channels[me.booth];
    if (!me || !c) {
      heading.textContent = hc.t("booth.none");
      for (const el of section.children) if (el !== heading) el.hidden = true;
      return;
    }
    for (const el of section.children) if (el.id !== "handover-prompt") el.hidden = false;
    heading.textContent = hc.t("booth.title", { lang: hc.langName(me.booth) });
    const mine = c.live === hc.you.pid;
    const free = !c.live || c.away;
    const onair = document.getElementById("onair");
    onair.className = `onair ${mine ? "live" : "off"}${mine && c.cough ? " coughing" : ""}`;
    onair.dataset.live = c.live || "";
    onair.textContent = mine ? `● ${hc.t("booth.on_air")}${c.cough ? ` · ${hc.t("ch.cough")}` : ""}`
      : c.live ? `${hc.t("booth.off_air")} · ${hc.t("booth.partner_live", { name: CH.nameOf(c.live) })}`
        : hc.t(s.fallback === "silence" ? "booth.free_silence" : "booth.free");
    const ho = c.handover;
    const toMe = ho && ho.answerer === hc.you.pid;
    const fromMe = ho && ho.asker === hc.you.pid;
    const prompt = document.getElementById("handover-prompt");
    prompt.hidden = !toMe && !fromMe;
    document.getElementById("handover-text").textContent = toMe
      ? hc.t(ho.kind === "request" ? "booth.asks_you" : "booth.offers_you", { name: CH.nameOf(ho.asker) })
      : fromMe ? hc.t("booth.waiting", { name: CH.nameOf(ho.answerer) }) : "";
    document.getElementById("handover-accept").hidden = !toMe;
    document.getElementById("handover-decline").hidden = !toMe;
    const show = (id, on) => { document.getElementById(id).hidden = !on; };
    show("air-take", !mine && free);
    show("handover-request", !mine && !free && !ho);
    show("handover-offer", mine && !ho);
    show("handover-cancel", Boolean(fromMe));
    show("air-release", mine);
    const coughBtn = document.getElementById("cough");
    coughBtn.disabled = !mine;
    coughBtn.setAttribute("aria-pressed", c.cough ? "true" : "false");
    coughBtn.classList.toggle("held", Boolean(c.cough));
    document.getElementById("booth-listeners").textContent =
      hc.plural("booth.listeners", CH.listeners(hc.state)[me.booth] ?? 0);

    const input = document.getElementById("booth-input");
    const sources = ["floor", ...Object.keys(s.channels).filter((l) => l !== me.booth)];
    options(input, sources.map((l) => {
      const live = s.channels[l]?.live;
      return [l, l === "floor" ? hc.t("booth.floor")
        : hc.t("booth.relay", { lang: hc.langName(l) }) + (live ? ` — ${CH.nameOf(live)}` : "")];
    }), me.input);
    options(document.getElementById("booth-output"),
      me.pair.map((l) => [l, CH.langLabel(l)]), me.out);

    const partners = Object.values(s.interpreters).filter((i) => i.booth === me.booth);
    document.getElementById("booth-partners").replaceChildren(...partners.map((i) => h("li",
      { dataset: { pid: i.pid }, class: CH.online(i.pid) ? "online" : "offline" },
      i.pid === c.live ? "● " : "○ ", CH.nameOf(i.pid),
      i.pid === hc.you.pid ? ` (${hc.t("you")})` : "",
      h("small", {}, " · ", hc.t(CH.online(i.pid) ? "booth.online" : "booth.offline"),
        i.pid === c.live ? ` · ${hc.t("booth.live_mark")}` : "",
        c.away && c.away.pid === i.pid ? ` · ${hc.t("booth.away", {
          time: hc.time(c.away.until) })}` : ""))));
    const caption = document.getElementById("booth-caption");
    caption.disabled = !mine;
    const chats = document.getElementById("booth-chats");
    for (const box of [
      CH.chatBox("booth-chat", hc.t("chat.booth", { lang: me.booth }), s.chats[me.booth], "booth"),
      CH.chatBox("all-chat", hc.t("chat.all"), s.chats.all, "all"),
    ]) if (box.parentNode !== chats) chats.append(box);
  }

  HC.register({ name: "booth", init, render });
})();
