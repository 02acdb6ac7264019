// outdial console: a single page on the public API only (proto/openapi.yaml).
// The API key lives in sessionStorage (this tab only; never in a URL or a log).
"use strict";

const KEY = "outdial.key";
const E164 = /^\+[1-9]\d{7,14}$/;
const FINAL = new Set(["completed", "failed", "canceled"]);
const $ = (sel, root = document) => root.querySelector(sel);
const fmtTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const fmtNum = new Intl.NumberFormat(undefined);
const fmtDay = new Intl.DateTimeFormat(undefined, { dateStyle: "medium" });
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

// Calls cost fractions of a cent: an amount that would show as 0.00 shows its
// first significant digits instead (down to micro-units).
const moneyFormats = new Map(); // building an Intl.NumberFormat costs more than using one
function money(micros, currency = "USD") {
  const v = (micros || 0) / 1e6;
  const small = v !== 0 && Math.abs(v) < 0.01;
  const k = `${currency}${small}`;
  if (!moneyFormats.has(k)) moneyFormats.set(k, new Intl.NumberFormat(undefined, { style: "currency", currency,
    ...(small ? { maximumSignificantDigits: 2 } : {}) }));
  return moneyFormats.get(k).format(v);
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

// Goes to a page: a new hash renders it through hashchange, the same one again here.
function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

// A page's periodic refresh, for as long as its view is shown (a page whose
// render was overtaken by a newer one never starts one).
function every(view, ms, load) {
  if (!view.isConnected) return;
  clearInterval(refresh);
  const id = setInterval(() => (view.isConnected ? load().catch(() => {}) : clearInterval(id)), ms);
  refresh = id;
}

// Replaces el's children; the element that had the focus in it gets it back
// (found again by id, label, link or text), so a page that refreshes itself
// every second stays usable from the keyboard.
function redraw(el, ...kids) {
  const had = el.contains(document.activeElement) ? document.activeElement : null;
  const key = (x) => x.id || x.getAttribute("aria-label") || x.getAttribute("href") || (x.tagName === "H1" ? "h1" : x.textContent);
  const k = had && key(had);
  el.replaceChildren(...kids);
  const again = had && [...el.querySelectorAll(had.tagName)].find((x) => key(x) === k);
  if (again) {
    if (again.tagName === "H1") again.tabIndex = -1;
    again.focus({ preventScroll: true });
  }
}

// <input type="datetime-local"> speaks the user's local time; the API speaks UTC.
function localInput(iso) {
  const d = iso ? new Date(iso) : null;
  if (!d || isNaN(d)) return "";
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}
const utc = (local) => (local ? new Date(local).toISOString() : "");
const TZ = Intl.DateTimeFormat().resolvedOptions().timeZone;

function select(id, choices, value = "") {
  const el = h("select", { id }, choices.map(([v, label]) => h("option", { value: v, text: label })));
  el.value = value;
  return el;
}

// A secret the API shows once (an API key, a webhook signing secret).
function shownOnce(id, label, value, warning, note) {
  const field = h("input", { id, readonly: true, value, "aria-label": label });
  const card = h("div", { class: "card warn", role: "alert" },
    h("p", {}, h("strong", { text: warning })),
    h("div", { class: "row" }, field, h("button", { type: "button", onclick: async () => {
      field.select();
      try { await navigator.clipboard.writeText(value); toast("Copied."); } catch (x) { toast("Select it and copy it."); }
    }, text: "Copy" })),
    note ? h("p", { class: "hint", text: note }) : null);
  setTimeout(() => { field.focus(); field.select(); });
  return card;
}

// ------------------------------------------------------------------ sign in

const SCOPES_KEY = "outdial.scopes";

// What the key may do, found by asking (the API has no "who am I"): a 403
// means the scope is missing. The POST sends an empty body: a key that may
// trigger gets a 4xx about the body, and nothing is created.
async function probeScopes(key) {
  const status = (path, init = {}) => fetch(path, { ...init, headers: { Authorization: `Bearer ${key}`,
    ...(init.body ? { "Content-Type": "application/json" } : {}) } }).then((r) => r.status, () => 0);
  const [trigger, admin, dnc, webhooks] = await Promise.all([
    status("/v1/calls", { method: "POST", body: "{}" }), status("/v1/api-keys"), status("/v1/dnc?limit=1"),
    status("/v1/webhooks")]);
  return { read: true, trigger: trigger !== 403, admin: admin !== 403, dnc: dnc !== 403, webhooks: webhooks !== 403 };
}

function can(scope) {
  try { return Boolean(JSON.parse(sessionStorage.getItem(SCOPES_KEY) || "{}")[scope]); } catch (x) { return false; }
}

function signOut(reason) {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(SCOPES_KEY);
  stopPage();
  go("#/signin");
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
        sessionStorage.setItem(SCOPES_KEY, JSON.stringify(await probeScopes(key)));
        go("#/calls");
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
const FINAL_STATES = ["completed", "no_answer", "busy", "voicemail_detected", "invalid_number",
  "caller_id_unauthorized", "provider_error", "internal_error", "canceled", "dnc_blocked"];
const CALL_FILTERS = ["status", "final_state", "batch_id", "phone", "since", "until"];

function callRow(c) {
  return h("tr", { "data-call": c.id },
    h("td", { "data-label": "Created" }, h("a", { href: `#/calls/${c.id}`, text: when(c.created_at) })),
    h("td", { "data-label": "Phone", text: c.phone }),
    h("td", { "data-label": "Scenario", class: "wide-only", text: c.scenario }),
    h("td", { "data-label": "Status" }, badge(c.status)),
    h("td", { "data-label": "Final state", text: c.final_state || "—" }),
    h("td", { "data-label": "Cost", class: "num", text: money(c.cost_micros) }));
}

async function callsPage(main, params) {
  const f = Object.fromEntries(CALL_FILTERS.map((k) => [k, params.get(k) || ""]));
  const status = select("f-status", [["", "any"], ...STATUSES.map((x) => [x, x])], f.status);
  const finalState = select("f-final", [["", "any"], ...FINAL_STATES.map((x) => [x, x])], f.final_state);
  const batch = select("f-batch", [["", "any"], ...(f.batch_id ? [[f.batch_id, f.batch_id]] : [])], f.batch_id);
  // the batches to choose from arrive with the list, not before it
  const batches = api("GET", "/v1/batches?limit=100").then((page) => {
    const chosen = batch.value;
    batch.replaceChildren(h("option", { value: "", text: "any" }), ...page.data.map((b) =>
      h("option", { value: b.id, text: `${b.file_name || "batch"} · ${when(b.created_at)}` })));
    if (chosen && !page.data.some((b) => b.id === chosen)) batch.append(h("option", { value: chosen, text: chosen }));
    batch.value = chosen;
  }, () => {});
  const phone = h("input", { id: "f-phone", type: "search", inputmode: "tel", value: f.phone, placeholder: "+34612345678",
                             "aria-describedby": "f-error" });
  const since = h("input", { id: "f-since", type: "datetime-local", value: localInput(f.since) });
  const until = h("input", { id: "f-until", type: "datetime-local", value: localInput(f.until) });
  const err = h("p", { class: "error", id: "f-error", role: "alert" });
  const shown = h("p", { class: "status-line", id: "calls-shown", role: "status" });
  const more = h("button", { type: "button", id: "calls-more", hidden: true, text: "Older calls" });
  const tbody = h("tbody");
  const labelled = (id, label, input) => h("div", {}, h("label", { for: id, text: label }), input);
  const filtered = CALL_FILTERS.some((k) => f[k]);
  main.append(
    h("div", { class: "head" }, h("h1", { text: "Calls" }),
      can("trigger") ? h("button", { class: "primary", type: "button", id: "new-call",
                    onclick: () => (location.hash = "#/calls/new"), text: "New outbound call" }) : null),
    // on a phone the filters fold away unless one is in use
    h("details", { class: "filters-box", open: filtered || !matchMedia("(max-width: 700px)").matches },
      h("summary", { text: filtered ? "Filters (in use)" : "Filters" }),
    h("form", { class: "toolbar filters", role: "search", "aria-label": "Filter calls", novalidate: true,
                onsubmit: (e) => {
        e.preventDefault();
        const v = phone.value.trim().replace(/[\s().-]/g, "");
        if (v && !E164.test(v)) {
          err.textContent = "Phone: use E.164, + then the country code and number.";
          phone.setAttribute("aria-invalid", "true");
          phone.focus();
          return;
        }
        const q = new URLSearchParams();
        for (const [k, x] of [["status", status.value], ["final_state", finalState.value], ["batch_id", batch.value],
                              ["phone", v], ["since", utc(since.value)], ["until", utc(until.value)]]) if (x) q.set(k, x);
        const next = "#/calls" + (String(q) ? `?${q}` : "");
        go(next);
      } },
      labelled("f-status", "Status", status), labelled("f-final", "Final state", finalState),
      labelled("f-batch", "Batch", batch), labelled("f-phone", "Phone", phone),
      labelled("f-since", "Created from", since), labelled("f-until", "Created before", until),
      h("div", { class: "toolbar-actions" }, h("button", { type: "submit", text: "Apply" }),
        filtered ? h("a", { href: "#/calls", class: "button-like", text: "Clear filters" }) : null))),
    err, shown,
    h("table", { class: "responsive", "aria-label": "Calls" },
      h("thead", {}, h("tr", {}, ["Created", "Phone", "Scenario", "Status", "Final state", "Cost"].map(
        (t) => h("th", { scope: "col", text: t })))), tbody),
    h("div", { class: "actions" }, more));
  const q = new URLSearchParams({ limit: "50" });
  for (const k of CALL_FILTERS) if (f[k]) q.set(k, f[k]);
  let rows = 0;
  const load = async () => {
    let page;
    try { page = await api("GET", `/v1/calls?${q}`); }
    catch (x) { if (x.status === 400) { err.textContent = x.message; return; } throw x; }
    rows = page.data.length;
    redraw(tbody, ...(rows ? page.data.map(callRow)
      : [h("tr", {}, h("td", { colspan: "6", class: "empty", text: filtered ? "No call matches." : "No calls yet." }))]));
    more.hidden = !page.next_cursor;
    more.dataset.cursor = page.next_cursor || "";
    shown.textContent = `${fmtNum.format(rows)} call${rows === 1 ? "" : "s"} shown${page.next_cursor ? ", more below" : ""}.`;
  };
  more.addEventListener("click", async () => {
    stopPage(); // older pages do not refresh themselves: the list stays put while it is read
    const page = await api("GET", `/v1/calls?${q}&cursor=${more.dataset.cursor}`);
    tbody.append(...page.data.map(callRow));
    rows += page.data.length;
    more.hidden = !page.next_cursor;
    more.dataset.cursor = page.next_cursor || "";
    shown.textContent = `${fmtNum.format(rows)} calls shown${page.next_cursor ? ", more below" : ""}.`;
  });
  await Promise.all([load(), batches]);
  every(main, 3000, load);
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
    redraw(box,
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
  every(main, 1500, load);
}

// ------------------------------------------------------------------ live

function livePage(main) {
  const state = h("p", { class: "status-line", role: "status", text: "Connecting…" });
  const tbody = h("tbody");
  main.append(h("h1", { text: "Live" }),
    h("p", { class: "hint", text: "Calls dialing or connected right now." }), state,
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
    redraw(tbody, ...(rows.length ? rows
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
        state.classList.remove("lost");
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
        state.classList.add("lost");
        await new Promise((res) => setTimeout(res, backoff));
        backoff = Math.min(backoff * 2, 10000);
      }
    }
  })();
}

// ------------------------------------------------------------------ batches

function parseCsvPreview(text, maxRows = 6) {
  // enough of RFC 4180 for a preview: quotes, doubled quotes, CRLF/LF, a BOM
  const rows = [];
  let row = [], cell = "", q = false, i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  for (; i < text.length && rows.length < maxRows; i++) {
    const c = text[i];
    if (q) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
      else if (c === '"') q = false;
      else cell += c;
    } else if (c === '"') q = true;
    else if (c === ",") { row.push(cell); cell = ""; }
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(cell); cell = "";
      if (row.length > 1 || row[0] !== "") rows.push(row);
      row = [];
    } else cell += c;
  }
  if (rows.length < maxRows && (cell || row.length)) { row.push(cell); rows.push(row); }
  return rows;
}

