// outdial console: a single page on the public API only (proto/openapi.yaml).
// The API key lives in sessionStorage (this tab only; never in a URL or a log).
"use strict";

const KEY = "outdial.key";
const E164 = /^\+[1-9]\d{7,14}$/;
const FINAL = new Set(["completed", "failed", "canceled"]);
const $ = (sel, root = document) => root.querySelector(sel);
const fmtTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const fmtNum = new Intl.NumberFormat(undefined);
let live = null; // the Live tab's stream, while it is shown
let refresh = null; // a page's periodic refresh

// ------------------------------------------------------------------ helpers

function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid);
  return el;
}

function when(iso) {
  return iso ? fmtTime.format(new Date(iso)) : "—";
}

function money(micros, currency = "USD") {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format((micros || 0) / 1e6);
}

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 5000);
}

class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (r.status === 401 && path !== "/v1/calls?limit=1") {
    signOut("Your API key was refused (revoked?). Sign in again.");
    throw new ApiError(401);
  }
  const text = await r.text();
  const data = text ? JSON.parse(text) : null;
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

function badge(status) {
  return h("span", { class: `badge ${status}`, text: status });
}

// ------------------------------------------------------------------ sign in

function signOut(reason) {
  sessionStorage.removeItem(KEY);
  stopPage();
  location.hash = "#/signin";
  render();
  if (reason) toast(reason);
}

function signInPage(main) {
  $("#top").hidden = true;
  const err = h("p", { class: "error", id: "key-error", role: "alert" });
  const input = h("input", { id: "key", type: "password", autocomplete: "off", spellcheck: "false",
                             "aria-describedby": "key-hint key-error", required: true });
  const form = h("form", { class: "card signin", onsubmit: async (e) => {
      e.preventDefault();
      err.textContent = "";
      const key = input.value.trim();
      if (!key) { err.textContent = "Paste an API key."; input.focus(); return; }
      sessionStorage.setItem(KEY, key);
      try {
        const r = await fetch("/v1/calls?limit=1", { headers: { Authorization: `Bearer ${key}` } });
        if (r.status === 401) throw new Error("This key is unknown or revoked.");
        if (r.status === 403) throw new Error("This key cannot read calls (it needs the sessions:read scope).");
        if (!r.ok) throw new Error(`The API answered ${r.status}; try again.`);
        location.hash = "#/calls";
        render();
      } catch (x) {
        sessionStorage.removeItem(KEY);
        err.textContent = x.message;
        input.setAttribute("aria-invalid", "true");
        input.focus();
      }
    } },
    h("h1", { text: "Sign in to outdial" }),
    h("label", { for: "key", text: "API key" }), input,
    h("p", { class: "hint", id: "key-hint",
             text: "Kept in this browser tab only and sent to this server's API. Signing out forgets it." }),
    err,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit", text: "Sign in" })));
  main.append(form);
  input.focus();
}

// ------------------------------------------------------------------ calls

const STATUSES = ["queued", "dialing", "connected", "completed", "failed", "canceled"];

async function callsPage(main, params) {
  const status = params.get("status") || "";
  const sel = h("select", { id: "f-status", onchange: () => {
      location.hash = "#/calls" + (sel.value ? `?status=${sel.value}` : "");
    } }, h("option", { value: "", text: "any" }), STATUSES.map((s) => h("option", { value: s, text: s })));
  sel.value = status;
  const tbody = h("tbody");
  main.append(
    h("div", { class: "head" }, h("h1", { text: "Calls" }),
      h("button", { class: "primary", type: "button", id: "new-call",
                    onclick: () => (location.hash = "#/calls/new"), text: "New outbound call" })),
    h("div", { class: "toolbar" }, h("div", {}, h("label", { for: "f-status", text: "Status" }), sel)),
    h("table", { class: "responsive", "aria-label": "Calls" },
      h("thead", {}, h("tr", {}, ["Created", "Phone", "Scenario", "Status", "Final state", "Cost"].map(
        (t) => h("th", { scope: "col", text: t })))), tbody));
  const load = async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (status) q.set("status", status);
    const page = await api("GET", `/v1/calls?${q}`);
    tbody.replaceChildren(...(page.data.length ? page.data.map((c) => h("tr", {},
      h("td", { "data-label": "Created" }, h("a", { href: `#/calls/${c.id}`, text: when(c.created_at) })),
      h("td", { "data-label": "Phone", text: c.phone }),
      h("td", { "data-label": "Scenario", text: c.scenario }),
      h("td", { "data-label": "Status" }, badge(c.status)),
      h("td", { "data-label": "Final state", text: c.final_state || "—" }),
      h("td", { "data-label": "Cost", class: "num", text: money(c.cost_micros) })))
      : [h("tr", {}, h("td", { colspan: "6", class: "empty", text: "No calls yet." }))]));
  };
  await load();
  refresh = setInterval(() => load().catch(() => {}), 3000);
}

