// The room itself: header, agenda, people, raised hands, the floor, the chair's notice.
"use strict";

(() => {
  const { h } = HC;

  const strings = {
    en: {
      "status.connecting": "Connecting…", "status.connected": "Connected",
      "status.reconnecting": "Reconnecting…", "status.refused": "This link is not valid",
      "status.displaced": "Closed: this link is open in too many other windows",
      "status.no_token": "Open your personal invite link to join", "status.left": "You left",
      "ui.language": "Page language", "agenda": "Agenda", "agenda.now": "Now",
      "agenda.next": "Next item", "agenda.yourtime": "your time", "people": "Participants",
      "people.online": "{n} online", "hands": "Raised hands", "hands.empty": "No hands raised",
      "hand.raise": "Raise hand", "hand.lower": "Lower hand", "floor": "Has the floor",
      "floor.give": "Give the floor", "floor.next": "Next speaker", "floor.take": "Take back",
      "floor.yield": "Finish speaking", "floor.you": "You have the floor",
      "notice.post": "Post notice", "notice.placeholder": "Announcement to everyone",
      "role.participant": "Participant", "role.panelist": "Panelist",
      "role.interpreter": "Interpreter", "role.captioner": "Captioner", "role.moderator": "Chair",
      "you": "you", "offline": "offline",
      "err.hand_already_raised": "Your hand is already raised.",
      "err.hand_not_raised": "That hand is not raised.", "err.forbidden": "You may not do that.",
      "err.rate_limited": "Slow down a little.", "err.agenda_end": "That was the last item.",
      "err.queue_empty": "No hands are raised.",
    },
    es: {
      "status.connecting": "Conectando…", "status.connected": "Conectado",
      "status.reconnecting": "Reconectando…", "status.refused": "Este enlace no es válido",
      "status.displaced": "Cerrada: este enlace está abierto en demasiadas otras ventanas",
      "status.no_token": "Abra su enlace de invitación personal", "status.left": "Ha salido",
      "ui.language": "Idioma de la página", "agenda": "Orden del día", "agenda.now": "Ahora",
      "agenda.next": "Punto siguiente", "agenda.yourtime": "su hora", "people": "Participantes",
      "people.online": "{n} conectados", "hands": "Manos levantadas",
      "hands.empty": "Nadie ha levantado la mano", "hand.raise": "Levantar la mano",
      "hand.lower": "Bajar la mano", "floor": "Tiene la palabra", "floor.give": "Dar la palabra",
      "floor.next": "Siguiente orador", "floor.take": "Retirar la palabra",
      "floor.yield": "Terminar de hablar", "floor.you": "Tiene usted la palabra",
      "notice.post": "Publicar aviso", "notice.placeholder": "Aviso para todos",
      "role.participant": "Participante", "role.panelist": "Panelista",
      "role.interpreter": "Intérprete", "role.captioner": "Subtitulador",
      "role.moderator": "Presidencia", "you": "usted", "offline": "desconectado",
      "err.hand_already_raised": "Ya tiene la mano levantada.",
      "err.hand_not_raised": "Esa mano no está levantada.",
      "err.forbidden": "No puede hacer eso.", "err.rate_limited": "Vaya un poco más despacio.",
      "err.agenda_end": "Era el último punto.", "err.queue_empty": "Nadie ha levantado la mano.",
    },
    fr: {
      "status.connecting": "Connexion…", "status.connected": "Connecté",
      "status.reconnecting": "Reconnexion…", "status.refused": "Ce lien n'est pas valide",
      "status.displaced": "Fermée : ce lien est ouvert dans trop d'autres fenêtres",
      "status.no_token": "Ouvrez votre lien d'invitation personnel", "status.left": "Vous êtes parti",
      "ui.language": "Langue de la page", "agenda": "Ordre du jour", "agenda.now": "En cours",
      "agenda.next": "Point suivant", "agenda.yourtime": "votre heure", "people": "Participants",
      "people.online": "{n} en ligne", "hands": "Mains levées",
      "hands.empty": "Aucune main levée", "hand.raise": "Lever la main",
      "hand.lower": "Baisser la main", "floor": "A la parole", "floor.give": "Donner la parole",
      "floor.next": "Orateur suivant", "floor.take": "Reprendre la parole",
      "floor.yield": "Terminer mon intervention", "floor.you": "Vous avez la parole",
      "notice.post": "Publier l'annonce", "notice.placeholder": "Annonce à tous",
      "role.participant": "Participant", "role.panelist": "Panéliste",
      "role.interpreter": "Interprète", "role.captioner": "Sous-titreur",
      "role.moderator": "Présidence", "you": "vous", "offline": "hors ligne",
      "err.hand_already_raised": "Votre main est déjà levée.",
      "err.hand_not_raised": "Cette main n'est pas levée.",
      "err.forbidden": "Vous ne pouvez pas faire cela.",
      "err.rate_limited": "Ralentissez un peu.", "err.agenda_end": "C'était le dernier point.",
      "err.queue_empty": "Aucune main n'est levée.",
    },
    ru: {
      "status.connecting": "Подключение…", "status.connected": "Подключено",
      "status.reconnecting": "Переподключение…", "status.refused": "Ссылка недействительна",
      "status.displaced": "Закрыто: эта ссылка открыта в слишком многих других окнах",
      "status.no_token": "Откройте вашу личную ссылку-приглашение", "status.left": "Вы вышли",
      "ui.language": "Язык страницы", "agenda": "Повестка дня", "agenda.now": "Сейчас",
      "agenda.next": "Следующий пункт", "agenda.yourtime": "ваше время",
      "people": "Участники", "people.online": "В сети: {n}", "hands": "Поднятые руки",
      "hands.empty": "Никто не поднял руку", "hand.raise": "Поднять руку",
      "hand.lower": "Опустить руку", "floor": "Слово имеет", "floor.give": "Дать слово",
      "floor.next": "Следующий выступающий", "floor.take": "Забрать слово",
      "floor.yield": "Закончить выступление", "floor.you": "Вам предоставлено слово",
      "notice.post": "Опубликовать объявление", "notice.placeholder": "Объявление для всех",
      "role.participant": "Участник", "role.panelist": "Докладчик",
      "role.interpreter": "Переводчик", "role.captioner": "Субтитры",
      "role.moderator": "Председатель", "you": "вы", "offline": "не в сети",
      "err.hand_already_raised": "Ваша рука уже поднята.",
      "err.hand_not_raised": "Эта рука не поднята.", "err.forbidden": "Вам это недоступно.",
      "err.rate_limited": "Помедленнее, пожалуйста.",
      "err.agenda_end": "Это был последний пункт.", "err.queue_empty": "Никто не поднял руку.",
    },
  };

  // Mirrors of server/rooms.py apply functions.
  const appliers = {
    // The event carries the whole record as the state holds it (conns included).
    "person.joined": (s, ev) => { s.core.people[ev.person.pid] = structuredClone(ev.person); },
    "person.left": (s, ev) => {
      const p = s.core.people[ev.pid];
      if (p) p.conns = p.conns.filter((c) => c !== ev.conn);
    },
    "hand.raised": (s, ev) => { if (!s.core.hands.includes(ev.pid)) s.core.hands.push(ev.pid); },
    "hand.lowered": (s, ev) => { s.core.hands = s.core.hands.filter((p) => p !== ev.pid); },
    "floor.granted": (s, ev) => {
      s.core.hands = s.core.hands.filter((p) => p !== ev.pid);
      if (!s.core.speakers.includes(ev.pid)) s.core.speakers.push(ev.pid);
    },
    "floor.revoked": (s, ev) => { s.core.speakers = s.core.speakers.filter((p) => p !== ev.pid); },
    "agenda.current": (s, ev) => { s.core.current = ev.index; },
    "notice": (s, ev) => { s.core.notice = ev.text ? { text: ev.text, ts: ev.ts } : null; },
  };

  const run = (name, args) => HC.command(name, args).catch((e) => HC.explain(e));

  function init(hc) {
    const select = document.getElementById("ui-lang");
    select.value = hc.lang;
    select.addEventListener("change", () => hc.setLang(select.value));
    document.getElementById("room-title").textContent =
      `${hc.assembly.name} — ${hc.assembly.title}`;
    document.title = `${hc.assembly.title} · ${hc.assembly.name}`;
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
    hc.setLang(hc.lang);
  }

  // 24-hour times: the convention of international meetings, whatever the UI language.
  const fmt = (iso, opts) => new Date(iso).toLocaleTimeString(HC.lang, { hourCycle: "h23", ...opts });

  function renderAgenda(hc) {
    const list = document.getElementById("agenda-list");
    const { agenda, current } = hc.state.core;
    list.replaceChildren(...agenda.map((item, i) => {
      const local = fmt(item.start, { hour: "2-digit", minute: "2-digit" });
      const utc = fmt(item.start, { hour: "2-digit", minute: "2-digit", timeZone: "UTC" });
      const day = new Date(item.start).toLocaleDateString(hc.lang,
        { weekday: "short", day: "numeric", month: "short" });
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
    const parts = [org ? org.name : p.org, hc.countryName(p.country)].filter(Boolean);
    return parts.join(", ");
  }

  function renderPeople(hc) {
    const people = Object.values(hc.state.core.people);
    const online = people.filter((p) => p.conns.length);
    document.getElementById("people-count").textContent =
      hc.t("people.online", { n: online.length });
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

  function renderFloor(hc) {
    const { hands, speakers } = hc.state.core;
    const chair = hc.isChair();
    const handList = document.getElementById("hands-list");
    if (!hands.length) handList.replaceChildren(h("li", { class: "muted" }, hc.t("hands.empty")));
    else handList.replaceChildren(...hands.map((pid, i) => h("li", { dataset: { pid } },
      h("span", { class: "pos" }, `${i + 1}.`), " ", nameOf(hc, pid),
      chair ? h("button", { class: "small", onclick: () => run("floor.grant", { pid }) },
        hc.t("floor.give")) : null,
      chair ? h("button", { class: "small ghost", onclick: () => run("hand.lower", { pid }) },
        hc.t("hand.lower")) : null)));
    document.getElementById("speakers-list").replaceChildren(...speakers.map((pid) =>
      h("li", { dataset: { pid } }, "🎙 ", nameOf(hc, pid),
        chair ? h("button", { class: "small", onclick: () => run("floor.revoke", { pid }) },
          hc.t("floor.take")) : null)));
    const mine = hands.includes(hc.you.pid);
    const speaking = speakers.includes(hc.you.pid);
    const handButton = document.getElementById("hand-button");
    handButton.hidden = !["participant", "panelist", "moderator"].includes(hc.you.role) || speaking;
    handButton.textContent = hc.t(mine ? "hand.lower" : "hand.raise");
    handButton.setAttribute("aria-pressed", mine ? "true" : "false");
    document.getElementById("floor-next").hidden = !chair || !hands.length;
    document.getElementById("floor-next").textContent = hc.t("floor.next");
    document.getElementById("floor-yield").hidden = !speaking;
    document.getElementById("you-speak").hidden = !speaking;
  }

  function renderNotice(hc) {
    const box = document.getElementById("notice");
    const notice = hc.state.core.notice;
    box.hidden = !notice;
    box.textContent = notice ? notice.text : "";
  }

  HC.register({
    name: "room", strings, appliers, init,
    render(hc) { renderAgenda(hc); renderPeople(hc); renderFloor(hc); renderNotice(hc); },
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
