// The room's invites: the chair's list (who minted which, for whom) with a revoke button;
// the observer's notice that they do not vote. Mirrors server/invites.py.
"use strict";

(() => {
  const { h } = HC;

  const appliers = {
    "invite.minted": (s, ev) => { s.invites.invites[ev.invite.jti] = structuredClone(ev.invite); },
    "invite.revoked": (s, ev) => {
      const record = s.invites.invites[ev.jti];
      if (record) record.revoked = true;
    },
    "representative.added": (s, ev) => {
      (s.invites.reps[ev.member] ||= []).push(ev.name);
    },
  };

  const run = (name, args) => HC.command(name, args).catch((e) => HC.explain(e));

  function init(hc) {
    const features = document.getElementById("features");
    if (hc.you.role === "observer") {
      features.before(h("p", { id: "observer-note", class: "notice" }, hc.t("observer.note")));
    }
    if (!hc.isChair()) return;
    const members = Object.entries(hc.assembly.members || {});
    const member = h("select", { id: "reps-member" },
      ...members.map(([id, m]) => h("option", { value: id }, m.name)));
    const name = h("input", { id: "reps-name", maxlength: "120", required: true });
    // Visible labels (not only aria-label): a chair filling this in sees what each box is.
    const form = h("form", { id: "reps-form", class: "stack", hidden: !members.length },
      h("label", { for: "reps-member", "data-t": "reps.member" }, hc.t("reps.member")), member,
      h("label", { for: "reps-name", "data-t": "reps.name" }, hc.t("reps.name")), name,
      h("button", { type: "submit", "data-t": "reps.add" }, hc.t("reps.add")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const args = { member: member.value, name: name.value };
      HC.command("member.represent", args).then(() => {
        name.value = "";
        const org = hc.assembly.members[args.member].name;
        HC.toast(hc.t("reps.added", { name: args.name, member: org }));
      }).catch((err) => HC.explain(err));
    });
    features.append(h("section", { id: "invites-section", "aria-labelledby": "invites-h" },
      h("h2", { id: "invites-h", "data-t": "invites" }, hc.t("invites")),
      h("ul", { id: "invites-list", class: "plain" }),
      form));
  }

  function minter(hc, record) {
    if (!record.by) return hc.t("invites.cli");
    const p = hc.person(record.by);
    return hc.t("invites.by", { name: p ? p.name : record.by });
  }

  function render(hc) {
    const note = document.getElementById("observer-note");
    if (note) note.textContent = hc.t("observer.note");
    const list = document.getElementById("invites-list");
    if (!list || !hc.state.invites) return;
    const records = Object.values(hc.state.invites.invites).sort((a, b) => b.at - a.at);
    // Rebuilt only when the invites (or names, language) change: never on a level frame, so
    // a focused Revoke keeps its focus.
    const key = JSON.stringify([hc.lang, records, records.map((r) => r.by && hc.person(r.by)?.name)]);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    if (!records.length) {
      list.replaceChildren(h("li", { class: "muted" }, hc.t("invites.empty")));
      return;
    }
    list.replaceChildren(...records.map((r) => {
      const org = r.org && (hc.assembly.members || {})[r.org];
      return h("li", { class: r.revoked ? "revoked" : "", dataset: { jti: r.jti } },
        h("span", { class: "name" }, r.name), " ",
        h("span", { class: `role role-${r.role}` }, hc.t(`role.${r.role}`)), " ",
        h("small", { class: "org" }, [org ? org.name : r.org, r.booth].filter(Boolean).join(", ")),
        " ", h("small", { class: "muted" }, minter(hc, r)),
        r.revoked
          ? h("strong", { class: "badge" }, ` ${hc.t("invites.revoked")}`)
          : r.jti === hc.you.jti ? null // the chair's own invite: revoking it locks them out
          : h("button", {
            class: "small ghost revoke",
            onclick: () => run("invite.revoke", { jti: r.jti }),
          }, hc.t("invites.revoke")));
    }));
  }

  HC.register({ name: "invites", appliers, init, render });
})();