async function batchesPage(main) {
  const tbody = h("tbody");
  main.append(
    h("div", { class: "head" }, h("h1", { text: "Batches" }),
      can("trigger") ? h("button", { class: "primary", type: "button", onclick: () => (location.hash = "#/batches/new"),
                    text: "New batch" }) : null),
    h("table", { class: "responsive", "aria-label": "Batches" },
      h("thead", {}, h("tr", {}, ["Created", "File", "Status", "Rows", "Completed", "Failed"].map(
        (t) => h("th", { scope: "col", text: t })))), tbody));
  const load = async () => {
    const page = await api("GET", "/v1/batches?limit=50");
    tbody.replaceChildren(...(page.data.length ? page.data.map((b) => h("tr", {},
      h("td", { "data-label": "Created" }, h("a", { href: `#/batches/${b.id}`, text: when(b.created_at) })),
      h("td", { "data-label": "File", text: b.file_name || "—" }),
      h("td", { "data-label": "Status" }, badge(b.status)),
      h("td", { "data-label": "Rows", class: "num", text: fmtNum.format(b.total_rows) }),
      h("td", { "data-label": "Completed", class: "num", text: fmtNum.format(b.counts.completed) }),
      h("td", { "data-label": "Failed", class: "num", text: fmtNum.format(b.counts.failed) })))
      : [h("tr", {}, h("td", { colspan: "6", class: "empty", text: "No batches yet." }))]));
  };
  await load();
  every(main, 3000, load);
}