function countryHint(phone) {
  const codes = { 1: "United States / Canada", 7: "Russia / Kazakhstan", 20: "Egypt", 27: "South Africa",
    30: "Greece", 31: "Netherlands", 32: "Belgium", 33: "France", 34: "Spain", 36: "Hungary", 39: "Italy",
    40: "Romania", 41: "Switzerland", 43: "Austria", 44: "United Kingdom", 45: "Denmark", 46: "Sweden",
    47: "Norway", 48: "Poland", 49: "Germany", 51: "Peru", 52: "Mexico", 54: "Argentina", 55: "Brazil",
    56: "Chile", 57: "Colombia", 61: "Australia", 62: "Indonesia", 63: "Philippines", 64: "New Zealand",
    65: "Singapore", 81: "Japan", 82: "South Korea", 86: "China", 90: "Türkiye", 91: "India",
    351: "Portugal", 352: "Luxembourg", 353: "Ireland", 358: "Finland", 420: "Czechia", 971: "UAE",
    972: "Israel" };
  const digits = phone.replace(/^\+/, "");
  for (const n of [3, 2, 1]) if (codes[digits.slice(0, n)]) return codes[digits.slice(0, n)];
  return "";
}

async function newCallPage(main) {
  const [scen, project] = await Promise.all([api("GET", "/v1/scenarios"), api("GET", "/v1/project")]);
  const errs = {};
  const field = (id, label, input, hint) => {
    errs[id] = h("p", { class: "error", id: `${id}-error` });
    input.id = id;
    input.setAttribute("aria-describedby", `${id}-hint ${id}-error`);
    return h("div", {}, h("label", { for: id, text: label }), input,
             h("p", { class: "hint", id: `${id}-hint` }, hint || ""), errs[id]);
  };
  const scenario = h("select", {}, scen.data.map((s) => h("option", { value: s.idn, text: s.idn })));
  const disclosure = h("div", { class: "disclosure", "aria-live": "polite" });
  const showDisclosure = () => {
    const s = scen.data.find((x) => x.idn === scenario.value);
    disclosure.textContent = s ? `The agent says: “${s.disclosure}”` : "";
  };
  scenario.addEventListener("change", showDisclosure);
  const phone = h("input", { type: "tel", inputmode: "tel", autocomplete: "off", placeholder: "+34612345678" });
  const phoneHint = h("span");
  phone.addEventListener("input", () => {
    const v = phone.value.trim();
    const ok = E164.test(v);
    phone.setAttribute("aria-invalid", v && !ok ? "true" : "false");
    errs.phone.textContent = v && !ok ? "Use E.164: + then the country code and number, digits only." : "";
    phoneHint.textContent = ok ? countryHint(v) : "";
  });
  const callerId = h("select", {}, (project.caller_ids || []).map((c, i) =>
    h("option", { value: c, text: i === 0 ? `${c} (default)` : c })));
  const schedule = h("input", { type: "datetime-local" });
  const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const metaRows = h("div", { id: "metadata" });
  const addMeta = () => {
    const n = metaRows.children.length + 1;
    const row = h("div", { class: "row meta" },
      h("input", { "aria-label": `Metadata key ${n}`, class: "meta-k", placeholder: "key" }),
      h("input", { "aria-label": `Metadata value ${n}`, class: "meta-v", placeholder: "value" }),
      h("button", { type: "button", class: "link", "aria-label": `Remove metadata row ${n}`, text: "Remove",
                    onclick: () => row.remove() }));
    metaRows.append(row);
  };
  const submit = h("button", { class: "primary", type: "submit", text: "Call" });
  const formErr = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "card", novalidate: true, onsubmit: async (e) => {
      e.preventDefault();
      Object.values(errs).forEach((x) => (x.textContent = ""));
      formErr.textContent = "";
      const body = { scenario: scenario.value, phone: phone.value.trim() };
      const metadata = {};
      for (const row of metaRows.children) {
        const k = $(".meta-k", row).value.trim();
        if (k) metadata[k] = $(".meta-v", row).value;
      }
      if (Object.keys(metadata).length) body.metadata = metadata;
      if (callerId.value) body.caller_id = callerId.value;
      if (schedule.value) body.scheduled_for = new Date(schedule.value).toISOString();
      submit.disabled = true;
      try {
        const call = await api("POST", "/v1/calls", body);
        toast("Call queued.");
        location.hash = `#/calls/${call.id}`;
      } catch (x) {
        const p = x.problem || {};
        const list = p.errors && p.errors.length ? p.errors : [{ field: fieldOf(p.code), message: x.message }];
        let shown = false;
        for (const fe of list) {
          const target = errs[fe.field === "scheduled_for" ? "schedule" : fe.field === "caller_id" ? "caller" : fe.field];
          if (target) { target.textContent = fe.message; shown = true; }
        }
        if (!shown) formErr.textContent = x.message;
        const first = form.querySelector(".error:not(:empty)");
        if (first) first.previousElementSibling.previousElementSibling?.focus?.();
      } finally {
        submit.disabled = false;
      }
    } },
    h("h1", { text: "New outbound call" }),
    h("div", { class: "grid2" },
      h("div", {}, field("scenario", "Scenario", scenario), disclosure),
      field("phone", "Phone (E.164)", phone, phoneHint)),
    h("div", { class: "grid2" },
      field("caller", "Caller ID", callerId, "The number the callee sees: one of the project's verified numbers."),
      field("schedule", "Schedule (optional)", schedule, `Your time zone: ${tz}. Empty: call now.`)),
    h("label", { text: "Metadata" }), metaRows,
    h("button", { type: "button", class: "link", onclick: addMeta, text: "+ Add metadata" }),
    formErr,
    h("div", { class: "actions" }, submit,
      h("button", { type: "button", onclick: () => (location.hash = "#/calls"), text: "Cancel" })));
  main.append(form);
  showDisclosure();
  phone.focus();
}

