// The interpreter console (ISO 20109 §5.7–5.11): on-air state, handover, input (floor or
// relay), outgoing language, cough (hold the button, Space/Enter on it, or F9 anywhere),
// presets to the chair, listener count, booth and all-interpreters chats, captions.
// Everything is a native button, select or input: usable with the keyboard alone.
"use strict";

(() => {
  const { h } = HC;
  const CH = window.HCChannels;
  const COUGH_KEY = "F9";

  const strings = {
    en: {
      "booth.title": "Interpreter console — {lang} booth", "booth.none": "You are not assigned to a booth of this room.",
      "booth.on_air": "ON AIR", "booth.off_air": "Off air", "booth.partner_live": "{name} is on air",
      "booth.free": "Channel free — listeners hear the original", "booth.free_silence": "Channel free — listeners hear silence",
      "booth.take": "Take the air", "booth.request": "Ask for handover", "booth.offer": "Hand over",
      "booth.accept": "Accept", "booth.decline": "Decline", "booth.cancel": "Cancel handover",
      "booth.release": "Go off air", "booth.asks_you": "{name} asks to take the air",
      "booth.offers_you": "{name} offers you the air", "booth.waiting": "Waiting for {name}…",
      "booth.cough": "Cough (hold)", "booth.cough_hint": "hold F9 anywhere",
      "booth.input": "Listening to", "booth.floor": "Floor", "booth.relay": "Relay: {lang}",
      "booth.output": "Speaking into", "booth.listeners": "{n} listening",
      "booth.partners": "Booth partners", "booth.presets": "Send to chair and speaker",
      "booth.caption": "Caption line (on air only)", "booth.away": "disconnected — off air at {time}",
      "booth.online": "online", "booth.offline": "offline", "booth.live_mark": "on air",
    },
    es: {
      "booth.title": "Consola de interpretación — cabina {lang}", "booth.none": "No tiene cabina asignada en esta sala.",
      "booth.on_air": "EN ANTENA", "booth.off_air": "Fuera de antena", "booth.partner_live": "{name} está en antena",
      "booth.free": "Canal libre: los oyentes oyen el original", "booth.free_silence": "Canal libre: los oyentes no oyen nada",
      "booth.take": "Tomar la antena", "booth.request": "Pedir el relevo", "booth.offer": "Ceder la antena",
      "booth.accept": "Aceptar", "booth.decline": "Rechazar", "booth.cancel": "Anular el relevo",
      "booth.release": "Salir de antena", "booth.asks_you": "{name} pide la antena",
      "booth.offers_you": "{name} le ofrece la antena", "booth.waiting": "Esperando a {name}…",
      "booth.cough": "Tos (mantener)", "booth.cough_hint": "mantenga F9",
      "booth.input": "Escucha", "booth.floor": "Sala", "booth.relay": "Relé: {lang}",
      "booth.output": "Interpreta hacia", "booth.listeners": "{n} oyentes",
      "booth.partners": "Compañeros de cabina", "booth.presets": "Enviar a la presidencia y al orador",
      "booth.caption": "Línea de subtítulo (solo en antena)", "booth.away": "desconectado: fuera de antena a las {time}",
      "booth.online": "conectado", "booth.offline": "desconectado", "booth.live_mark": "en antena",
    },
    fr: {
      "booth.title": "Console d'interprétation — cabine {lang}", "booth.none": "Vous n'avez pas de cabine dans cette salle.",
      "booth.on_air": "À L'ANTENNE", "booth.off_air": "Hors antenne", "booth.partner_live": "{name} est à l'antenne",
      "booth.free": "Canal libre : les auditeurs entendent l'original", "booth.free_silence": "Canal libre : les auditeurs n'entendent rien",
      "booth.take": "Prendre l'antenne", "booth.request": "Demander la relève", "booth.offer": "Passer l'antenne",
      "booth.accept": "Accepter", "booth.decline": "Refuser", "booth.cancel": "Annuler la relève",
      "booth.release": "Quitter l'antenne", "booth.asks_you": "{name} demande l'antenne",
      "booth.offers_you": "{name} vous propose l'antenne", "booth.waiting": "En attente de {name}…",
      "booth.cough": "Toux (maintenir)", "booth.cough_hint": "maintenez F9",
      "booth.input": "Écoute", "booth.floor": "Salle", "booth.relay": "Relais : {lang}",
      "booth.output": "Interprète vers", "booth.listeners": "{n} auditeurs",
      "booth.partners": "Partenaires de cabine", "booth.presets": "Envoyer à la présidence et à l'orateur",
      "booth.caption": "Ligne de sous-titre (à l'antenne seulement)", "booth.away": "déconnecté — hors antenne à {time}",
      "booth.online": "en ligne", "booth.offline": "hors ligne", "booth.live_mark": "à l'antenne",
    },
    ru: {
      "booth.title": "Пульт переводчика — кабина {lang}", "booth.none": "Вы не назначены в кабину этого зала.",
      "booth.on_air": "В ЭФИРЕ", "booth.off_air": "Не в эфире", "booth.partner_live": "{name} в эфире",
      "booth.free": "Канал свободен — слушатели слышат оригинал", "booth.free_silence": "Канал свободен — тишина",
      "booth.take": "Выйти в эфир", "booth.request": "Попросить передачу", "booth.offer": "Передать эфир",
      "booth.accept": "Принять", "booth.decline": "Отклонить", "booth.cancel": "Отменить передачу",
      "booth.release": "Уйти из эфира", "booth.asks_you": "{name} просит эфир",
      "booth.offers_you": "{name} передаёт вам эфир", "booth.waiting": "Ждём {name}…",
      "booth.cough": "Кашель (удерживать)", "booth.cough_hint": "удерживайте F9",
      "booth.input": "Слушаю", "booth.floor": "Зал", "booth.relay": "Реле: {lang}",
      "booth.output": "Перевожу на", "booth.listeners": "Слушателей: {n}",
      "booth.partners": "Напарники", "booth.presets": "Отправить председателю и выступающему",
      "booth.caption": "Строка субтитров (только в эфире)", "booth.away": "отключился — снятие с эфира в {time}",
      "booth.online": "в сети", "booth.offline": "не в сети", "booth.live_mark": "в эфире",
    },
  };

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
      hc.t("booth.listeners", { n: CH.listeners(hc.state)[me.booth] ?? 0 });

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
          time: new Date(c.away.until).toLocaleTimeString(hc.lang) })}` : ""))));
    const caption = document.getElementById("booth-caption");
    caption.disabled = !mine;
    const chats = document.getElementById("booth-chats");
    for (const box of [
      CH.chatBox("booth-chat", hc.t("chat.booth", { lang: me.booth }), s.chats[me.booth], "booth"),
      CH.chatBox("all-chat", hc.t("chat.all"), s.chats.all, "all"),
    ]) if (box.parentNode !== chats) chats.append(box);
  }

  HC.register({ name: "booth", strings, init, render });
})();