async function newBatchPage(main) {
  const [scen, project] = await Promise.all([api("GET", "/v1/scenarios"), api("GET", "/v1/project")]);
  const file = h("input", { type: "file", id: "b-file", accept: ".csv,text/csv", "aria-describedby": "b-file-hint" });
  const preview = h("div", { id: "b-preview", "aria-live": "polite" });
  const scenario = h("select", { id: "b-scenario" }, scen.data.map((x) => h("option", { value: x.idn, text: x.idn })));
  const pacing = h("input", { id: "b-pacing", type: "number", min: "1", max: String(project.pacing_per_min),
                              value: String(Math.min(5, project.pacing_per_min)), "aria-describedby": "b-pacing-hint" });
  const start = h("input", { id: "b-start", type: "datetime-local", "aria-describedby": "b-start-hint" });
  const caller = h("select", { id: "b-caller" }, (project.caller_ids || []).map((c, i) =>
    h("option", { value: c, text: i === 0 ? `${c} (default)` : c })));
  const progress = h("progress", { id: "b-progress", max: "100", value: "0", hidden: true, "aria-label": "Upload" });
  const err = h("p", { class: "error", role: "alert", id: "b-error" });
  const submit = h("button", { class: "primary", type: "submit", text: "Upload" });
  file.addEventListener("change", async () => {
    preview.replaceChildren();
    const f = file.files[0];
    if (!f) return;
    const rows = parseCsvPreview(await f.slice(0, 64 * 1024).text());
    if (!rows.length) { preview.append(h("p", { class: "error", text: "The file looks empty." })); return; }
    const header = rows[0];
    const pi = header.findIndex((x) => x.trim().toLowerCase() === "phone");
    preview.append(
      h("p", { class: "hint" }, pi < 0 ? h("span", { class: "error", text: "No “phone” column: the upload will be refused." })
        : `“${header[pi]}” is the phone column; ${header.length - 1 ? header.filter((_, i) => i !== pi).join(", ") + " become metadata" : "no other column"}.`),
      h("table", { "aria-label": "Preview of the first rows" },
        h("thead", {}, h("tr", {}, header.map((x, i) => h("th", { scope: "col", text: i === pi ? `${x} (phone)` : x })))),
        h("tbody", {}, rows.slice(1).map((r) => h("tr", {}, header.map((_, i) => h("td", { text: r[i] ?? "" })))))));
  });
  const form = h("form", { class: "card", novalidate: true, onsubmit: (e) => {
      e.preventDefault();
      err.textContent = "";
      if (!file.files[0]) { err.textContent = "Choose a CSV file."; file.focus(); return; }
      const fd = new FormData();
      fd.append("file", file.files[0], file.files[0].name);
      fd.append("scenario", scenario.value);
      fd.append("pacing_per_min", pacing.value);
      if (start.value) fd.append("start_at", new Date(start.value).toISOString());
      if (caller.value) fd.append("caller_id", caller.value);
      const xhr = new XMLHttpRequest(); // fetch cannot report upload progress
      xhr.open("POST", "/v1/batches");
      xhr.setRequestHeader("Authorization", `Bearer ${sessionStorage.getItem(KEY) || ""}`);
      xhr.upload.onprogress = (ev) => { if (ev.lengthComputable) progress.value = Math.round((ev.loaded / ev.total) * 100); };
      xhr.onload = () => {
        submit.disabled = false;
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (x) { /* not JSON */ }
        if (xhr.status === 201 || xhr.status === 200) { toast("Batch uploaded."); location.hash = `#/batches/${body.id}`; }
        else { progress.hidden = true; err.textContent = (body && (body.detail || body.title)) || `Upload failed (${xhr.status}).`; }
      };
      xhr.onerror = () => { submit.disabled = false; progress.hidden = true; err.textContent = "Upload failed: network error."; };
      progress.hidden = false;
      progress.value = 0;
      submit.disabled = true;
      xhr.send(fd);
    } },
    h("h1", { text: "New batch" }),
    h("label", { for: "b-file", text: "Contact list (CSV)" }), file,
    h("p", { class: "hint", id: "b-file-hint", text: "A “phone” column (E.164); every other column becomes metadata of its row's call." }),
    preview,
    h("div", { class: "grid2" },
      h("div", {}, h("label", { for: "b-scenario", text: "Scenario" }), scenario),
      h("div", {}, h("label", { for: "b-pacing", text: "Pacing (calls per minute)" }), pacing,
        h("p", { class: "hint", id: "b-pacing-hint", text: `At most the project's ${project.pacing_per_min} per minute.` }))),
    h("div", { class: "grid2" },
      h("div", {}, h("label", { for: "b-start", text: "Start (optional)" }), start,
        h("p", { class: "hint", id: "b-start-hint", text: `Your time zone: ${Intl.DateTimeFormat().resolvedOptions().timeZone}. Empty: now.` })),
      h("div", {}, h("label", { for: "b-caller", text: "Caller ID" }), caller)),
    progress, err,
    h("div", { class: "actions" }, submit,
      h("button", { type: "button", onclick: () => (location.hash = "#/batches"), text: "Cancel" })));
  main.append(form);
  file.focus();
}

