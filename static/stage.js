// The stage: who is seen, laid out as the chair chose (speaker + strip, a grid for a panel,
// the shared screen with the speaker beside it), the chair's pin for everyone, this viewer's
// own pin (click or Enter on a tile), the screen share, and the sign-language channel this
// viewer picked, pinned beside the stage at the size they chose.
// Appliers and queries mirror server/stage.py. Video goes through static/video.js (HC.video):
// only the tiles on screen are asked for (show), the small ones in the low quality ("l"); a
// tile that leaves the screen is hidden (hide), so the viewer receives nothing it does not
// display (last-N). Without HC.video the tiles show names only.
// HC.stage.mount(el, {mode: "speaker"}) shows the active speaker alone, large (the
// interpreter console's #console-stage); the room page mounts {mode: "stage"} at the top.
"use strict";

(() => {
  const { h } = HC;
  const LAYOUTS = ["speaker", "grid", "screen"];
  const SIZES = ["small", "medium", "large"];
  const SIZE_QUALITY = { small: "l", medium: "m", large: "h" };
  const OFF_STAGE = ["interpreter", "captioner", "observer"];

  // --- appliers: mirrors of server/stage.py ---------------------------------------------------
  const appliers = {
    "stage.added": (s, ev) => { s.stage.panel.push(ev.pid); },
    "stage.removed": (s, ev) => { s.stage.panel = s.stage.panel.filter((p) => p !== ev.pid); },
    "stage.layout": (s, ev) => { s.stage.layout = ev.layout; },
    "stage.pinned": (s, ev) => { s.stage.pin = ev.target; },
    "share.started": (s, ev) => { s.stage.share = { pid: ev.pid, since: ev.ts }; },
    "share.stopped": (s) => { s.stage.share = null; },
  };

  // --- queries: mirrors of server/stage.py -----------------------------------------------------
  const online = (s, pid) => Boolean(s.core.people[pid]?.conns.length);
  function onStage(s) {
    const chair = Object.values(s.core.people)
      .filter((p) => p.role === "moderator" && p.conns.length).map((p) => p.pid);
    return [...new Set([...chair, ...s.stage.panel, ...s.core.speakers])];
  }
  function publishers(s) {
    const out = {};
    for (const pid of onStage(s)) out[pid] = new Set(["camera"]);
    if (s.stage.share) (out[s.stage.share.pid] ??= new Set()).add("screen");
    for (const lang of s.channels.sign || []) {
      const live = s.channels.channels[lang]?.live;
      if (live) (out[live] ??= new Set()).add(`sign:${lang}`);
    }
    return out;
  }
  const mayShare = (s, pid) => online(s, pid)
    && (s.core.people[pid].role === "moderator" || onStage(s).includes(pid));

  // --- this viewer: the active speaker (from the node), their pin, sign channel, sources ------
  const V = {
    speaker: null,
    pin: null, // this viewer's own pin: a pid or "screen"
    sign: localStorage.getItem("hc.sign") || "",
    size: SIZES.includes(localStorage.getItem("hc.sign.size")) ? localStorage.getItem("hc.sign.size") : "medium",
    sources: null, // the video sources flowing (HC.video.onsources), null: unknown
    mounts: [],
  };

  const nameOf = (pid) => HC.person(pid)?.name || pid || "";
  const signName = (code) => (HC.t(`sign.${code}`) !== `sign.${code}` ? HC.t(`sign.${code}`) : HC.langName(code));
  const sourceOf = (s, target) => target === "screen" ? `${s.stage.share.pid}:screen`
    : target.startsWith("sign:") ? target : `${target}:camera`;
  const labelOf = (s, target) => target === "screen"
    ? HC.t("stage.screen", { name: nameOf(s.stage.share.pid) })
    : target.startsWith("sign:") ? signName(target.slice(5)) : nameOf(target);

  // What is shown large: this viewer's pin, the chair's, the shared screen (screen layout),
  // the active speaker, the first on stage.
  function focus(s, on) {
    const valid = (t) => (t === "screen" ? Boolean(s.stage.share) : Boolean(t) && on.includes(t));
    if (valid(V.pin)) return V.pin;
    if (valid(s.stage.pin)) return s.stage.pin;
    if (s.stage.layout === "screen" && s.stage.share) return "screen";
    if (V.speaker && on.includes(V.speaker)) return V.speaker;
    return on[0] ?? (s.stage.share ? "screen" : null);
  }

  // The tiles of one mount: [{target, role: "main"|"beside"|"strip"|"cell", quality}].
  function plan(s, mode) {
    const on = onStage(s);
    if (mode === "speaker") { // the voice heard, else the chair's pin, else the first on stage
      const pinned = s.stage.pin && on.includes(s.stage.pin) ? s.stage.pin : null;
      const who = V.speaker && on.includes(V.speaker) ? V.speaker : pinned ?? on[0];
      return { layout: "speaker", tiles: who ? [{ target: who, role: "main", quality: "h" }] : [] };
    }
    const all = [...on, ...(s.stage.share ? ["screen"] : [])];
    const pinned = [V.pin, s.stage.pin].some((t) => t && all.includes(t));
    if (s.stage.layout === "grid" && !pinned) {
      const q = all.length <= 4 ? "m" : "l";
      return { layout: "grid", tiles: all.map((t) => ({ target: t, role: "cell", quality: q })) };
    }
    const main = focus(s, on);
    if (!main) return { layout: "speaker", tiles: [] };
    const tiles = [{ target: main, role: "main", quality: "h" }];
    let layout = "speaker";
    if (main === "screen") {
      layout = "screen";
      const beside = V.speaker && on.includes(V.speaker) ? V.speaker : on[0];
      if (beside) tiles.push({ target: beside, role: "beside", quality: "m" });
    }
    const shown = new Set(tiles.map((t) => t.target));
    for (const t of all) if (!shown.has(t)) tiles.push({ target: t, role: "strip", quality: "l" });
    return { layout, tiles };
  }

  // --- one mount: tiles kept by source, shown and hidden through HC.video ----------------------
  function tileFor(m, source) {
    let tile = m.tiles.get(source);
    if (tile) return tile;
    const video = h("video", { muted: true, autoplay: true, playsinline: true });
    video.muted = true;
    const el = h("figure", { class: "tile", dataset: { source } }, video,
      h("span", { class: "initials", "aria-hidden": "true" }), h("figcaption", {}));
    if (m.mode === "stage") {
      el.tabIndex = 0;
      el.setAttribute("role", "button");
      const toggle = () => { V.pin = V.pin === el.dataset.target ? null : el.dataset.target; HC.render(); };
      el.addEventListener("click", toggle);
      el.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggle(); }
      });
    }
    tile = { el, video, shown: null };
    m.tiles.set(source, tile);
    return tile;
  }

  // The viewing connection has a few tiles (assembly.video.max_tiles): the large ones are
  // asked first, the strip gets what is left; a tile past the budget shows its name.
  const maxTiles = () => (HC.assembly?.video || {}).max_tiles || 4;
  const allTiles = () => V.mounts.flatMap((m) => [...m.tiles.values(), ...(m.signTile ? [m.signTile] : [])]);
  function showVideo(tile, source, quality) {
    // "Audio only" or "captions only" (static/lowband.js): no tile asked, names shown.
    const flowing = HC.video && HC.reception?.video() !== false
      && (!V.sources || V.sources.has(source));
    const room = tile.shown || allTiles().filter((t) => t.shown).length < maxTiles();
    const want = flowing && room ? `${source}/${quality}` : null;
    tile.el.classList.toggle("novideo", !want);
    if (want === tile.shown) return;
    const quiet = (p) => Promise.resolve(p).catch((e) => console.warn("video", e));
    if (want) quiet(HC.video.show(tile.video, source, quality));
    else if (tile.shown) quiet(HC.video.hide(tile.video));
    tile.shown = want;
  }

  function dropTile(m, source) {
    const tile = m.tiles.get(source);
    if (tile.shown && HC.video) Promise.resolve(HC.video.hide(tile.video)).catch(() => {});
    tile.el.remove();
    m.tiles.delete(source);
  }

  function renderMount(m, s) {
    const { layout, tiles } = plan(s, m.mode);
    const keep = new Set(tiles.map((t) => sourceOf(s, t.target)));
    for (const source of [...m.tiles.keys()]) if (!keep.has(source)) dropTile(m, source);
    if (m.sign) renderSign(m, s); // before the strip: the signer is never left without a tile
    const wanted = [];
    for (const t of tiles) {
      const source = sourceOf(s, t.target);
      const tile = tileFor(m, source);
      const label = labelOf(s, t.target);
      tile.el.dataset.target = t.target;
      tile.el.dataset.role = t.role;
      tile.el.classList.toggle("speaking", t.target === V.speaker);
      tile.el.classList.toggle("pinned", t.target === V.pin || t.target === s.stage.pin);
      tile.el.querySelector("figcaption").textContent = label;
      tile.el.querySelector(".initials").textContent = label.split(/\s+/).map((w) => w[0] || "").join("").slice(0, 2);
      if (m.mode === "stage") {
        tile.el.setAttribute("aria-pressed", String(V.pin === t.target));
        tile.el.setAttribute("aria-label", HC.t(V.pin === t.target ? "stage.unpin" : "stage.pin", { name: label }));
      }
      showVideo(tile, source, t.quality);
      wanted.push(tile.el);
    }
    for (const source of [...m.tiles.keys()]) {
      if (!wanted.includes(m.tiles.get(source).el)) dropTile(m, source);
    }
    m.box.dataset.layout = layout;
    const main = wanted.filter((el) => el.dataset.role !== "strip");
    const strip = wanted.filter((el) => el.dataset.role === "strip");
    const focused = document.activeElement; // moving a tile blurs it: keyboard users keep it
    if (m.main.dataset.order !== main.map((el) => el.dataset.source).join()) {
      m.main.replaceChildren(...main);
      m.main.dataset.order = main.map((el) => el.dataset.source).join();
    }
    if (m.strip.dataset.order !== strip.map((el) => el.dataset.source).join()) {
      m.strip.replaceChildren(...strip);
      m.strip.dataset.order = strip.map((el) => el.dataset.source).join();
    }
    if (focused !== document.activeElement && focused?.isConnected) focused.focus();
    m.strip.hidden = !strip.length;
    m.empty.hidden = wanted.length > 0;
    m.empty.textContent = HC.t("stage.empty");
  }

  // The sign-language channel this viewer picked: its signer, beside the stage.
  function renderSign(m, s) {
    const signs = s.channels.sign || [];
    const code = signs.includes(V.sign) ? V.sign : "";
    m.sign.hidden = !code;
    m.sign.dataset.size = V.size;
    const source = code ? `sign:${code}` : null;
    const live = code ? s.channels.channels[code]?.live : null;
    if (m.signTile && m.signTile.el.dataset.source !== source) {
      if (m.signTile.shown && HC.video) Promise.resolve(HC.video.hide(m.signTile.video)).catch(() => {});
      m.signTile.el.remove();
      m.signTile = null;
    }
    if (!code) return;
    if (!m.signTile) {
      const video = h("video", { muted: true, autoplay: true, playsinline: true });
      video.muted = true;
      m.signTile = { el: h("figure", { class: "tile sign", dataset: { source } }, video,
        h("figcaption", {})), video, shown: null };
      m.sign.replaceChildren(m.signTile.el);
    }
    const caption = live ? `${signName(code)} — ${nameOf(live)}` : `${signName(code)} — ${HC.t("stage.sign.nobody")}`;
    m.signTile.el.querySelector("figcaption").textContent = caption;
    showVideo(m.signTile, source, SIZE_QUALITY[V.size]);
    if (!live) m.signTile.el.classList.add("novideo");
  }

  function mount(el, opts = {}) {
    const mode = opts.mode === "speaker" ? "speaker" : "stage";
    const box = h("div", { class: `stage stage-${mode}` });
    const main = h("div", { class: "stage-main" });
    const strip = h("div", { class: "stage-strip" });
    const empty = h("p", { class: "muted stage-empty" });
    const stageBox = h("div", { class: "stage-with-sign" }, box);
    box.append(main, strip, empty);
    const m = { el, mode, box, main, strip, empty, tiles: new Map(), sign: null, signTile: null };
    if (mode === "stage") {
      m.sign = h("aside", { class: "stage-sign", "aria-label": HC.t("stage.sign") });
      stageBox.append(m.sign);
    }
    el.append(stageBox);
    V.mounts.push(m);
    if (HC.state) renderMount(m, HC.state);
    return { unmount() { for (const s of [...m.tiles.keys()]) dropTile(m, s); V.mounts.splice(V.mounts.indexOf(m), 1); stageBox.remove(); } };
  }

  // --- the room page: the stage section, the viewer's buttons, the chair's controls ----------
  const quiet = (name, args) => HC.command(name, args).catch((e) => { HC.explain(e); return null; });

  async function publish(kind) {
    if (!HC.video) return;
    try { await HC.video.publish(kind); } catch (e) {
      console.warn("publish", kind, e);
      if (kind === "screen") await quiet("share.stop");
    }
    HC.render();
  }
  // What this page publishes is the video module's (a publisher the node closed is gone there).
  const isPub = (kind) => Boolean(HC.video?.state?.publishing?.[kind]);
  function unpublish(kind) {
    if (!isPub(kind)) return;
    try { HC.video.unpublish(kind); } catch (e) { console.warn("unpublish", kind, e); }
  }

  function select(id, onchange) {
    const el = h("select", { id, onchange: () => onchange(el.value) });
    return el;
  }
  function options(el, pairs) {
    const key = JSON.stringify(pairs);
    if (el.dataset.key === key) return;
    const keep = el.value;
    el.replaceChildren(...pairs.map(([v, text]) => h("option", { value: v }, text)));
    el.dataset.key = key;
    if (pairs.some(([v]) => v === keep)) el.value = keep;
  }

  function initSection(hc) {
    const section = h("section", { id: "stage-section", "aria-labelledby": "stage-h" },
      h("h2", { id: "stage-h", "data-t": "stage.title" }, hc.t("stage.title")));
    const host = h("div", { id: "stage-area" });
    const pinLine = h("p", { id: "stage-pin", class: "muted", role: "status", "aria-live": "polite" });
    const camera = h("button", { id: "stage-camera", class: "ghost", "aria-pressed": "false", hidden: true,
      onclick: () => (isPub("camera") ? unpublish("camera") : publish("camera")) });
    const share = h("button", { id: "stage-share", class: "ghost", hidden: true, onclick: async () => {
      const s = HC.state;
      if (s.stage.share?.pid === HC.you.pid) { unpublish("screen"); await quiet("share.stop"); }
      else if (await quiet("share.start")) await publish("screen");
    } });
    const sign = select("stage-sign-pick", (v) => { V.sign = v; localStorage.setItem("hc.sign", v); HC.render(); });
    const size = select("stage-sign-size", (v) => { V.size = v; localStorage.setItem("hc.sign.size", v); HC.render(); });
    const signBox = h("span", { id: "stage-sign-controls", hidden: true },
      h("label", {}, h("span", { "data-t": "stage.sign" }, hc.t("stage.sign")), " ", sign), " ",
      h("label", {}, h("span", { "data-t": "stage.sign.size" }, hc.t("stage.sign.size")), " ", size));
    section.append(host, pinLine, h("div", { class: "actions stage-actions" }, camera, share, signBox));
    if (hc.you.role === "moderator") section.append(initChair(hc));
    const main = document.querySelector("main") || document.body;
    main.prepend(section);
    mount(host, { mode: "stage" });
  }

  function initChair(hc) {
    const layout = select("stage-layout", (v) => quiet("stage.layout", { layout: v }));
    const pin = select("stage-pin-all", (v) => quiet("stage.pin", { target: v || null }));
    const add = select("stage-add-pick", () => {});
    return h("div", { id: "stage-controls", class: "stage-controls", role: "group", "aria-labelledby": "stage-controls-h" },
      h("h3", { id: "stage-controls-h", "data-t": "stage.controls" }, hc.t("stage.controls")),
      h("label", {}, h("span", { "data-t": "stage.layout" }, hc.t("stage.layout")), " ", layout), " ",
      h("label", {}, h("span", { "data-t": "stage.pin_all" }, hc.t("stage.pin_all")), " ", pin), " ",
      h("button", { id: "stage-stop-share", class: "ghost", hidden: true, "data-t": "stage.share.end",
        onclick: () => quiet("share.stop") }, hc.t("stage.share.end")),
      h("ul", { id: "stage-panel", class: "plain stage-panel", "aria-label": hc.t("stage.panel") }),
      h("label", {}, h("span", { "data-t": "stage.add_who" }, hc.t("stage.add_who")), " ", add), " ",
      h("button", { id: "stage-add", "data-t": "stage.add", onclick: () => {
        if (add.value) quiet("stage.add", { pid: add.value });
      } }, hc.t("stage.add")));
  }

  function renderSection(hc, s) {
    const me = hc.you.pid;
    const mine = publishers(s)[me] || new Set();
    // What this page publishes follows the room: off stage, the camera goes off; a share the
    // chair stopped ends here too.
    if (!mine.has("camera") && ![...mine].some((x) => x.startsWith("sign:"))) unpublish("camera");
    if (!mine.has("screen")) unpublish("screen");
    const camera = document.getElementById("stage-camera");
    camera.hidden = !HC.video || !mine.has("camera");
    camera.textContent = hc.t(isPub("camera") ? "stage.camera.off" : "stage.camera.on");
    camera.setAttribute("aria-pressed", String(isPub("camera")));
    const share = document.getElementById("stage-share");
    const sharing = s.stage.share?.pid === me;
    share.hidden = !HC.video || !(sharing || (mayShare(s, me) && !s.stage.share));
    share.textContent = hc.t(sharing ? "stage.share.stop" : "stage.share.start");
    const signs = s.channels.sign || [];
    document.getElementById("stage-sign-controls").hidden = !signs.length;
    const pick = document.getElementById("stage-sign-pick");
    options(pick, [["", hc.t("stage.sign.none")], ...signs.map((c) => [c, signName(c)])]);
    if (document.activeElement !== pick) pick.value = signs.includes(V.sign) ? V.sign : "";
    const size = document.getElementById("stage-sign-size");
    options(size, SIZES.map((z) => [z, hc.t(`stage.size.${z}`)]));
    size.value = V.size;
    const pinLine = document.getElementById("stage-pin");
    const on = onStage(s);
    const valid = (t) => (t === "screen" ? Boolean(s.stage.share) : Boolean(t) && on.includes(t));
    let text = "";
    if (valid(V.pin)) text = hc.t("stage.pinned_you", { name: labelOf(s, V.pin) });
    else if (valid(s.stage.pin)) text = hc.t("stage.pinned_chair", { name: labelOf(s, s.stage.pin) });
    pinLine.textContent = text;
    pinLine.hidden = !text;
    if (hc.you.role === "moderator") renderChair(hc, s, on);
  }

  function renderChair(hc, s, on) {
    const layout = document.getElementById("stage-layout");
    options(layout, LAYOUTS.map((l) => [l, hc.t(`stage.layout.${l}`)]));
    if (document.activeElement !== layout) layout.value = s.stage.layout;
    const pin = document.getElementById("stage-pin-all");
    options(pin, [["", hc.t("stage.pin_none")], ...on.map((p) => [p, nameOf(p)]),
      ...(s.stage.share ? [["screen", labelOf(s, "screen")]] : [])]);
    if (document.activeElement !== pin) pin.value = s.stage.pin ?? "";
    document.getElementById("stage-stop-share").hidden = !s.stage.share;
    const panel = document.getElementById("stage-panel");
    const key = s.stage.panel.join() + hc.lang;
    if (panel.dataset.key !== key) {
      panel.replaceChildren(...s.stage.panel.map((pid) => h("li", {}, nameOf(pid),
        h("button", { class: "small ghost", "aria-label": hc.t("stage.remove_who", { name: nameOf(pid) }),
          onclick: () => quiet("stage.remove", { pid }) }, hc.t("stage.remove")))));
      panel.dataset.key = key;
    }
    const add = document.getElementById("stage-add-pick");
    options(add, Object.values(s.core.people)
      .filter((p) => p.conns.length && !OFF_STAGE.includes(p.role) && p.role !== "moderator"
        && !s.stage.panel.includes(p.pid))
      .map((p) => [p.pid, p.name]));
  }

  // --- the module ----------------------------------------------------------------------------
  function init(hc) {
    V.speaker = hc.assembly?.speaker ?? null; // this node's floor speaker at the welcome
    if (HC.video?.onsources) {
      HC.video.onsources((list) => {
        V.sources = new Set(Array.isArray(list) || list instanceof Set ? list : Object.keys(list || {}));
        HC.render();
      });
    }
    if (hc.you.role === "interpreter") initSpeaker(hc);
    else if (hc.you.role !== "captioner") initSection(hc);
    if ((hc.state.channels.sign || []).includes(hc.you.booth)) initSigner(hc);
  }

  // An interpreter sees the speaker: in the console's #console-stage when the page has one
  // (it may come later than this module: render looks again), else in a section of its own.
  let speakerMount = null;
  function initSpeaker(hc) {
    const host = document.getElementById("console-stage");
    if (host) { speakerMount = { host, ctl: mount(host, { mode: "speaker" }) }; return; }
    const section = h("section", { id: "speaker-section", "aria-labelledby": "speaker-h" },
      h("h2", { id: "speaker-h", "data-t": "stage.speaker" }, hc.t("stage.speaker")));
    (document.querySelector("main") || document.body).prepend(section);
    speakerMount = { host: section, ctl: mount(section, { mode: "speaker" }) };
  }
  function followConsole() {
    const host = document.getElementById("console-stage");
    if (!speakerMount || !host || speakerMount.host === host) return;
    speakerMount.ctl.unmount();
    if (speakerMount.host.id === "speaker-section") speakerMount.host.remove();
    speakerMount = { host, ctl: mount(host, { mode: "speaker" }) };
  }

  // A sign interpreter: their camera goes into the channel while they are on air (booth rules).
  function initSigner(hc) {
    const camera = h("button", { id: "sign-camera", class: "ghost", "aria-pressed": "false",
      onclick: () => (isPub("camera") ? unpublish("camera") : publish("camera")) });
    const status = h("p", { id: "sign-status", class: "muted", role: "status", "aria-live": "polite" });
    (document.getElementById("features") || document.body).append(
      h("section", { id: "sign-section", "aria-labelledby": "sign-h" },
        h("h2", { id: "sign-h", "data-t": "stage.sign.camera" }, hc.t("stage.sign.camera")), status, camera));
  }

  function renderSigner(hc, s) {
    const code = hc.you.booth;
    const live = s.channels.channels[code]?.live === hc.you.pid;
    if (!live) unpublish("camera");
    const camera = document.getElementById("sign-camera");
    camera.hidden = !HC.video || !live;
    camera.textContent = hc.t(isPub("camera") ? "stage.camera.off" : "stage.camera.on");
    camera.setAttribute("aria-pressed", String(isPub("camera")));
    document.getElementById("sign-status").textContent =
      hc.t(live ? "stage.sign.on_air" : "stage.sign.off_air", { name: signName(code) });
  }

  function render(hc) {
    const s = hc.state;
    if (!s.stage) return;
    if (document.getElementById("stage-section")) renderSection(hc, s);
    if (document.getElementById("sign-section")) renderSigner(hc, s);
    followConsole();
    for (const m of V.mounts) renderMount(m, s);
  }

  function onMessage(hc, msg) {
    if (msg.type === "ephemeral" && msg.kind === "speaker") V.speaker = msg.pid || null;
  }

  HC.stage = { mount, onStage, publishers, view: V };
  HC.register({ name: "stage", appliers, init, render, onMessage });
})();