function fieldOf(code) {
  return { invalid_phone: "phone", phone_not_possible: "phone", phone_on_dnc_list: "phone",
           unknown_scenario: "scenario", caller_id_not_verified: "caller", scheduled_for_in_past: "schedule",
           scheduled_for_too_far: "schedule" }[code] || "";
}

async function callPage(main, id) {
  const box = h("div");
  main.append(h("p", {}, h("a", { href: "#/calls", text: "← Calls" })), box);
  const load = async () => {
    const c = await api("GET", `/v1/calls/${id}`);
    box.replaceChildren(
      h("h1", {}, `Call to ${c.phone} `, badge(c.status)),
      h("div", { class: "grid2" },
        h("section", { class: "card", "aria-label": "Summary" },
          h("dl", { class: "facts" },
            ...[["Scenario", c.scenario], ["Final state", c.final_state || "—"], ["Outcome", c.outcome || "—"],
                ["Goal completed", c.goal_completed === null ? "—" : c.goal_completed ? "yes" : "no"],
                ["Caller ID", c.caller_id || "—"], ["Scheduled for", when(c.scheduled_for)],
                ["Duration", c.duration_s === null ? "—" : `${fmtNum.format(c.duration_s)} s`],
                ["Cost", money(c.cost_micros)], ["Created", when(c.created_at)], ["Call id", c.id]]
              .flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: String(v) })])),
          h("h2", { text: "Metadata" }),
          Object.keys(c.metadata || {}).length
            ? h("dl", { class: "facts" }, ...Object.entries(c.metadata).flatMap(([k, v]) =>
                [h("dt", { text: k }), h("dd", { text: typeof v === "string" ? v : JSON.stringify(v) })]))
            : h("p", { class: "hint", text: "None." })),
        h("section", { class: "card", "aria-label": "Timeline" }, h("h2", { text: "Timeline" }),
          h("ol", { class: "timeline", id: "timeline" }, (c.events || []).map((e) =>
            h("li", {}, h("strong", { text: e.status }), ` · ${when(e.at)}`,
              e.detail ? h("div", { class: "hint", text: e.detail }) : null))))));
    if (FINAL.has(c.status)) stopPage();
  };
  await load();
  refresh = setInterval(() => load().catch(() => {}), 1500);
}