async function downloadResults(id) {
  const r = await fetch(`/v1/batches/${id}/results.csv`, {
    headers: { Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}` } });
  if (!r.ok) { toast(`Download failed (${r.status}).`); return; }
  const url = URL.createObjectURL(await r.blob());
  const a = h("a", { href: url, download: `batch-${id}-results.csv` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function batchPage(main, id) {
  const box = h("div");
  main.append(h("p", {}, h("a", { href: "#/batches", text: "← Batches" })), box);
  const act = async (what) => {
    try { await api("POST", `/v1/batches/${id}/${what}`); await load(); }
    catch (x) { toast(x.message); }
  };
  const pct = (x) => (x === null || x === undefined ? "—" : new Intl.NumberFormat(undefined, { style: "percent", maximumFractionDigits: 1 }).format(x));
  const load = async () => {
    const b = await api("GET", `/v1/batches/${id}`);
    const done = b.counts.completed + b.counts.failed + b.counts.canceled;
    const maxFs = Math.max(1, ...FINAL_STATES.map((f) => b.final_states[f] || 0));
    const calls = await api("GET", `/v1/calls?batch_id=${id}&limit=100`).catch(() => ({ data: [] }));
    redraw(box,
      h("div", { class: "head" }, h("h1", {}, `${b.file_name || "Batch"} `, badge(b.status)),
        h("div", { class: "actions", id: "batch-actions" },
          !can("trigger") ? null : b.status === "paused" ? h("button", { type: "button", id: "batch-toggle", onclick: () => act("resume"), text: "Resume" })
            : ["scheduled", "running", "validating"].includes(b.status) ? h("button", { type: "button", id: "batch-toggle", onclick: () => act("pause"), text: "Pause" }) : null,
          !can("trigger") || ["completed", "canceled"].includes(b.status) ? null : h("button", { type: "button", id: "batch-cancel", onclick: () => {
            if (confirm("Cancel this batch? Its calls not yet dialed end as canceled.")) act("cancel");
          }, text: "Cancel batch" }),
          b.status === "validating" ? null : h("button", { type: "button", class: "primary", id: "download",
            onclick: () => downloadResults(id), text: "Download results CSV" }))),
      h("progress", { max: String(Math.max(1, b.accepted_rows)), value: String(done), "aria-label": "Calls finished",
                      class: "wide" }),
      h("p", { class: "status-line", id: "batch-progress",
               text: `${fmtNum.format(done)} of ${fmtNum.format(b.accepted_rows)} calls finished · rows: ${fmtNum.format(b.total_rows)}, rejected: ${fmtNum.format(b.rejected_rows)}` }),
      h("div", { class: "stats", id: "batch-counts" }, ["queued", "dialing", "connected", "completed", "failed", "canceled"].map((k) =>
        h("div", { class: "stat" }, h("span", { class: "stat-n", "data-count": k, text: fmtNum.format(b.counts[k]) }), h("span", { text: k }))),
        h("div", { class: "stat" }, h("span", { class: "stat-n", text: pct(b.success_rate) }), h("span", { text: "success rate" })),
        h("div", { class: "stat" }, h("span", { class: "stat-n", text: pct(b.goal_completion_rate) }), h("span", { text: "goal completion" }))),
      h("div", { class: "grid2" },
        h("section", { class: "card", "aria-label": "Final states" }, h("h2", { text: "Final states" }),
          h("ul", { class: "bars" }, FINAL_STATES.map((f) => h("li", {},
            h("span", { class: "bar-label", text: f }),
            h("span", { class: "bar" }, h("span", { class: `bar-fill w${Math.round(((b.final_states[f] || 0) / maxFs) * 20)}` })),
            h("span", { class: "num", text: fmtNum.format(b.final_states[f] || 0) }))))),
        h("section", { class: "card", "aria-label": "Row errors" }, h("h2", { text: "Row errors" }),
          b.row_errors && b.row_errors.length
            ? h("table", { "aria-label": "Row errors" }, h("thead", {}, h("tr", {}, h("th", { text: "Row" }), h("th", { text: "Error" }))),
                h("tbody", {}, b.row_errors.map((e) => h("tr", {}, h("td", { class: "num", text: String(e.row) }), h("td", { text: e.code })))))
            : h("p", { class: "hint", text: "None." }))),
      h("h2", { text: "Calls" }),
      h("table", { class: "responsive", "aria-label": "Calls of the batch" },
        h("thead", {}, h("tr", {}, ["Phone", "Status", "Final state", "Outcome", "Cost"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, calls.data.map((c) => h("tr", {},
          h("td", { "data-label": "Phone" }, h("a", { href: `#/calls/${c.id}`, text: c.phone })),
          h("td", { "data-label": "Status" }, badge(c.status)),
          h("td", { "data-label": "Final state", text: c.final_state || "—" }),
          h("td", { "data-label": "Outcome", text: c.outcome || "—" }),
          h("td", { "data-label": "Cost", class: "num", text: money(c.cost_micros) }))))));
    if (["completed", "canceled"].includes(b.status)) stopPage();
  };
  await load();
  every(main, 1500, load);
}

// ------------------------------------------------------------------ API keys

const SCOPES = ["outbound:trigger", "sessions:read", "webhooks:manage", "dnc:manage", "admin"];

// the key this tab is signed in with (a key's prefix is its first characters)
const mine = (k) => (sessionStorage.getItem(KEY) || "").startsWith(k.prefix);

