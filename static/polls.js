// Votes and polls: the ballot card (in the voter's language, with countdown, confirmation and
// ballot tracker), results charts, proxies, and for the chair the poll builder, the controls and the
// live turnout/quorum gauge. The appliers mirror server/polls.py; the secret-ballot steps
// mirror server/voter.py (docs/voting.md). Everything is reachable by keyboard: native
// controls, fieldsets with legends, focus moved to what changed.
"use strict";

(() => {
  const { h } = HC;
  const C = window.BallotCrypto;
  const LANGS = ["en", "es", "fr", "ru"];
  const ui = { confirm: new Map(), busy: new Set(), changing: new Set(), focus: null, proxyTo: null };
  const frames = new Map(); // cid -> {msg, resolve, reject}: ballot frames awaiting a reply
  let frameCount = 0;
  let attendance = null;
  let presenceKey = "", attendanceTimer = null;

  // --- appliers: the same folds as server/polls.py --------------------------------------------

  const find = (s, id) => s.polls.polls[id];
  function count(poll, choice, w, sign = 1) {
    for (const o of choice) { poll.counts[o][0] += sign; poll.counts[o][1] += sign * w; }
    poll.cast[0] += sign; poll.cast[1] += sign * w;
  }
  function addOrder(s, id) { if (!s.polls.order.includes(id)) s.polls.order.push(id); }
  // The chair's copy is the full poll without the ballot box (server/polls.py view).
  function draft(s, e) {
    const p = structuredClone(e.poll);
    delete p.ballots;
    s.polls.polls[p.id] = p; addOrder(s, p.id);
  }
  // Only the full state and the chair's copy keep the "count again soon" mark.
  const markDirty = (p) => { if ("dirty" in p) p.dirty = true; };
  const appliers = {
    "poll.created": (s, e) => { draft(s, e); s.polls.seq = Math.max(s.polls.seq, e.seq || 0); },
    "poll.updated": draft,
    "poll.deleted": (s, e) => {
      delete s.polls.polls[e.id]; s.polls.order = s.polls.order.filter((x) => x !== e.id);
    },
    "poll.keys": (s, e) => { const p = find(s, e.id); if (p) { p.keys = e.keys; p.seal = e.seal; } },
    "poll.opened": (s, e) => {
      const p = s.polls.polls[e.poll.id] || (s.polls.polls[e.poll.id] = { voted: {} });
      Object.assign(p, structuredClone(e.poll));
      if (!s.polls.order.includes(p.id)) { // a voter's copy: polls in the order they opened
        s.polls.order.push(p.id);
        const key = (id) => [s.polls.polls[id].opened_at || 0, id];
        s.polls.order.sort((a, b) => {
          const [x, y] = [key(a), key(b)];
          return x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0);
        });
      }
    },
    "poll.timer": (s, e) => { const p = find(s, e.id); if (p) p.closes_at = e.closes_at; },
    "poll.closed": (s, e) => { const p = find(s, e.id); if (p) { p.state = "closed"; p.closed_at = e.at; } },
    "poll.sealed": (s, e) => { const p = find(s, e.id); if (p) { p.sealed = true; p.result = e.result; } },
    "poll.published": (s, e) => {
      const p = find(s, e.id);
      // The event has the public result; the chair's copy keeps the roll call from poll.sealed.
      if (p) { p.state = "published"; p.published_at = e.at; p.sealed = true; p.result = { ...(p.result || {}), ...e.result }; }
    },
    "proxy.granted": (s, e) => { s.polls.proxies[e.member] = e.holder; },
    "proxy.revoked": (s, e) => { delete s.polls.proxies[e.member]; },
    "ballot.cast": (s, e) => {
      const p = find(s, e.id);
      if (!p) return;
      (p.voted ||= {})[e.voter] = { by: e.by, at: e.at, w: e.w, choice: e.choice };
      markDirty(p);
      if (p.counts) { if (e.old) count(p, e.old, e.w, -1); count(p, e.choice, e.w); }
    },
    "ballot.changed": (s, e) => appliers["ballot.cast"](s, e),
    "ballot.claimed": (s, e) => {
      const p = find(s, e.id);
      if (!p) return;
      (p.voted ||= {})[e.voter] = { by: e.by, at: e.at, w: e.w };
      markDirty(p);
      if (p.pending) p.pending[e.w] = (p.pending[e.w] || 0) + 1;
    },
    // A sealed ballot is kept by the nodes alone (its event goes to no one): nothing to do.
    "ballot.deposited": (s, e) => { const p = find(s, e.id); if (p && p.ballots) p.ballots[e.tracker] = { sealed: e.sealed, late: e.late }; },
    "poll.progress": (s, e) => {
      const p = find(s, e.id);
      if (p) { p.progress = e.progress; p.progress_at = e.at ?? null; p.dirty = false; }
    },
  };

  // --- helpers ------------------------------------------------------------------------------------

  const floor = () => HC.state.core.floor || "en";
  const text = (texts) => (texts && (texts[HC.lang] || texts[floor()] || Object.values(texts)[0])) || "";
  const optionText = (poll, id) => text((poll.options.find((o) => o.id === id) || {}).text) || id;
  // A choice is a list of option ids in the state and events; published results give one id
  // for a single or yes/no poll (docs/protocol.md, "Result").
  const choiceText = (poll, choice) => [].concat(choice).map((c) => optionText(poll, c)).join(" + ");
  const roll = () => HC.state.polls.roll;
  const memberName = (m) => (roll()[m] || {}).name || m;
  const w100 = (w) => (w / 100).toLocaleString(HC.lang, { maximumFractionDigits: 2 });
  const canVote = () => ["participant", "panelist"].includes(HC.you.role);
  function holder(proxies, m) {
    const seen = new Set([m]);
    while (proxies && m in proxies) { m = proxies[m]; if (seen.has(m)) break; seen.add(m); }
    return m;
  }
  function voters(poll) {
    // The ballots this person casts in `poll`: [{voter, member, proxy}].
    if (!canVote()) return [];
    if (poll.electorate === "present") return [{ voter: HC.you.pid, member: null, proxy: false }];
    const org = HC.you.org;
    if (!org || !roll()[org]) return [];
    const out = [];
    if (holder(poll.proxies, org) === org) out.push({ voter: org, member: org, proxy: false });
    for (const m of Object.keys(poll.proxies || {})) {
      if (m !== org && holder(poll.proxies, m) === org) out.push({ voter: m, member: m, proxy: true });
    }
    return out;
  }
  function clock(ms) {
    const s = Math.max(0, Math.ceil(ms / 1000));
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }
  function explain(err) { HC.explain(err && err.code ? err : { code: "error", message: String(err) }); }
  function run(name, args) { return HC.command(name, args).catch((e) => { explain(e); throw e; }); }

  // --- ballot frames: claim and deposit (server/ballots.py) ------------------------------------------

  function frame(name, args) {
    const cid = `ballot-${Date.now().toString(36)}-${++frameCount}`;
    const msg = { type: "ballot", cid, name, args };
    return new Promise((resolve, reject) => {
      frames.set(cid, { msg, resolve, reject });
      HC.send(msg);
    });
  }

  const store = {
    key: (poll, voter) => `hc.ballot.${HC.room}.${poll}.${voter}`,
    get(poll, voter) {
      try { return JSON.parse(localStorage.getItem(store.key(poll, voter))); } catch { return null; }
    },
    put(poll, voter, rec) { localStorage.setItem(store.key(poll, voter), JSON.stringify(rec)); },
    drop(poll, voter) { localStorage.removeItem(store.key(poll, voter)); },
  };

  async function castSecret(poll, v, choice) {
    const w = poll.electorate === "present" ? 100 : roll()[v.voter].w;
    const key = poll.keys[String(w)];
    let rec = store.get(poll.id, v.voter);
    const change = rec && rec.phase === "counted";
    if (!rec) rec = { ...C.fresh(key), w, phase: "new", rev: 0, for: v.proxy ? v.member : null };
    if (change) rec = { ...rec, rev: rec.rev + 1, phase: "signed", sealed: null };
    rec.choice = choice;
    store.put(poll.id, v.voter, rec); // kept on this device until the ballot is in the box
    await advance(poll, v.voter, rec);
  }

  async function advance(poll, voter, rec) {
    if (rec.phase === "new") {
      const args = { poll: poll.id, blinded: await C.blinded(rec, poll.keys[String(rec.w)], HC.room, poll.id, rec.w) };
      if (rec.for) args.for = rec.for;
      const reply = await frame("claim", args);
      rec.sig = await C.unblind(rec, poll.keys[String(rec.w)], HC.room, poll.id, rec.w, reply.signed);
      rec.links = await C.chain(rec.seed);
      rec.phase = "signed";
      store.put(poll.id, voter, rec);
      HC.render();
    }
    if (rec.phase === "signed") {
      if (!rec.sealed) {
        // Sealed once and kept: a re-send (after a reload or a reconnect) is the same
        // sealed ballot, which the node counts once (its tracker is the hash of it).
        const links = rec.links || await C.chain(rec.seed);
        rec.sealed = await C.seal(poll.seal, HC.room, poll.id, { token: links[0], sig: rec.sig,
          w: rec.w, choice: rec.choice, rev: rec.rev, reveal: rec.rev ? links[rec.rev] : null });
        rec.tracker = await C.tracker(rec.sealed);
        store.put(poll.id, voter, rec);
      }
      await frame("deposit", { poll: poll.id, sealed: rec.sealed });
      rec.phase = "counted";
      delete rec.sealed; // acknowledged: the tracker is enough to check the published list
      if (!poll.change) { delete rec.seed; delete rec.r; delete rec.links; } // nothing more to prove
      store.put(poll.id, voter, rec);
      HC.render();
    }
  }

  function resume() {
    // A reload or a dropped connection: finish every ballot this device started.
    for (const id of HC.state.polls.order) {
      const poll = find(HC.state, id);
      if (!poll || !poll.secret || poll.sealed || !["open", "closed"].includes(poll.state)) continue;
      for (const v of voters(poll)) {
        const rec = store.get(id, v.voter);
        const k = `${id}/${v.voter}`;
        if (rec && rec.choice && rec.phase !== "counted" && !ui.busy.has(k)) {
          ui.busy.add(k);
          advance(poll, v.voter, rec).catch((e) => {
            if (e.code === "already_voted" || e.code === "poll_is_closed") store.drop(id, v.voter);
            explain(e);
          }).finally(() => { ui.busy.delete(k); HC.render(); });
        }
      }
    }
  }

  async function cast(poll, v, choice) {
    const k = `${poll.id}/${v.voter}`;
    ui.busy.add(k);
    HC.render();
    try {
      if (poll.secret) await castSecret(poll, v, choice);
      else await HC.command("ballot.cast", { poll: poll.id, choice, ...(v.proxy ? { for: v.member } : {}) });
      ui.confirm.delete(k);
      ui.changing.delete(k);
      ui.focus = `status-${k}`;
    } catch (e) {
      explain(e);
      ui.confirm.delete(k);
      ui.focus = `card-${k}`;
    } finally {
      ui.busy.delete(k);
      HC.render();
    }
  }

  // --- the ballot card --------------------------------------------------------------------------

  function ballotCard(poll, v) {
    const k = `${poll.id}/${v.voter}`;
    const title = v.member ? HC.t("poll.for", { member: memberName(v.member) }) +
      (v.proxy ? ` ${HC.t("poll.proxy")}` : "") : null;
    const record = (poll.voted || {})[v.voter];
    const rec = poll.secret ? store.get(poll.id, v.voter) : null;
    const open = poll.state === "open" && !(poll.closes_at && HC.now() >= poll.closes_at);
    const box = h("div", { class: "ballot", id: `card-${k}`, tabindex: "-1" }, title ? h("h4", {}, title) : null);
    if (poll.secret) box.append(mixLine(poll));
    if (ui.busy.has(k)) {
      // Offline, the sealed ballot waits on this device and goes when the page is back.
      box.append(h("p", { role: "status", class: HC.connected ? "casting" : "casting offline" },
        HC.t(HC.connected ? "poll.casting" : "poll.offline")));
      if (rec && rec.tracker) box.append(receiptLine(rec, k));
      return box;
    }
    const mine = record && (record.choice || (rec && rec.choice));
    const voted = record || (rec && rec.phase !== "new");
    if (voted && !ui.changing.has(k)) {
      const status = h("div", { class: "voted", id: `status-${k}`, tabindex: "-1", role: "status" });
      if (mine) status.append(h("p", {}, "✔ ", HC.t("poll.voted", { choice: choiceText(poll, mine) })));
      else status.append(h("p", {}, HC.t("poll.member_voted", { member: v.member ? memberName(v.member) : HC.you.name })));
      if (rec && rec.tracker) {
        status.append(h("p", {}, HC.t(rec.phase === "counted" ? "poll.counted" : "poll.sealed")));
        // What happens next (docs/voting.md): the box is opened once, after the close.
        if (rec.phase === "counted" && !poll.sealed) status.append(h("p", { class: "muted box-waits" }, HC.t("poll.box_waits")));
        status.append(receiptLine(rec, k));
        if (rec.choice) status.append(keepBox(poll, v.voter, rec, k));
      }
      const byMe = !record || record.by === HC.you.pid;
      if (open && poll.change && byMe && (!poll.secret || (rec && rec.phase === "counted" && rec.seed))) {
        status.append(h("button", { class: "ghost", onclick: () => {
          ui.changing.add(k); ui.focus = `card-${k}`; HC.render(); } }, HC.t("poll.change")));
      }
      box.append(status);
      return box;
    }
    if (!open) return null;
    const chosen = ui.confirm.get(k);
    if (chosen) {
      box.append(h("p", { class: "confirm-q" }, HC.t("poll.confirm_q", { choice: choiceText(poll, chosen) })),
        h("div", { class: "actions" },
          h("button", { id: `confirm-${k}`, onclick: () => cast(poll, v, chosen) }, HC.t("poll.confirm")),
          h("button", { class: "ghost", onclick: () => { ui.confirm.delete(k); ui.focus = `card-${k}`; HC.render(); } },
            HC.t("poll.back"))));
      return box;
    }
    const multiple = poll.kind === "multiple";
    const name = `choice-${k}`;
    const fieldset = h("fieldset", {},
      h("legend", {}, multiple ? HC.plural("poll.choose_max", poll.max) : HC.t("poll.choose_one")),
      ...poll.options.map((o) => h("label", { class: `option option-${o.id}` },
        h("input", { type: multiple ? "checkbox" : "radio", name, value: o.id }), " ", text(o.text))));
    const form = h("form", { class: "ballot-form", onsubmit: (e) => {
      e.preventDefault();
      const picked = [...form.querySelectorAll("input:checked")].map((i) => i.value);
      if (!picked.length) { explain({ code: "no_choice", message: "choose an option" }); return; }
      if (picked.length > poll.max) { explain({ code: "too_many_choices", message: "too many" }); return; }
      ui.confirm.set(k, picked);
      ui.focus = `confirm-${k}`;
      HC.render();
    } }, fieldset, h("button", { type: "submit" }, HC.t("poll.cast")));
    box.append(form);
    return box;
  }

  function receiptLine(rec, k) {
    return h("p", { class: "receipt" }, `${HC.t("poll.receipt")}: `,
      h("code", { id: `receipt-${k}`, dataset: { receipt: rec.tracker } }, rec.tracker),
      h("br"), h("small", {}, HC.t("poll.receipt_help")));
  }

  // The device forgets the choice once the result is published, unless the voter asks
  // to keep it here (docs/voting.md, "What a receipt proves").
  function keepBox(poll, voter, rec, k) {
    return h("label", { class: "keep" }, h("input", { type: "checkbox", id: `keep-${k}`, checked: !!rec.keep,
      onchange: (e) => { rec.keep = e.target.checked; store.put(poll.id, voter, rec); } }), " ", HC.t("poll.keep"));
  }

  function mixLine(poll) {
    return h("p", { class: "mix muted", id: `mix-${poll.id}` }, HC.plural("poll.mixed", Math.max(0, poll.mix - 1)));
  }

  // --- results ----------------------------------------------------------------------------------

  // The width through the CSSOM, not a style="" attribute: the page's Content-Security-Policy
  // (style-src 'self') refuses inline style attributes (server/web/headers.py).
  function bar(percent) {
    const el = h("span", { class: "bar" });
    el.style.width = `${percent.toFixed(1)}%`;
    return el;
  }

  function chart(poll, result, caption) {
    const total = Math.max(1, ...result.options.map((o) => o.w));
    const sum = Math.max(1, result.weight);
    return h("figure", { class: "poll-chart", dataset: { poll: poll.id } },
      h("figcaption", {}, caption),
      h("ul", {}, ...result.options.map((o) => h("li", { class: `bar-${o.id}` },
        h("span", { class: "label" }, optionText(poll, o.id)),
        h("span", { class: "track", "aria-hidden": "true" },
          bar(100 * o.w / total)),
        h("span", { class: "num" }, `${w100(o.w)} (${Math.round(100 * o.w / sum)}%) · ${HC.plural("poll.ballots", o.n)}`)))));
  }

  function summary(result) {
    const lines = [h("p", { class: `outcome outcome-${result.outcome}` },
      h("strong", {}, HC.t(`poll.outcome.${result.outcome}`)))];
    if (result.quorum) {
      lines.push(h("p", {}, HC.t("poll.quorum", { have: result.quorum.weighted ? w100(result.quorum.have) : result.quorum.have,
        required: result.quorum.required }), " — ", HC.t(result.quorum.met ? "poll.met" : "poll.missed")));
    }
    const t = result.threshold;
    lines.push(h("p", {}, HC.t(`poll.threshold.${t.rule}`), " — ", HC.t(t.met ? "poll.met" : "poll.missed")));
    lines.push(h("p", { class: "muted" }, HC.t("poll.turnout", { n: result.turnout ? result.turnout.n : result.ballots, of: result.eligible.n })));
    if (result.missing) lines.push(h("p", { class: "muted" }, HC.plural("poll.missing", result.missing)));
    return lines;
  }

  function results(poll) {
    const result = poll.result;
    const out = h("div", { class: "results" }, chart(poll, result, HC.t("poll.results")), ...summary(result));
    if (poll.secret && result.trackers) {
      if (result.outcome === "too_few") out.append(h("p", { class: "too-few" }, HC.plural("poll.too_few", result.mix)));
      for (const v of voters(poll)) {
        const rec = store.get(poll.id, v.voter);
        if (!rec || !rec.tracker) continue;
        const found = result.trackers.includes(rec.tracker);
        out.append(h("p", { class: found ? "receipt-found" : "receipt-missing", role: "status" },
          HC.t(found ? "poll.found" : "poll.not_found", { r: rec.tracker })));
        if (poll.state === "published" && rec.choice && !rec.keep) {
          delete rec.choice; delete rec.seed; delete rec.r; delete rec.links; delete rec.sig;
          store.put(poll.id, v.voter, rec);
        }
      }
      out.append(h("details", {}, h("summary", {}, HC.t("poll.trackers", { n: result.trackers.length })),
        h("ul", { class: "trackers" }, ...result.trackers.map((t) => h("li", {}, h("code", {}, t))))));
      out.append(h("details", {}, h("summary", {}, HC.t("poll.revealed", { n: result.revealed.length })),
        h("ul", { class: "revealed" }, ...result.revealed.map((r) =>
          h("li", {}, `${choiceText(poll, r.choice)} · ${w100(r.w)}`)))));
    }
    return out;
  }

  // --- the chair ----------------------------------------------------------------------------------

  function chairControls(poll) {
    const box = h("div", { class: "chair-controls actions" });
    const id = poll.id;
    if (poll.state === "draft") {
      const seconds = h("input", { type: "number", min: "0", max: "86400", value: poll.seconds || "",
        "aria-label": HC.t("chair.seconds"), class: "seconds", dataset: { fk: `seconds-${id}` } });
      box.append(seconds,
        h("button", { dataset: { fk: `open-${id}` }, onclick: () => run("poll.open", { poll: id, ...(seconds.value ? { seconds: Number(seconds.value) } : {}) }) }, HC.t("chair.open")),
        h("button", { class: "ghost", dataset: { fk: `delete-${id}` }, onclick: () => run("poll.delete", { poll: id }) }, HC.t("chair.delete")));
    } else if (poll.state === "open") {
      const seconds = h("input", { type: "number", min: "0", max: "86400", value: "60", "aria-label": HC.t("chair.seconds"), class: "seconds", dataset: { fk: `timer-s-${id}` } });
      box.append(h("button", { dataset: { fk: `close-${id}` }, onclick: () => run("poll.close", { poll: id }) }, HC.t("chair.close")),
        seconds, h("button", { class: "ghost", dataset: { fk: `timer-${id}` }, onclick: () => run("poll.timer", { poll: id, seconds: Number(seconds.value || 0) }) }, HC.t("chair.timer")));
    } else if (poll.state === "closed") {
      if (!poll.sealed) box.append(h("span", { role: "status" }, HC.t("chair.waiting")));
      box.append(h("button", { dataset: { fk: `publish-${id}` }, onclick: () => run("poll.publish", { poll: id }), disabled: !poll.sealed }, HC.t("chair.publish")));
    }
    if (poll.sealed) {
      box.append(h("button", { class: "ghost", onclick: () => download(`/api/rooms/${HC.room}/polls/${id}/result.json?lang=${HC.lang}`, `${id}.json`) }, HC.t("chair.export_json")),
        h("button", { class: "ghost", onclick: () => download(`/api/rooms/${HC.room}/polls/${id}/result.csv?lang=${HC.lang}`, `${id}.csv`) }, HC.t("chair.export_csv")));
    }
    return box;
  }

  function live(poll) {
    const p = poll.progress;
    if (!p && poll.state === "open") { // before the first ballot: nobody has voted yet
      const waiting = notVoted(poll, null);
      return waiting && h("div", { class: "live", "aria-live": "polite" }, waiting);
    }
    if (!p || poll.state !== "open" && poll.sealed) return null;
    const need = p.quorum ? Number(eval_(p.quorum.required)) : 0;
    const have = p.quorum ? p.quorum.have : 0;
    const gauge = p.quorum ? h("div", { class: "gauge" },
      h("label", {}, HC.t("chair.gauge"), " ",
        h("meter", { min: "0", max: String(Math.max(need, have, 1)), low: String(need), optimum: String(Math.max(need, have, 1)), value: String(have) })),
      ` ${have} / ${p.quorum.required} — ${HC.t(p.quorum.met ? "poll.met" : "poll.missed")}`) : null;
    return h("div", { class: "live", "aria-live": "polite" },
      h("p", { class: "turnout" }, HC.t("poll.turnout", { n: p.turnout.n, of: p.eligible.n })),
      gauge, notVoted(poll, p),
      poll.secret ? h("p", { class: "muted sealed-note" }, HC.t("chair.sealed")) : chart(poll, p, HC.t("chair.running")),
      h("p", {}, HC.t(`poll.outcome.${p.outcome}`)));
  }

  // A formal vote: the members still to vote, for the chair to call on before the close.
  // The list comes with the progress (server/polls_core.py); before the first one, the roll
  // less the ballots this copy knows of (none, for a secret vote just opened).
  function notVoted(poll, p) {
    if (poll.electorate !== "roll" || poll.state !== "open") return null;
    const list = (p && p.not_voted) || Object.keys(roll()).filter((m) => !(poll.voted || {})[m]);
    if (!list.length) return h("p", { class: "not-voted all" }, HC.t("chair.all_voted"));
    return h("div", { class: "not-voted" },
      h("h4", { id: `not-voted-h-${poll.id}` }, HC.t("chair.not_voted", { n: list.length })),
      h("ul", { class: "plain", "aria-labelledby": `not-voted-h-${poll.id}` },
        ...list.map((m) => h("li", { dataset: { member: m } }, memberName(m),
          roll()[m] ? h("small", {}, ` ${HC.countryName(roll()[m].country)}`) : null))));
  }
  const eval_ = (frac) => { const [a, b] = String(frac).split("/"); return b ? Number(a) / Number(b) : Number(a); };

  async function download(path, filename) {
    const res = await fetch(path, { headers: { Authorization: `Bearer ${HC.token}` } });
    if (!res.ok) { explain(await res.json()); return; }
    const url = URL.createObjectURL(await res.blob());
    const a = h("a", { href: url, download: filename });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  async function loadAttendance() {
    const res = await fetch(`/api/attendance.json?lang=${HC.lang}`, { headers: { Authorization: `Bearer ${HC.token}` } });
    if (res.ok) { attendance = await res.json(); HC.render(); }
  }

  function builder() {
    const q = LANGS.map((l) => h("label", {}, HC.t("chair.question", { lang: l }),
      h("input", { name: `q-${l}`, maxlength: "300", required: l === "en" })));
    const sel = (name, values, prefix) => h("select", { name }, ...values.map((v) => h("option", { value: v }, HC.t(`${prefix}.${v}`))));
    const form = h("form", { id: "poll-builder", class: "builder" },
      h("fieldset", {}, h("legend", {}, HC.t("chair.builder")), ...q,
        h("label", {}, HC.t("chair.kind"), sel("kind", ["single", "multiple", "yesno"], "kind")),
        h("label", {}, HC.t("chair.options"), h("textarea", { name: "options", rows: "3" })),
        h("label", {}, HC.t("chair.max"), h("input", { name: "max", type: "number", min: "1", value: "2" })),
        h("label", {}, HC.t("chair.electorate"), sel("electorate", ["present", "roll"], "electorate")),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "secret" }), HC.t("chair.secret")),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "change" }), HC.t("chair.change")),
        h("label", {}, HC.t("chair.seconds"), h("input", { name: "seconds", type: "number", min: "5" })),
        h("label", {}, HC.t("chair.quorum"), sel("quorum", ["none", "roll", "present"], "quorum")),
        h("label", {}, HC.t("chair.threshold"), sel("threshold", ["simple", "two_thirds", "absolute"], "poll.threshold")),
        h("label", { class: "check" }, h("input", { type: "checkbox", name: "abstentions" }), HC.t("chair.abstentions")),
        h("button", { type: "submit" }, HC.t("chair.create"))));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const f = new FormData(form);
      const def = { question: {}, kind: f.get("kind"), electorate: f.get("electorate"),
        secret: f.get("secret") === "on", change: f.get("change") === "on",
        threshold: { rule: f.get("threshold"), abstentions: f.get("abstentions") === "on" ? "counted" : "excluded" } };
      for (const l of LANGS) if (f.get(`q-${l}`)) def.question[l] = f.get(`q-${l}`);
      if (def.kind !== "yesno") {
        def.options = String(f.get("options")).split("\n").map((s) => s.trim()).filter(Boolean).map((line) => {
          const parts = line.split("|").map((s) => s.trim());
          const t = {};
          parts.forEach((p, i) => { if (p && LANGS[i]) t[LANGS[i]] = p; });
          return { text: t };
        });
      }
      if (def.kind === "multiple") def.max = Number(f.get("max"));
      if (f.get("seconds")) def.seconds = Number(f.get("seconds"));
      if (f.get("quorum") !== "none") def.quorum = { of: f.get("quorum"), fraction: 0.5 };
      if (def.secret) def.mix = 3;
      run("poll.create", { def }).then(() => form.reset());
    });
    return form;
  }

  // --- proxies ----------------------------------------------------------------------------------

  // Proxies change only while no formal vote is open (server/polls.py): the box is hidden
  // during a formal vote, and after one unless a proxy stands (to see it and revoke it).
  // Giving one takes a confirmation that names the member (issue 11: one click gave it).
  const formalIn = (states) => HC.state.polls.order.some((id) => {
    const p = find(HC.state, id);
    return p && p.electorate === "roll" && states.includes(p.state);
  });

  function proxyBox() {
    const org = HC.you.org;
    if (!canVote() || !org || !roll()[org]) return null;
    const proxies = HC.state.polls.proxies;
    const held = Object.keys(proxies).filter((m) => proxies[m] === org);
    if (formalIn(["open"])) return null;
    if (formalIn(["closed", "published"]) && !proxies[org] && !held.length) return null;
    const box = h("div", { class: "proxy card" }, h("h3", {}, HC.t("proxy.title")));
    if (held.length) box.append(h("p", {}, HC.t("proxy.held", { members: held.map(memberName).join(", ") })));
    if (proxies[org]) {
      box.append(h("p", { class: "proxy-given" }, HC.t("proxy.given", { member: memberName(proxies[org]) })),
        h("p", { class: "muted" }, HC.t("proxy.revocable")),
        h("button", { class: "ghost", id: "proxy-revoke", dataset: { fk: "proxy-revoke" }, onclick: () => run("proxy.revoke", {}) }, HC.t("proxy.revoke")));
    } else if (ui.proxyTo) {
      const to = ui.proxyTo;
      const done = () => { ui.proxyTo = null; HC.render(); };
      box.append(h("p", { class: "confirm-q", id: "proxy-question" },
        HC.t("proxy.confirm_q", { member: memberName(org), holder: memberName(to) })),
      h("div", { class: "actions" },
        h("button", { id: "proxy-confirm", onclick: () => {
          ui.focus = "proxy-revoke";
          run("proxy.grant", { to }).then(done, () => { ui.focus = "proxy-to"; done(); });
        } }, HC.t("proxy.confirm", { holder: memberName(to) })),
        h("button", { class: "ghost", onclick: () => { ui.focus = "proxy-to"; done(); } }, HC.t("poll.back"))));
    } else {
      const select = h("select", { id: "proxy-to" },
        h("option", { value: "" }, HC.t("proxy.choose")),
        ...Object.keys(roll()).filter((m) => m !== org).map((m) => h("option", { value: m }, memberName(m))));
      box.append(h("label", { for: "proxy-to" }, HC.t("proxy.to")), " ", select,
        h("button", { id: "proxy-grant", class: "ghost", onclick: () => {
          if (!select.value) { explain({ code: "no_member", message: "choose a member" }); return; }
          ui.proxyTo = select.value; ui.focus = "proxy-confirm"; HC.render();
        } }, HC.t("proxy.grant")));
    }
    return box;
  }

  // --- render -------------------------------------------------------------------------------------

  function sync(parent, id, key, build) {
    // Rebuild a part only when what it shows changed: keeps focus and half-filled forms.
    let el = document.getElementById(id);
    if (el && el.dataset.key === key) return el;
    const fresh = build() || h("div", { hidden: true });
    fresh.id = id;
    fresh.dataset.key = key;
    // A control that had focus gets it back in the new copy (the chair's Close while
    // ballots move): found by its data-fk, with what was typed into it.
    const active = el && el.contains(document.activeElement) ? document.activeElement : null;
    if (el) el.replaceWith(fresh); else parent.append(fresh);
    // Open gives way to Close: the chair who opened a vote is on the button that ends it.
    const fk = active && active.dataset.fk;
    const again = fk && (fresh.querySelector(`[data-fk="${fk}"]`)
      || fresh.querySelector(`[data-fk="${fk.replace(/^open-/, "close-")}"]`));
    if (again) {
      if ("value" in active && again.tagName === active.tagName) again.value = active.value;
      again.focus();
    }
    return fresh;
  }

  function pollCard(poll) {
    const chair = HC.isChair();
    const card = h("article", { class: `poll poll-${poll.state}`, "aria-labelledby": `poll-h-${poll.id}` },
      h("h3", { id: `poll-h-${poll.id}` }, text(poll.question), " ",
        h("span", { class: `badge state-${poll.state}` }, HC.t(`poll.state.${poll.state}`))),
      h("p", { class: "muted" }, HC.t(poll.electorate === "roll" ? "poll.formal" : "poll.quick"), " · ",
        HC.t(poll.secret ? "poll.secret" : "poll.open_ballot")),
      h("p", { class: "countdown", role: "timer", "aria-live": "off", dataset: { closes: poll.closes_at || "" },
        hidden: !(poll.state === "open" && poll.closes_at) }));
    if (poll.state === "open" && !chair) {
      const mine = voters(poll);
      if (!mine.length && HC.you.org && roll()[HC.you.org] && poll.electorate === "roll") {
        card.append(h("p", {}, HC.t("poll.delegated", { member: memberName(holder(poll.proxies, HC.you.org)) })));
      }
    }
    for (const v of voters(poll)) {
      const b = ballotCard(poll, v);
      if (b) card.append(b);
    }
    if (chair) {
      card.append(chairControls(poll));
      const l = live(poll);
      if (l) card.append(l);
    }
    if (poll.result && (poll.state === "published" || chair)) card.append(results(poll));
    return card;
  }

  function render(hc) {
    const list = document.getElementById("polls-list");
    if (!list) return;
    const ids = hc.state.polls.order.filter((id) => find(hc.state, id));
    for (const el of [...list.children]) if (!ids.includes(el.dataset.poll)) el.remove();
    ids.forEach((id, i) => {
      const poll = find(hc.state, id);
      const locals = voters(poll).map((v) => [v.voter, store.get(id, v.voter), ui.busy.has(`${id}/${v.voter}`),
        ui.confirm.get(`${id}/${v.voter}`), ui.changing.has(`${id}/${v.voter}`)]);
      const key = JSON.stringify([hc.lang, poll, locals, hc.state.polls.proxies, !!(poll.closes_at && hc.now() >= poll.closes_at), hc.connected]);
      const el = sync(list, `poll-${id}`, key, () => pollCard(poll));
      el.dataset.poll = id;
      if (list.children[i] !== el) list.insertBefore(el, list.children[i] || null);
      const cd = el.querySelector(".countdown");
      if (cd && cd.dataset.closes) cd.textContent = HC.t("poll.left", { t: clock(Number(cd.dataset.closes) - hc.now()) });
    });
    document.getElementById("polls-none").hidden = ids.length > 0;
    // A ballot waiting for this person: style.css brings the votes first on a phone.
    document.body.dataset.ballot = list.querySelector("form.ballot-form, .confirm-q") ? "open" : "";
    const proxyHost = document.getElementById("polls-proxy");
    const formal = hc.state.polls.order.map((id) => (find(hc.state, id) || {}).state);
    sync(proxyHost, "proxy-part", JSON.stringify([hc.lang, hc.state.polls.proxies, ui.proxyTo, formal]), proxyBox);
    if (hc.isChair()) {
      // The report follows who is here: fetched again (at most once a second) whenever
      // someone joins or leaves, so it is never stale (issue 11, item 7).
      const here = JSON.stringify(Object.values(hc.state.core.people).map((p) => [p.pid, p.conns.length > 0]));
      if (here !== presenceKey) {
        presenceKey = here;
        clearTimeout(attendanceTimer);
        attendanceTimer = setTimeout(loadAttendance, 1000);
      }
      const att = document.getElementById("attendance-line");
      if (att) att.textContent = attendance ? attendance.line : "";
    }
    if (ui.focus) {
      const target = document.getElementById(ui.focus);
      if (target) { target.focus(); ui.focus = null; }
    }
  }

  function init(hc) {
    const section = h("section", { id: "polls-section", "aria-labelledby": "polls-h" },
      h("h2", { id: "polls-h", "data-t": "polls.title" }, hc.t("polls.title")),
      h("p", { id: "polls-none", class: "muted", "data-t": "polls.none" }, hc.t("polls.none")),
      h("div", { id: "polls-list" }), h("div", { id: "polls-proxy" }));
    if (hc.isChair()) {
      section.append(builder(), h("div", { class: "attendance" },
        h("h3", { "data-t": "chair.attendance" }, hc.t("chair.attendance")),
        h("p", { id: "attendance-line", role: "status" }),
        h("div", { class: "actions" },
          h("button", { class: "ghost", onclick: loadAttendance, "data-t": "chair.attendance" }, hc.t("chair.attendance")),
          h("button", { class: "ghost", onclick: () => download(`/api/attendance.csv?lang=${HC.lang}`, "attendance.csv"),
            "data-t": "chair.attendance_csv" }, hc.t("chair.attendance_csv")))));
      loadAttendance();
    }
    (document.getElementById("polls-host") || document.getElementById("features")).append(section);
    setInterval(() => {
      if (HC.state && HC.state.polls.order.some((id) => { const p = find(HC.state, id); return p && p.state === "open" && p.closes_at; })) HC.render();
    }, 1000);
    resume();
  }

  HC.register({
    name: "polls", appliers, init, render,
    onMessage(hc, msg) {
      if (msg.type === "reply" && frames.has(msg.cid)) {
        const f = frames.get(msg.cid);
        frames.delete(msg.cid);
        msg.ok ? f.resolve(msg) : f.reject(msg);
      } else if (msg.type === "welcome") {
        for (const f of frames.values()) HC.send(f.msg); // retry: claims and deposits are idempotent
        if (hc.state && document.getElementById("polls-section")) resume();
      }
    },
  });
})();