// ------------------------------------------------------------------ live

function livePage(main) {
  const state = h("p", { class: "status-line", role: "status", text: "Connecting…" });
  const tbody = h("tbody");
  main.append(h("h1", { text: "Live" }),
    h("p", { class: "hint", text: "Calls dialing or connected right now, as they happen." }), state,
    h("table", { class: "responsive", "aria-label": "Live calls" },
      h("thead", {}, h("tr", {}, ["Phone", "Scenario", "Status", "Elapsed", ""].map((t) =>
        h("th", { scope: "col", text: t })))), tbody));
  const calls = new Map();
  const draw = () => {
    const now = Date.now();
    const rows = [...calls.values()].sort((a, b) => a.since - b.since).map((c) => h("tr", { "data-call": c.call_id },
      h("td", { "data-label": "Phone", text: c.phone }),
      h("td", { "data-label": "Scenario", text: c.scenario }),
      h("td", { "data-label": "Status" }, badge(c.status)),
      h("td", { "data-label": "Elapsed", class: "num", text: `${fmtNum.format(Math.max(0, Math.round((now - c.since) / 1000)))} s` }),
      h("td", {}, h("a", { href: `#/calls/${c.call_id}`, text: "Open" }))));
    tbody.replaceChildren(...(rows.length ? rows
      : [h("tr", {}, h("td", { colspan: "5", class: "empty", text: "No call in progress." }))]));
  };
  const onEvent = (ev) => {
    if (ev.status === "dialing" || ev.status === "connected") {
      const prev = calls.get(ev.call_id);
      calls.set(ev.call_id, { ...ev, since: prev && prev.status === ev.status ? prev.since : Date.parse(ev.at) });
    } else if (FINAL.has(ev.status)) {
      calls.delete(ev.call_id);
      live.ended.push(ev);
    }
    draw();
  };
  live = { abort: new AbortController(), lastId: null, ended: [], timer: setInterval(draw, 1000) };
  window.__outdialLive = live; // for the browser tests: the final events seen
  draw();
  (async function stream() {
    let backoff = 500;
    while (live && !live.abort.signal.aborted) {
      try {
        const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, Accept: "text/event-stream" };
        if (live.lastId) headers["Last-Event-ID"] = live.lastId;
        const r = await fetch("/v1/events", { headers, signal: live.abort.signal });
        if (r.status === 401) return signOut("Your API key was refused. Sign in again.");
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        state.textContent = "Live: updates as they happen.";
        backoff = 500;
        const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let data = "", id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("data:")) data += line.slice(5).trimStart();
              else if (line.startsWith("id:")) id = line.slice(3).trim();
            }
            if (id) live.lastId = id;
            if (data) onEvent(JSON.parse(data));
          }
        }
        throw new Error("stream ended");
      } catch (x) {
        if (!live || live.abort.signal.aborted) return;
        state.textContent = "Connection lost; reconnecting…";
        await new Promise((res) => setTimeout(res, backoff));
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  })();
}

// ------------------------------------------------------------------ routing

function stopPage() {
  if (refresh) clearInterval(refresh);
  refresh = null;
  if (live) {
    live.abort.abort();
    clearInterval(live.timer);
    live = null;
  }
}

async function render() {
  stopPage();
  const main = $("#main");
  main.replaceChildren();
  const [path, query] = (location.hash.slice(1) || "/calls").split("?");
  const params = new URLSearchParams(query || "");
  if (!sessionStorage.getItem(KEY)) return signInPage(main);
  $("#top").hidden = false;
  const tab = path.split("/")[1];
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (path === "/calls") await callsPage(main, params);
    else if (path === "/calls/new") await newCallPage(main);
    else if (path.startsWith("/calls/")) await callPage(main, path.slice(7));
    else if (path === "/live") livePage(main);
    else location.hash = "#/calls";
  } catch (x) {
    if (x.status === 401) return;
    main.append(h("p", { class: "error", role: "alert",
      text: x.status === 403 ? "Your API key's scopes do not allow this page." : `Could not load: ${x.message}` }));
  }
}

window.addEventListener("hashchange", render);
document.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", () => signOut("Signed out."));
  render();
});