async function keysPage(main) {
  const name = h("input", { id: "k-name", maxlength: "100", placeholder: "e.g. CRM integration" });
  const boxes = SCOPES.map((sc) => h("label", { class: "check" },
    h("input", { type: "checkbox", value: sc, checked: sc === "outbound:trigger" }), ` ${sc}`));
  const shown = h("div", { id: "k-new", "aria-live": "polite" });
  const tbody = h("tbody");
  const issue = async (body) => {
    const k = await api("POST", "/v1/api-keys", body);
    shown.replaceChildren(shownOnce("k-value", "The new API key", k.key,
                                    "Copy this key now: it will not be shown again."));
    await load();
    return k;
  };
  const load = async () => {
    const page = await api("GET", "/v1/api-keys");
    tbody.replaceChildren(...page.data.map((k) => h("tr", { "data-key": k.id },
      h("td", { "data-label": "Name", text: k.name || "—" }),
      h("td", { "data-label": "Prefix" }, h("code", { text: k.prefix })),
      h("td", { "data-label": "Scopes", text: k.scopes.join(", ") }),
      h("td", { "data-label": "Last used", text: when(k.last_used_at) }),
      h("td", { "data-label": "Status", text: k.revoked_at ? `revoked ${when(k.revoked_at)}` : "active" }),
      h("td", {}, k.revoked_at ? null : h("div", { class: "row" },
        h("button", { type: "button", "aria-label": `Rotate ${k.name || k.prefix}`, text: "Rotate", onclick: async () => {
          if (!confirm(`Issue a new key with the same scopes and revoke ${k.prefix}…?`)) return;
          const own = mine(k);
          const fresh = await issue({ name: k.name, scopes: k.scopes });
          if (own) sessionStorage.setItem(KEY, fresh.key); // this tab goes on with the new key
          await api("DELETE", `/v1/api-keys/${k.id}`);
          await load();
          toast(own ? "Rotated; this tab now uses the new key." : "Rotated: the old key is revoked.");
        } }),
        h("button", { type: "button", "aria-label": `Revoke ${k.name || k.prefix}`, text: "Revoke", onclick: async () => {
          if (!confirm(mine(k) ? `Revoke ${k.prefix}…, the key you are signed in with? You will be signed out.`
                               : `Revoke ${k.prefix}…? Requests with it are refused within seconds.`)) return;
          await api("DELETE", `/v1/api-keys/${k.id}`);
          toast("Key revoked.");
          await load();
        } }))))));
  };
  main.append(h("h1", { text: "API keys" }), connectionsNav("keys"),
    h("form", { class: "card", onsubmit: async (e) => {
        e.preventDefault();
        const scopes = boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);
        if (!scopes.length) { toast("Choose at least one scope."); return; }
        try { await issue({ name: name.value.trim(), scopes }); } catch (x) { toast(x.message); }
      } },
      h("h2", { text: "Issue a key" }), h("label", { for: "k-name", text: "Name" }), name,
      h("fieldset", { class: "scopes" }, h("legend", { text: "Scopes" }), boxes),
      h("div", { class: "actions" }, h("button", { class: "primary", type: "submit", text: "Issue key" }))),
    shown,
    h("h2", { text: "Keys" }),
    h("table", { class: "responsive", "aria-label": "API keys" },
      h("thead", {}, h("tr", {}, ["Name", "Prefix", "Scopes", "Last used", "Status", ""].map((t) => h("th", { scope: "col", text: t })))),
      tbody));
  await load();
}

// ------------------------------------------------------------------ DNC

async function dncPage(main) {
  const add = h("input", { id: "d-add", type: "tel", placeholder: "+34612345678" });
  const search = h("input", { id: "d-search", type: "search", placeholder: "+34612345678" });
  const csv = h("input", { id: "d-csv", type: "file", accept: ".csv,text/csv" });
  const result = h("p", { class: "status-line", role: "status", id: "d-result" });
  const tbody = h("tbody");
  const load = async () => {
    const q = search.value.trim() ? `?phone=${encodeURIComponent(search.value.trim())}` : "?limit=100";
    let page;
    try { page = await api("GET", `/v1/dnc${q}`); }
    catch (x) { result.textContent = x.message; return; }
    tbody.replaceChildren(...(page.data.length ? page.data.map((d) => h("tr", {},
      h("td", { "data-label": "Number", text: d.phone }), h("td", { "data-label": "Source", text: d.source }),
      h("td", { "data-label": "Added", text: when(d.created_at) }),
      h("td", {}, h("button", { type: "button", "aria-label": `Remove ${d.phone}`, text: "Remove", onclick: async () => {
        if (!confirm(`Remove ${d.phone} from the do-not-call list? Calls to it will be placed again.`)) return;
        await api("DELETE", `/v1/dnc/${encodeURIComponent(d.phone)}`);
        await load();
      } }))))
      : [h("tr", {}, h("td", { colspan: "4", class: "empty", text: "No number." }))]));
  };
  const report = (r) => {
    result.textContent = `${fmtNum.format(r.added)} added, ${fmtNum.format(r.already_listed)} already listed, ${fmtNum.format(r.invalid_count)} invalid.`;
  };
  main.append(h("h1", { text: "Do-not-call list" }),
    h("div", { class: "grid2" },
      h("form", { class: "card", onsubmit: async (e) => {
          e.preventDefault();
          try { report(await api("POST", "/v1/dnc", { phones: [add.value.trim()] })); add.value = ""; await load(); }
          catch (x) { result.textContent = x.message; }
        } },
        h("label", { for: "d-add", text: "Add a number" }), h("div", { class: "row" }, add,
          h("button", { class: "primary", type: "submit", text: "Add" }))),
      h("form", { class: "card", onsubmit: async (e) => {
          e.preventDefault();
          const f = csv.files[0];
          if (!f) return;
          const r = await fetch("/v1/dnc", { method: "POST", body: f, headers: {
            Authorization: `Bearer ${sessionStorage.getItem(KEY) || ""}`, "Content-Type": "text/csv" } });
          const body = await r.json();
          if (r.ok) { report(body); await load(); } else result.textContent = body.detail || `Import failed (${r.status}).`;
        } },
        h("label", { for: "d-csv", text: "Import a CSV" }), h("div", { class: "row" }, csv,
          h("button", { type: "submit", text: "Import" })),
        h("p", { class: "hint", text: "A “phone” column, or one number per line." }))),
    result,
    h("form", { class: "toolbar", role: "search", onsubmit: (e) => { e.preventDefault(); load(); } },
      h("div", {}, h("label", { for: "d-search", text: "Find a number" }), search),
      h("button", { type: "submit", text: "Search" })),
    h("table", { class: "responsive", "aria-label": "Numbers on the list" },
      h("thead", {}, h("tr", {}, ["Number", "Source", "Added", ""].map((t) => h("th", { scope: "col", text: t })))), tbody));
  await load();
}

// ------------------------------------------------------------------ connections

// API keys and webhooks: the two ways other systems connect to the project.
function connectionsNav(current) {
  const tabs = [["keys", "API keys", "admin"], ["webhooks", "Webhooks", "webhooks"]].filter(([, , sc]) => can(sc));
  return h("nav", { class: "subnav", "aria-label": "Connections" }, h("ul", {}, tabs.map(([t, label]) =>
    h("li", {}, h("a", { href: `#/${t}`, "aria-current": t === current ? "page" : null, text: label })))));
}

const EVENT_TYPES = ["call.queued", "call.dialing", "call.connected", "call.completed", "call.failed", "call.canceled",
  "batch.completed", "caller_id.reputation_warning"];

function eventBoxes(checked) {
  return EVENT_TYPES.map((t) => h("label", { class: "check" },
    h("input", { type: "checkbox", name: "event", value: t, checked: checked.includes(t) }), ` ${t}`));
}
const boxValues = (boxes) => boxes.map((b) => b.firstChild).filter((b) => b.checked).map((b) => b.value);

function endpointState(w) {
  if (!w.enabled) return w.disabled_reason === "gone" ? "disabled: the receiver answered 410 Gone"
    : w.disabled_reason === "failing" ? "disabled: failing too long" : "disabled";
  return w.failing_since ? `failing since ${when(w.failing_since)}` : "enabled";
}

async function webhooksPage(main) {
  const url = h("input", { id: "w-url", type: "url", required: true, placeholder: "https://example.com/outdial",
                           "aria-describedby": "w-url-hint w-url-error" });
  const urlErr = h("p", { class: "error", id: "w-url-error" });
  const desc = h("input", { id: "w-desc", maxlength: "200", placeholder: "e.g. CRM sync" });
  const boxes = eventBoxes(EVENT_TYPES);
  const evErr = h("p", { class: "error", id: "w-events-error" });
  const shown = h("div", { id: "w-new", "aria-live": "polite" });
  const tbody = h("tbody");
  const act = async (fn) => { try { await fn(); await load(); } catch (x) { if (x.status !== 401) toast(x.message); } };
  const load = async () => {
    const page = await api("GET", "/v1/webhooks");
    redraw(tbody, ...(page.data.length ? page.data.map((w) => h("tr", { "data-webhook": w.id },
      h("td", { "data-label": "URL" }, h("a", { href: `#/webhooks/${w.id}`, class: "url", text: w.url }),
        w.description ? h("div", { class: "hint", text: w.description }) : null),
      h("td", { "data-label": "Events", text: w.event_types.length === EVENT_TYPES.length ? "all"
                                              : w.event_types.join(", ") }),
      h("td", { "data-label": "State" }, h("span", { class: `badge ${w.enabled && !w.failing_since ? "completed" : "failed"}`,
                                                    text: endpointState(w) })),
      h("td", {}, h("div", { class: "row wrap" },
        h("button", { type: "button", "aria-label": `${w.enabled ? "Disable" : "Enable"} ${w.url}`,
                      text: w.enabled ? "Disable" : "Enable",
                      onclick: () => act(() => api("PATCH", `/v1/webhooks/${w.id}`, { enabled: !w.enabled })) }),
        h("button", { type: "button", "aria-label": `Rotate the secret of ${w.url}`, text: "Rotate secret",
                      onclick: () => act(async () => {
          if (!confirm("Issue a new signing secret? The old one keeps signing too for 24 hours.")) return;
          const r = await api("POST", `/v1/webhooks/${w.id}/rotate-secret`);
          shown.replaceChildren(shownOnce("w-secret", "The new signing secret", r.secret,
            "Copy the new signing secret now: it will not be shown again.",
            `Until ${when(r.previous_secret_expires_at)} each request is signed with both secrets.`));
        }) }),
        h("button", { type: "button", "aria-label": `Delete ${w.url}`, text: "Delete", onclick: () => act(async () => {
          if (!confirm(`Delete the endpoint ${w.url}? Its pending deliveries are dropped.`)) return;
          await api("DELETE", `/v1/webhooks/${w.id}`);
          toast("Endpoint deleted.");
        }) })))))
      : [h("tr", {}, h("td", { colspan: "4", class: "empty", text: "No endpoint yet." }))]));
  };
  main.append(h("h1", { text: "Webhooks" }), connectionsNav("webhooks"),
    h("form", { class: "card", novalidate: true, onsubmit: async (e) => {
        e.preventDefault();
        urlErr.textContent = evErr.textContent = "";
        url.removeAttribute("aria-invalid");
        const event_types = boxValues(boxes);
        if (!url.value.trim()) { urlErr.textContent = "Enter the URL outdial sends events to."; url.focus(); return; }
        if (!event_types.length) { evErr.textContent = "Choose at least one event."; boxes[0].firstChild.focus(); return; }
        try {
          const w = await api("POST", "/v1/webhooks", { url: url.value.trim(), description: desc.value.trim(), event_types });
          shown.replaceChildren(shownOnce("w-secret", "The endpoint's signing secret", w.secret,
            "Copy the signing secret now: it will not be shown again.",
            "Your server checks each request's webhook-signature with it (Standard Webhooks)."));
          url.value = desc.value = "";
          await load();
        } catch (x) {
          const fe = (x.problem.errors || [])[0];
          if (fe && fe.field === "event_types") { evErr.textContent = fe.message || x.message; return; }
          urlErr.textContent = (fe && fe.message) || x.message;
          url.setAttribute("aria-invalid", "true");
          url.focus();
        }
      } },
      h("h2", { text: "Add an endpoint" }),
      h("label", { for: "w-url", text: "URL" }), url,
      h("p", { class: "hint", id: "w-url-hint", text: "https:// on a public address. outdial signs every request." }), urlErr,
      h("label", { for: "w-desc", text: "Description (optional)" }), desc,
      h("fieldset", { class: "scopes", "aria-describedby": "w-events-error" }, h("legend", { text: "Events" }), boxes),
      evErr,
      h("div", { class: "actions" }, h("button", { class: "primary", type: "submit", text: "Add endpoint" }))),
    shown,
    h("h2", { text: "Endpoints" }),
    h("table", { class: "responsive", "aria-label": "Webhook endpoints" },
      h("thead", {}, h("tr", {}, ["URL", "Events", "State", ""].map((t) => h("th", { scope: "col", text: t })))), tbody));
  await load();
  every(main, 5000, load);
}

// a delivery's status, in the colours of the call statuses
const DELIVERY_BADGE = { pending: "dialing", succeeded: "completed", failed: "failed" };

async function webhookPage(main, id) {
  const head = h("div");
  const facts = h("div");
  const status = select("wd-status", [["", "any"], ["pending", "pending"], ["succeeded", "succeeded"], ["failed", "failed"]]);
  const tbody = h("tbody");
  const more = h("button", { type: "button", id: "wd-more", hidden: true, text: "Older deliveries" });
  let w = await api("GET", `/v1/webhooks/${id}`);
  const boxes = eventBoxes(w.event_types);
  const desc = h("input", { id: "we-desc", maxlength: "200", value: w.description || "" });
  const editErr = h("p", { class: "error", role: "alert" });
  const drawHead = () => {
    redraw(head, h("h1", {}, h("span", { class: "url", text: w.url }), " ",
      h("span", { class: `badge ${w.enabled && !w.failing_since ? "completed" : "failed"}`, text: endpointState(w) })));
    redraw(facts, h("dl", { class: "facts" }, ...[["Created", when(w.created_at)], ["Updated", when(w.updated_at)],
      ["Failing since", when(w.failing_since)], ["Endpoint id", w.id]]
      .flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])));
  };
  const row = (d) => h("tr", { "data-delivery": d.id },
    h("td", { "data-label": "Created", text: when(d.created_at) }),
    h("td", { "data-label": "Event" }, h("code", { text: d.event_type })),
    h("td", { "data-label": "Status" }, h("span", { class: `badge ${DELIVERY_BADGE[d.status]}`, text: d.status })),
    h("td", { "data-label": "Attempts", class: "num", text: fmtNum.format(d.attempts) }),
    h("td", { "data-label": "Last answer", text: d.last_error || (d.last_status_code ? `HTTP ${d.last_status_code}` : "—") }),
    h("td", { "data-label": "Last attempt", text: when(d.last_attempt_at) }),
    h("td", { "data-label": "Next attempt", text: d.status === "pending" ? when(d.next_attempt_at) : "—" }),
    h("td", {}, h("button", { type: "button", "aria-label": `Send ${d.event_type} of ${when(d.created_at)} again`,
                              text: "Retry", onclick: async () => {
      try { await api("POST", `/v1/webhooks/${id}/deliveries/${d.id}/retry`); toast("Sent again now."); await load(); }
      catch (x) { if (x.status !== 401) toast(x.status === 409 ? "It is being sent right now; try again in a moment." : x.message); }
    } })));
  const query = () => `/v1/webhooks/${id}/deliveries?limit=50${status.value ? `&status=${status.value}` : ""}`;
  const load = async () => {
    w = await api("GET", `/v1/webhooks/${id}`);
    drawHead();
    const page = await api("GET", query());
    redraw(tbody, ...(page.data.length ? page.data.map(row)
      : [h("tr", {}, h("td", { colspan: "8", class: "empty", text: "No delivery." }))]));
    more.hidden = !page.next_cursor;
    more.dataset.cursor = page.next_cursor || "";
  };
  status.addEventListener("change", () => load().catch((x) => toast(x.message)));
  more.addEventListener("click", async () => {
    stopPage();
    const page = await api("GET", `${query()}&cursor=${more.dataset.cursor}`);
    tbody.append(...page.data.map(row));
    more.hidden = !page.next_cursor;
    more.dataset.cursor = page.next_cursor || "";
  });
  main.append(h("p", {}, h("a", { href: "#/webhooks", text: "← Webhooks" })), head,
    h("div", { class: "grid2" },
      h("section", { class: "card", "aria-label": "Endpoint" }, facts),
      h("form", { class: "card", "aria-label": "Edit the endpoint", onsubmit: async (e) => {
          e.preventDefault();
          editErr.textContent = "";
          const event_types = boxValues(boxes);
          if (!event_types.length) { editErr.textContent = "Choose at least one event."; return; }
          try { w = await api("PATCH", `/v1/webhooks/${id}`, { description: desc.value.trim(), event_types }); drawHead(); toast("Saved."); }
          catch (x) { editErr.textContent = x.message; }
        } },
        h("label", { for: "we-desc", text: "Description" }), desc,
        h("fieldset", { class: "scopes" }, h("legend", { text: "Events" }), boxes), editErr,
        h("div", { class: "actions" }, h("button", { type: "submit", text: "Save" })))),
    h("div", { class: "head" }, h("h2", { text: "Deliveries" }),
      h("div", { class: "inline" }, h("label", { for: "wd-status", text: "Status" }), status)),
    h("table", { class: "responsive", "aria-label": "Deliveries" },
      h("thead", {}, h("tr", {}, ["Created", "Event", "Status", "Attempts", "Last answer", "Last attempt", "Next attempt", ""]
        .map((t) => h("th", { scope: "col", text: t })))), tbody),
    h("div", { class: "actions" }, more));
  await load();
  every(main, 3000, load);
}

// ------------------------------------------------------------------ billing

const dateInput = (d) => localInput(d.toISOString()).slice(0, 10);

function duration(s) {
  const m = Math.floor(s / 60);
  return m ? `${fmtNum.format(m)} min ${fmtNum.format(s % 60)} s` : `${fmtNum.format(s)} s`;
}

async function billingPage(main, params) {
  const now = new Date();
  const from = h("input", { id: "bl-from", type: "date",
                            value: params.get("from") ?? dateInput(new Date(now.getFullYear(), now.getMonth(), 1)) });
  const to = h("input", { id: "bl-to", type: "date", value: params.get("to") ?? "" });
  const err = h("p", { class: "error", role: "alert" });
  const box = h("div", { id: "billing" });
  main.append(h("h1", { text: "Billing" }),
    h("form", { class: "toolbar", "aria-label": "Period", onsubmit: (e) => {
        e.preventDefault();
        if (from.value && to.value && to.value < from.value) { err.textContent = "The last day is before the first."; to.focus(); return; }
        const next = `#/billing?${new URLSearchParams({ from: from.value, to: to.value })}`;
        go(next);
      } },
      h("div", {}, h("label", { for: "bl-from", text: "From (first day)" }), from),
      h("div", {}, h("label", { for: "bl-to", text: "To (last day)" }), to),
      h("div", { class: "toolbar-actions" }, h("button", { type: "submit", text: "Show" }))),
    err, box);
  // days are the user's days: from its first midnight to the midnight after the last one
  const q = new URLSearchParams();
  if (from.value) q.set("from", new Date(`${from.value}T00:00`).toISOString());
  if (to.value) { const end = new Date(`${to.value}T00:00`); end.setDate(end.getDate() + 1); q.set("to", end.toISOString()); }
  const [b, project] = await Promise.all([api("GET", `/v1/billing?${q}`), api("GET", "/v1/project")]);
  const cur = b.currency || "USD";
  const most = Math.max(1, ...FINAL_STATES.map((f) => (b.final_states[f] || {}).calls || 0));
  const day = (v) => fmtDay.format(new Date(`${v}T00:00`));
  const period = `${from.value ? day(from.value) : "the beginning"} to ${to.value ? `${day(to.value)} included` : "now"}`;
  box.append(...[
    h("div", { class: "stats" },
      h("div", { class: "stat" }, h("span", { class: "stat-n", id: "wallet-balance", text: money(b.wallet.balance_micros, b.wallet.currency || cur) }),
        h("span", { text: "wallet balance" })),
      h("div", { class: "stat" }, h("span", { class: "stat-n", id: "total-cost", text: money(b.totals.cost_micros, cur) }), h("span", { text: "cost of the period" })),
      h("div", { class: "stat" }, h("span", { class: "stat-n", id: "total-calls", text: fmtNum.format(b.totals.calls) }), h("span", { text: "calls ended" })),
      h("div", { class: "stat" }, h("span", { class: "stat-n", text: duration(b.totals.billed_s) }), h("span", { text: "billed time" })),
      h("div", { class: "stat" }, h("span", { class: "stat-n", text: money(project.price_per_min_micros, cur) }), h("span", { text: "per minute, per started second" }))),
    b.wallet.balance_micros <= 0 ? h("p", { class: "card warn", role: "alert",
      text: "The wallet is empty: new calls are refused (402) and queued calls are held until it is topped up." }) : null,
    h("h2", { text: "Per final state" }),
    h("p", { class: "hint", text: `Calls that ended from ${period} (days in ${TZ}).` }),
    h("table", { class: "responsive", "aria-label": "Calls, billed time and cost per final state" },
      h("thead", {}, h("tr", {}, ["Final state", "Calls", "Share", "Billed time", "Cost"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, FINAL_STATES.map((f) => {
        const l = b.final_states[f] || { calls: 0, billed_s: 0, cost_micros: 0 };
        return h("tr", { "data-state": f, class: l.calls ? null : "zero" },
          h("th", { scope: "row", "data-label": "Final state", text: f }),
          h("td", { "data-label": "Calls", class: "num", text: fmtNum.format(l.calls) }),
          h("td", { "data-label": "Share", class: "share", "aria-hidden": "true" },
            h("span", { class: "bar" }, h("span", { class: `bar-fill w${Math.round((l.calls / most) * 20)}` }))),
          h("td", { "data-label": "Billed time", class: "num", text: duration(l.billed_s) }),
          h("td", { "data-label": "Cost", class: "num", text: money(l.cost_micros, cur) }));
      })),
      h("tfoot", {}, h("tr", { "data-state": "total" }, h("th", { scope: "row", "data-label": "Final state", text: "Total" }),
        h("td", { "data-label": "Calls", class: "num", text: fmtNum.format(b.totals.calls) }), h("td", { class: "share", "aria-hidden": "true" }),
        h("td", { "data-label": "Billed time", class: "num", text: duration(b.totals.billed_s) }),
        h("td", { "data-label": "Cost", class: "num", text: money(b.totals.cost_micros, cur) })))),
    h("h2", { text: "Wallet movements" }),
    h("p", { class: "hint", text: `Debits ${money(b.ledger.debits_micros, cur)}, top-ups ${money(b.ledger.topups_micros, cur)}` +
      (b.ledger.entries_total > b.ledger.entries.length ? `; the newest ${fmtNum.format(b.ledger.entries.length)} of ${fmtNum.format(b.ledger.entries_total)} shown.` : ".") }),
    h("table", { class: "responsive", "aria-label": "Wallet movements" },
      h("thead", {}, h("tr", {}, ["When", "Amount", "Reason", "Call"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, b.ledger.entries.length ? b.ledger.entries.map((e) => h("tr", {},
        h("td", { "data-label": "When", text: when(e.at) }),
        h("td", { "data-label": "Amount", class: `num ${e.amount_micros < 0 ? "debit" : "credit"}`, text: money(e.amount_micros, cur) }),
        h("td", { "data-label": "Reason", text: e.reason }),
        h("td", { "data-label": "Call" }, e.call_id ? h("a", { href: `#/calls/${e.call_id}`, text: "Open" }) : "—")))
        : h("tr", {}, h("td", { colspan: "4", class: "empty", text: "No movement in this period." }))))].filter(Boolean));
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
  // each render draws into a view of its own: one overtaken by a newer render
  // (a second hashchange while it waited for the API) draws into nothing
  const main = h("div", { class: "view" });
  $("#main").replaceChildren(main);
  const [path, query] = (location.hash.slice(1) || "/calls").split("?");
  const params = new URLSearchParams(query || "");
  if (!sessionStorage.getItem(KEY)) return signInPage(main);
  $("#top").hidden = false;
  for (const li of document.querySelectorAll("#nav li[data-scope]")) li.hidden = !li.dataset.scope.split(" ").some(can);
  const tab = { keys: "connections", webhooks: "connections" }[path.split("/")[1]] || path.split("/")[1];
  $("#nav-connections").href = can("admin") ? "#/keys" : "#/webhooks";
  for (const a of document.querySelectorAll("#nav a")) {
    if (a.dataset.tab === tab) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (path === "/calls") await callsPage(main, params);
    else if (path === "/calls/new") await newCallPage(main);
    else if (path.startsWith("/calls/")) await callPage(main, path.slice(7));
    else if (path === "/live") livePage(main);
    else if (path === "/batches") await batchesPage(main);
    else if (path === "/batches/new") await newBatchPage(main);
    else if (path.startsWith("/batches/")) await batchPage(main, path.slice(9));
    else if (path === "/keys") await keysPage(main);
    else if (path === "/webhooks") await webhooksPage(main);
    else if (path.startsWith("/webhooks/")) await webhookPage(main, path.slice(10));
    else if (path === "/billing") await billingPage(main, params);
    else if (path === "/dnc") await dncPage(main);
    else location.hash = "#/calls";
  } catch (x) {
    if (x.status === 401) return;
    main.append(h("p", { class: "error", role: "alert",
      text: x.status === 403 ? "Your API key's scopes do not allow this page." : `Could not load: ${x.message}` }));
  }
  // a new page: its title names it, and a screen reader starts reading at its heading
  const h1 = $("h1", main);
  document.title = `${h1 ? h1.textContent.trim() : "outdial"} · outdial console`;
  if (h1 && !main.contains(document.activeElement)) {
    h1.tabIndex = -1;
    h1.focus({ preventScroll: true });
  }
}

window.addEventListener("hashchange", render);
document.addEventListener("DOMContentLoaded", () => {
  $("#signout").addEventListener("click", () => signOut("Signed out."));
  render();
});
