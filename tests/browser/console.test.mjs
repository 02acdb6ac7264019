// Browser tests of the web console (services/ingress/console): Debian's
// Chromium, headless, driven by playwright-core, against the real system
// that tests/system/test_console.py starts. One screenshot per screen goes
// to $OUTDIAL_SHOTS.
//
//   OUTDIAL_URL=http://127.0.0.1:8080 OUTDIAL_KEY=odk_... OUTDIAL_SHOTS=dir node tests/browser/console.test.mjs
import { test, after, afterEach, before } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
// playwright-core lives in deploy/local/deps.sh's cache: its entry file is given by path
const { chromium } = await import(process.env.OUTDIAL_PLAYWRIGHT || "playwright-core");

const URL_ = process.env.OUTDIAL_URL;
const KEY = process.env.OUTDIAL_KEY;
const SHOTS = process.env.OUTDIAL_SHOTS || "console-shots";
const ADMIN = process.env.OUTDIAL_ADMIN_KEY; // the same project's admin key
const PHONE = process.env.OUTDIAL_PHONE; // a number that completes in the sim
const PHONES = (process.env.OUTDIAL_PHONES || "").split(","); // more of them, unused elsewhere
const BUSY = process.env.OUTDIAL_BUSY_PHONE; // a number that ends busy in the sim
const AXE = process.env.OUTDIAL_AXE; // axe-core's axe.min.js: the accessibility audit
mkdirSync(SHOTS, { recursive: true });
let browser;

before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                    args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});
after(async () => browser && (await browser.close()));

const open = new Set(); // pages of the running test: a failure screenshots them

async function page(viewport = { width: 1280, height: 800 }, opts = {}) {
  const ctx = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "Europe/Madrid", ...opts });
  const p = await ctx.newPage();
  p.errors = [];
  p.on("pageerror", (e) => p.errors.push(e.message));
  // (the browser logs every 4xx answer as an error; those are expected here)
  p.on("console", (m) => m.type() === "error" && !m.text().startsWith("Failed to load resource") && p.errors.push(m.text()));
  open.add(p);
  return p;
}

afterEach(async (t) => {
  let i = 0;
  const errors = [];
  for (const p of open) {
    if (p.isClosed()) continue;
    errors.push(...p.errors);
    if (t.passed === false || p.errors.length)
      await p.screenshot({ path: `${SHOTS}/FAILED-${t.name.slice(0, 40).replace(/\W+/g, "-")}-${i++}.png` }).catch(() => {});
    await p.context().close();
  }
  open.clear();
  // a script error in the page fails the test even when every step went through
  assert.deepEqual(errors, [], "errors in the page");
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function apiCall(method, path, body, key = KEY) {
  const r = await fetch(URL_ + path, { method, headers: { Authorization: `Bearer ${key}`,
    ...(body ? { "Content-Type": "application/json" } : {}) }, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function waitFinal(id, key = KEY) {
  for (let i = 0; i < 150; i++) {
    const c = (await apiCall("GET", `/v1/calls/${id}`, undefined, key)).body;
    if (["completed", "failed", "canceled"].includes(c.status)) return c;
    await sleep(200);
  }
  throw new Error(`call ${id} did not end`);
}

async function signIn(p, key = KEY, wait = true) {
  await p.goto(URL_ + "/");
  await p.getByLabel("API key").fill(key);
  await p.getByRole("button", { name: "Sign in" }).click();
  if (wait) await p.getByRole("heading", { name: "Calls" }).waitFor();
}

test("sign in: a wrong key is refused in place; the key stays out of the URL; sign out forgets it", async () => {
  const p = await page();
  await signIn(p, "odk_not_a_real_key_000000000000000000000000", false);
  await p.getByRole("alert").filter({ hasText: "unknown or revoked" }).waitFor();
  assert.equal(await p.evaluate(() => sessionStorage.getItem("outdial.key")), null);
  await p.screenshot({ path: `${SHOTS}/signin-error.png` });
  await signIn(p);
  await p.getByRole("heading", { name: "Calls" }).waitFor();
  assert.ok(!p.url().includes(KEY), "the key is not in the URL");
  assert.equal(await p.evaluate(() => sessionStorage.getItem("outdial.key")), KEY);
  await p.screenshot({ path: `${SHOTS}/calls.png`, fullPage: true });
  // this key has outbound:trigger and sessions:read only: what it cannot use is not offered
  assert.equal(await p.getByRole("link", { name: "Connections" }).isVisible(), false);
  assert.equal(await p.getByRole("link", { name: "DNC" }).isVisible(), false);
  assert.equal(await p.getByRole("button", { name: "New outbound call" }).isVisible(), true);
  await p.getByRole("button", { name: "Sign out" }).click();
  await p.getByRole("heading", { name: "Sign in to outdial" }).waitFor();
  assert.equal(await p.evaluate(() => sessionStorage.getItem("outdial.key")), null);
  await p.context().close();
});

test("new call: an invalid phone is refused inline, by the page and by the API", async () => {
  const p = await page();
  await signIn(p);
  await p.getByRole("button", { name: "New outbound call" }).click();
  const phone = p.getByLabel("Phone (E.164)");
  await phone.fill("612 345");
  await p.locator("#phone-error").filter({ hasText: "E.164" }).waitFor();
  assert.equal(await phone.getAttribute("aria-invalid"), "true");
  await p.screenshot({ path: `${SHOTS}/new-call-invalid.png`, fullPage: true });
  // the API's own refusal lands next to the field too (+1 and 3 digits: not a possible number)
  await phone.fill("+1555");
  await p.getByRole("button", { name: "Call", exact: true }).click();
  await p.locator("#phone-error").filter({ hasText: /E\.164|cannot exist/ }).waitFor();
  assert.match(p.url(), /#\/calls\/new$/, "no call was placed");
  await p.context().close();
});

test("a call placed from the form moves through Live to completed", async () => {
  const live = await page();
  await signIn(live);
  await live.getByRole("link", { name: "Live" }).click();
  await live.getByText("Live: updates as they happen.").waitFor();

  const p = await page();
  await signIn(p);
  await p.getByRole("button", { name: "New outbound call" }).click();
  await p.getByLabel("Phone (E.164)").fill(PHONE);
  await p.locator("#phone-hint").filter({ hasText: /\w/ }).waitFor(); // the country hint
  // the sim rings and talks this long: long enough to be seen live
  for (const [k, v] of [["sim_ring_ms", "1500"], ["sim_talk_ms", "2500"], ["customer", "Ana"]]) {
    await p.getByRole("button", { name: "+ Add metadata" }).click();
    await p.locator(".meta-k").last().fill(k);
    await p.locator(".meta-v").last().fill(v);
  }
  await p.screenshot({ path: `${SHOTS}/new-call.png`, fullPage: true });
  await p.getByRole("button", { name: "Call", exact: true }).click();
  await p.waitForURL(/#\/calls\/[0-9a-f-]{36}$/);
  const id = p.url().split("/").pop();

  const row = live.locator(`tr[data-call="${id}"]`);
  await row.waitFor({ timeout: 20000 });
  await live.screenshot({ path: `${SHOTS}/live.png`, fullPage: true });
  await row.waitFor({ state: "detached", timeout: 30000 });
  const ended = await live.evaluate(() => window.__outdialLive.ended.map((e) => [e.call_id, e.status]));
  assert.deepEqual(ended.filter(([c]) => c === id), [[id, "completed"]]);

  await p.locator("h1 .badge.completed").waitFor({ timeout: 20000 });
  const timeline = await p.locator("#timeline li strong").allTextContents();
  assert.deepEqual(timeline.filter((s, i) => s !== timeline[i - 1]), ["queued", "dialing", "connected", "completed"]);
  await p.getByText("Ana").waitFor();
  await p.screenshot({ path: `${SHOTS}/call.png`, fullPage: true });
  const phone = await page({ width: 390, height: 844 });
  await signIn(phone);
  await phone.getByRole("heading", { name: "Calls" }).waitFor();
  await phone.locator(`a[href="#/calls/${id}"]`).waitFor();
  await phone.screenshot({ path: `${SHOTS}/calls-phone.png`, fullPage: true });
  for (const x of [live, p, phone]) await x.context().close();
});

test("a CSV batch: preview, upload with progress, counts to completion, results downloaded", async () => {
  const p = await page();
  await signIn(p);
  await p.getByRole("link", { name: "Batches" }).click();
  await p.getByRole("button", { name: "New batch" }).click();
  const csv = `Phone,name,"note, with comma"\r\n${PHONES[0]},Ana,"said ""hi"""\r\n${PHONES[1]},Luis,x\r\n` +
              `${PHONES[2]},Eva,\r\nnot-a-phone,Bad,y\r\n`;
  await p.getByLabel("Contact list (CSV)").setInputFiles({ name: "contacts.csv", mimeType: "text/csv",
                                                           buffer: Buffer.from(csv) });
  await p.locator("#b-preview").getByText("“Phone” is the phone column").waitFor();
  assert.equal(await p.locator("#b-preview tbody tr").count(), 4);
  await p.getByLabel("Pacing (calls per minute)").fill("600");
  await p.screenshot({ path: `${SHOTS}/new-batch.png`, fullPage: true });
  await p.getByRole("button", { name: "Upload" }).click();
  await p.waitForURL(/#\/batches\/[0-9a-f-]{36}$/);
  const id = p.url().split("/").pop();
  await p.locator("h1 .badge.completed").waitFor({ timeout: 60000 });
  const count = async (k) => Number((await p.locator(`[data-count="${k}"]`).textContent()).replace(/\D/g, ""));
  assert.equal(await count("completed"), 3);
  assert.equal(await count("queued") + await count("dialing") + await count("connected") + await count("failed"), 0);
  await p.getByRole("cell", { name: "invalid_phone" }).waitFor(); // the row error
  await p.locator("#batch-progress").getByText("3 of 3 calls finished").waitFor();
  await p.screenshot({ path: `${SHOTS}/batch.png`, fullPage: true });
  const [dl] = await Promise.all([p.waitForEvent("download"), p.getByRole("button", { name: "Download results CSV" }).click()]);
  const text = await (await import("node:fs/promises")).readFile(await dl.path(), "utf8");
  const lines = text.trim().split(/\r?\n/);
  assert.match(lines[0], /^Phone,name,"note, with comma",call_id,status,final_state,outcome/);
  assert.equal(lines.length, 5, text);
  assert.ok(lines[1].startsWith(`${PHONES[0]},Ana,"said ""hi""",`) && lines[1].includes(",completed,completed,success,"), text);
  assert.ok(lines[4].startsWith("not-a-phone,Bad,y,") && lines[4].endsWith(",invalid_phone,,,,"), text);  // then attempts and the recording columns
  // the calls list filtered by this batch: its three calls
  await p.getByRole("link", { name: "Calls" }).click();
  await p.getByLabel("Batch").selectOption(id);
  await p.getByRole("button", { name: "Apply" }).click();
  await p.locator("#calls-shown").getByText("3 calls shown").waitFor();
  assert.deepEqual((await p.locator("tbody tr[data-call] td[data-label='Phone']").allTextContents()).sort(),
                   PHONES.slice(0, 3).sort());
  await p.context().close();
});

test("API keys: issue one (shown once), use it, revoke it", async () => {
  const p = await page();
  p.on("dialog", (d) => d.accept());
  await signIn(p, ADMIN);
  await p.getByRole("link", { name: "Connections" }).click();
  await p.getByRole("heading", { name: "API keys" }).waitFor();
  await p.getByLabel("Name").fill("browser-made");
  await p.getByRole("button", { name: "Issue key" }).click();
  const key = await p.locator("#k-value").inputValue();
  assert.match(key, /^odk_/);
  await p.getByText("it will not be shown again").waitFor();
  await p.screenshot({ path: `${SHOTS}/keys.png`, fullPage: true });
  const use = () => fetch(`${URL_}/v1/calls`, { method: "POST", headers: { Authorization: `Bearer ${key}`,
    "Content-Type": "application/json" }, body: JSON.stringify({ scenario: "appointment_reminder", phone: PHONES[3] }) });
  assert.equal((await use()).status, 202);
  await p.reload(); // the list, without the key shown
  await p.getByRole("button", { name: "Revoke browser-made" }).click();
  await p.locator("tr", { hasText: "browser-made" }).waitFor({ state: "detached" }); // the list shows active keys
  assert.equal(await untilStatus(use, 401), 401);
  await p.context().close();
});

// polls `request` until its answer's status is `want` (revocation takes effect within the auth cache, 2 s)
async function untilStatus(request, want) {
  let status = 0;
  for (let i = 0; i < 50 && status !== want; i++) {
    status = (await request()).status;
    if (status !== want) await sleep(200);
  }
  return status;
}

const keyAnswers = (key, want) => untilStatus(() => apiCall("GET", "/v1/calls?limit=1", undefined, key), want);

test("API keys: rotate issues a new key with the same scopes and revokes the old one", async () => {
  const p = await page();
  p.on("dialog", (d) => d.accept());
  const old = (await apiCall("POST", "/v1/api-keys", { name: "to-rotate", scopes: ["sessions:read"] }, ADMIN)).body;
  await signIn(p, ADMIN);
  await p.goto(URL_ + "/#/keys");
  await p.getByRole("button", { name: "Rotate to-rotate" }).click();
  await p.getByText("it will not be shown again").waitFor();
  const fresh = await p.locator("#k-value").inputValue();
  assert.notEqual(fresh, old.key);
  assert.equal(await keyAnswers(old.key, 401), 401, "the old key is revoked");
  assert.equal(await keyAnswers(fresh, 200), 200, "the new key works");
  assert.equal((await apiCall("POST", "/v1/calls", { scenario: "appointment_reminder", phone: PHONES[5] }, fresh)).status,
               403, "with the old key's scopes only");
  await p.getByText("Rotated: the old key is revoked.").waitFor(); // the list is drawn again after the revocation
  const rows = p.getByRole("row").filter({ hasText: "to-rotate" });
  assert.equal(await rows.count(), 1, "the list shows the active keys: the new one");
  assert.equal(await rows.locator("td[data-label='Scopes']").textContent(), "sessions:read");
  // rotating the key this tab is signed in with: the tab goes on with the new one
  const own = (await apiCall("POST", "/v1/api-keys", { name: "own-key", scopes: ["admin"] }, ADMIN)).body;
  const q = await page();
  q.on("dialog", (d) => d.accept());
  await signIn(q, own.key);
  await q.goto(URL_ + "/#/keys");
  await q.getByRole("button", { name: "Rotate own-key" }).click();
  await q.getByText("this tab now uses the new key").waitFor();
  const now = await q.evaluate(() => sessionStorage.getItem("outdial.key"));
  assert.equal(now, await q.locator("#k-value").inputValue());
  assert.equal(await keyAnswers(own.key, 401), 401);
  await q.getByRole("link", { name: "Calls" }).click();
  await q.getByRole("heading", { name: "Calls" }).waitFor(); // still signed in
  await p.context().close();
  await q.context().close();
});

test("DNC: a number added in the console is refused for a call, next to the phone field", async () => {
  const p = await page();
  p.on("dialog", (d) => d.accept());
  await signIn(p, ADMIN);
  await p.getByRole("link", { name: "DNC" }).click();
  await p.getByLabel("Add a number").fill(PHONES[4]);
  await p.getByRole("button", { name: "Add", exact: true }).click();
  await p.locator("#d-result").getByText("1 added").waitFor();
  await p.getByRole("cell", { name: PHONES[4], exact: true }).waitFor();
  await p.screenshot({ path: `${SHOTS}/dnc.png`, fullPage: true });
  await p.getByRole("link", { name: "Calls" }).click();
  await p.getByRole("button", { name: "New outbound call" }).click();
  await p.getByLabel("Phone (E.164)").fill(PHONES[4]);
  await p.getByRole("button", { name: "Call", exact: true }).click();
  await p.locator("#phone-error").getByText("do-not-call").waitFor();
  assert.match(p.url(), /#\/calls\/new$/);
  await p.context().close();
});

test("calls: filters by final state, phone and time narrow the list; a bad phone is refused inline", async () => {
  const before = new Date(Date.now() - 1000).toISOString();
  const done = (await apiCall("POST", "/v1/calls", { scenario: "appointment_reminder", phone: PHONES[6] })).body;
  const busy = (await apiCall("POST", "/v1/calls", { scenario: "appointment_reminder", phone: BUSY })).body;
  await waitFinal(done.id);
  assert.equal((await waitFinal(busy.id)).final_state, "busy");
  const p = await page();
  await signIn(p);
  const ids = async () => p.locator("tbody tr[data-call]").evaluateAll((rows) => rows.map((r) => r.dataset.call));
  await p.getByLabel("Final state").selectOption("busy");
  await p.getByRole("button", { name: "Apply" }).click();
  await p.waitForURL(/final_state=busy/);
  await p.locator(`tr[data-call="${busy.id}"]`).waitFor();
  assert.ok(!(await ids()).includes(done.id));
  for (const s of await p.locator("tbody tr[data-call] td[data-label='Final state']").allTextContents()) assert.equal(s, "busy");
  await p.screenshot({ path: `${SHOTS}/calls-filtered.png`, fullPage: true });
  await p.getByRole("link", { name: "Clear filters" }).click();
  await p.getByLabel("Phone").fill(PHONES[6]);
  await p.getByRole("button", { name: "Apply" }).click();
  await p.locator("#calls-shown").getByText("1 call shown").waitFor();
  assert.deepEqual(await ids(), [done.id]);
  // "Created before" a moment before both calls: nothing; typed in the user's time zone, sent as UTC
  await p.getByLabel("Created before").fill(await p.evaluate((iso) => {
    const d = new Date(iso), z = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${z(d.getMonth() + 1)}-${z(d.getDate())}T${z(d.getHours())}:${z(d.getMinutes())}`;
  }, before));
  await p.getByRole("button", { name: "Apply" }).click();
  await p.getByText("No call matches.").waitFor();
  const until = new URL(p.url().replace("#/calls", "")).searchParams.get("until");
  assert.ok(Date.parse(until) <= Date.parse(before) && Date.parse(before) - Date.parse(until) < 60000, until);
  await p.getByLabel("Phone").fill("612 345");
  await p.getByRole("button", { name: "Apply" }).click();
  await p.locator("#f-error").getByText("E.164").waitFor();
  assert.equal(await p.getByLabel("Phone").getAttribute("aria-invalid"), "true");
  await p.context().close();
});

test("new call: a schedule typed in the user's time zone is sent as UTC", async () => {
  const p = await page(undefined, { timezoneId: "Asia/Tokyo" });
  await signIn(p);
  await p.getByRole("button", { name: "New outbound call" }).click();
  await p.getByText("Your time zone: Asia/Tokyo").waitFor();
  const day = new Date(Date.now() + 3 * 86400e3).toISOString().slice(0, 10);
  await p.getByLabel("Phone (E.164)").fill(PHONES[7]);
  await p.getByLabel("Schedule (optional)").fill(`${day}T09:30`);
  await p.getByRole("button", { name: "Call", exact: true }).click();
  await p.waitForURL(/#\/calls\/[0-9a-f-]{36}$/);
  const call = (await apiCall("GET", `/v1/calls/${p.url().split("/").pop()}`)).body;
  assert.equal(Date.parse(call.scheduled_for), Date.parse(`${day}T00:30:00Z`), call.scheduled_for); // 09:30 JST
  await p.getByText(new Intl.DateTimeFormat("en-GB", { dateStyle: "medium", timeStyle: "medium", timeZone: "Asia/Tokyo" })
    .format(new Date(call.scheduled_for))).waitFor(); // and shown back in the user's time
  assert.equal((await apiCall("POST", `/v1/calls/${call.id}/cancel`)).status, 200);
  await p.context().close();
});

// A receiver of webhooks on loopback: records each request; answers `status.code`.
async function receiver() {
  const { createServer } = await import("node:http");
  const got = [];
  const status = { code: 503 };
  const srv = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => { got.push({ headers: req.headers, body }); res.writeHead(status.code).end(); });
  });
  await new Promise((r) => srv.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${srv.address().port}/hooks`, got, status, close: () => srv.close() };
}

// Standard Webhooks: base64 HMAC-SHA256 of "id.timestamp.body" with the secret after "whsec_"
async function signedBy(req, secret) {
  const { createHmac } = await import("node:crypto");
  const mac = createHmac("sha256", Buffer.from(secret.slice(6), "base64"))
    .update(`${req.headers["webhook-id"]}.${req.headers["webhook-timestamp"]}.${req.body}`).digest("base64");
  return req.headers["webhook-signature"].split(" ").includes(`v1,${mac}`);
}

test("webhooks: add an endpoint (secret once), see a failed delivery, retry it, rotate, disable, delete", async () => {
  const rx = await receiver();
  const p = await page();
  p.on("dialog", (d) => d.accept());
  try {
    await signIn(p, ADMIN);
    await p.getByRole("link", { name: "Connections" }).click();
    await p.getByRole("link", { name: "Webhooks" }).click();
    await p.getByRole("heading", { name: "Webhooks" }).waitFor();
    // refused in place: not a URL
    await p.getByLabel("URL").fill("not a url");
    await p.getByRole("button", { name: "Add endpoint" }).click();
    await p.locator("#w-url-error").filter({ hasText: /\w/ }).waitFor();
    assert.equal(await p.getByLabel("URL").getAttribute("aria-invalid"), "true");
    await p.getByLabel("URL").fill(rx.url);
    await p.getByLabel("Description (optional)").fill("browser receiver");
    for (const t of ["call.queued", "call.dialing", "call.connected", "call.failed", "call.canceled", "batch.completed",
                     "caller_id.reputation_warning"])
      await p.getByLabel(t, { exact: true }).uncheck();
    await p.getByRole("button", { name: "Add endpoint" }).click();
    await p.getByText("Copy the signing secret now").waitFor();
    const secret = await p.locator("#w-secret").inputValue();
    assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    await p.screenshot({ path: `${SHOTS}/webhooks.png`, fullPage: true });
    const hooks = (await apiCall("GET", "/v1/webhooks", undefined, ADMIN)).body.data;
    const w = hooks.find((x) => x.url === rx.url);
    assert.deepEqual(w.event_types, ["call.completed"]);
    assert.ok(!JSON.stringify(hooks).includes(secret), "the list never holds the secret");

    // a completed call: its call.completed fails (503) and waits for its next attempt
    const call = (await apiCall("POST", "/v1/calls", { scenario: "appointment_reminder", phone: PHONES[8] }, ADMIN)).body;
    await waitFinal(call.id, ADMIN);
    await p.getByRole("link", { name: rx.url }).click();
    const row = p.locator("tr[data-delivery]").first();
    await row.getByText("HTTP 503").waitFor({ timeout: 20000 });
    assert.equal(await row.locator("td[data-label='Event']").textContent(), "call.completed");
    assert.equal(await row.locator("td[data-label='Status']").textContent(), "pending");
    await p.screenshot({ path: `${SHOTS}/webhook.png`, fullPage: true });
    assert.equal(rx.got.length, 1);
    assert.ok(await signedBy(rx.got[0], secret), "signed with the secret shown once");
    assert.equal(JSON.parse(rx.got[0].body).data.id, call.id);

    // the receiver is fixed; Retry sends it now, long before its scheduled attempt
    rx.status.code = 200;
    await row.getByRole("button", { name: /^Send call\.completed/ }).click();
    await row.locator("td[data-label='Status']").getByText("succeeded").waitFor({ timeout: 15000 });
    assert.equal(rx.got.length, 2);
    assert.equal(rx.got[1].headers["webhook-id"], rx.got[0].headers["webhook-id"], "the same event, again");

    // rotate: a new secret, shown once; requests are then signed by both
    await p.getByRole("link", { name: "← Webhooks" }).click();
    await p.getByRole("button", { name: `Rotate the secret of ${rx.url}` }).click();
    await p.getByText("Copy the new signing secret now").waitFor();
    const second = await p.locator("#w-secret").inputValue();
    assert.notEqual(second, secret);
    await p.getByRole("button", { name: `Disable ${rx.url}` }).click();
    await p.locator(`tr[data-webhook="${w.id}"]`).getByText("disabled").waitFor();
    assert.equal((await apiCall("GET", `/v1/webhooks/${w.id}`, undefined, ADMIN)).body.enabled, false);
    await p.getByRole("button", { name: `Enable ${rx.url}` }).waitFor();
    await p.getByRole("button", { name: `Delete ${rx.url}` }).click();
    await p.locator(`tr[data-webhook="${w.id}"]`).waitFor({ state: "detached" });
    assert.equal((await apiCall("GET", `/v1/webhooks/${w.id}`, undefined, ADMIN)).status, 404);
  } finally {
    rx.close();
  }
  await p.context().close();
});

test("billing: the breakdown and the wallet match the API, formatted for the user's locale", async () => {
  const p = await page(undefined, { locale: "de-DE", timezoneId: "America/New_York" });
  await signIn(p);
  await p.getByRole("link", { name: "Billing" }).click();
  await p.getByRole("heading", { name: "Per final state" }).waitFor();
  const b = (await apiCall("GET", "/v1/billing")).body; // the whole history; the page shows this month
  const monthStart = await p.evaluate(() => { const d = new Date(); return new Date(d.getFullYear(), d.getMonth(), 1).toISOString(); });
  const month = (await apiCall("GET", `/v1/billing?from=${encodeURIComponent(monthStart)}`)).body;
  const de = (micros) => new Intl.NumberFormat("de-DE", { style: "currency", currency: b.currency,
    ...(micros && Math.abs(micros) < 10000 ? { maximumSignificantDigits: 2 } : {}) }).format(micros / 1e6);
  assert.equal(await p.locator("#wallet-balance").textContent(), de(b.wallet.balance_micros));
  assert.match(await p.locator("#wallet-balance").textContent(), /^-?[\d.]+,\d{2}\s\$$/, "1.234,56 $");
  assert.equal(await p.locator("#total-cost").textContent(), de(month.totals.cost_micros));
  assert.equal(await p.locator("#total-calls").textContent(), new Intl.NumberFormat("de-DE").format(month.totals.calls));
  assert.ok(month.totals.calls > 0 && month.final_states.completed.calls > 0, JSON.stringify(month.totals));
  const cell = (state, label) => p.locator(`tr[data-state="${state}"] td[data-label="${label}"]`).textContent();
  for (const f of ["completed", "busy"]) {
    assert.equal(await cell(f, "Calls"), String(month.final_states[f].calls), f);
    assert.equal(await cell(f, "Cost"), de(month.final_states[f].cost_micros), f);
  }
  await p.screenshot({ path: `${SHOTS}/billing.png`, fullPage: true });
  // a period with no call: zeros, and the wallet unchanged
  await p.getByLabel("From (first day)").fill("2020-01-01");
  await p.getByLabel("To (last day)").fill("2020-01-31");
  await p.getByRole("button", { name: "Show" }).click();
  await p.waitForURL(/from=2020-01-01&to=2020-01-31/);
  await p.locator('tr[data-state="total"] td[data-label="Calls"]').getByText("0", { exact: true }).waitFor();
  await p.getByText("No movement in this period.").waitFor();
  // the last day before the first: refused in place
  await p.getByLabel("To (last day)").fill("2019-12-31");
  await p.getByRole("button", { name: "Show" }).click();
  await p.getByRole("alert").getByText("before the first").waitFor();
  await p.context().close();
});

test("keyboard only: sign in, reach New outbound call, place a call; the focus is always visible", async () => {
  const p = await page();
  await p.goto(URL_ + "/");
  await p.keyboard.type(KEY); // the key field has the focus
  await p.keyboard.press("Enter");
  await p.getByRole("heading", { name: "Calls" }).waitFor();
  // the heading takes the focus once the page has loaded its data (the heading is drawn first): wait for that
  await p.waitForFunction(() => document.activeElement.tagName === "H1", null, { timeout: 10000 })
    .catch(() => {});
  assert.equal(await p.evaluate(() => document.activeElement.tagName), "H1", "the new page's heading has the focus");
  const tabTo = async (name) => {
    for (let i = 0; i < 40; i++) {
      await p.keyboard.press("Tab");
      const [text, outline] = await p.evaluate(() => [document.activeElement.textContent.trim(),
        getComputedStyle(document.activeElement).outlineStyle]);
      if (text === name) return outline;
    }
    throw new Error(`Tab never reached ${name}`);
  };
  assert.notEqual(await tabTo("New outbound call"), "none", "the focused button shows it");
  await p.keyboard.press("Enter");
  await p.getByRole("heading", { name: "New outbound call" }).waitFor();
  assert.equal(await p.evaluate(() => document.activeElement.id), "phone", "the phone field has the focus");
  await p.keyboard.type(PHONES[9]);
  await tabTo("Call");
  await p.keyboard.press("Enter");
  await p.waitForURL(/#\/calls\/[0-9a-f-]{36}$/);
  await p.getByRole("heading", { name: new RegExp(`Call to \\${PHONES[9]}`) }).waitFor();
  // the page redraws itself while the call goes on: its heading keeps the focus
  const focused = () => p.evaluate(() => `${document.activeElement.tagName} ${document.activeElement.textContent.split(" ").slice(0, 3).join(" ")}`);
  assert.equal(await focused(), `H1 Call to ${PHONES[9]}`);
  await sleep(3500);
  assert.equal(await focused(), `H1 Call to ${PHONES[9]}`);
  await p.context().close();
});

test("every screen: no accessibility violation (axe-core, WCAG 2 A/AA), no sideways scrolling on a phone", async () => {
  const batch = (await apiCall("GET", "/v1/batches?limit=1", undefined, ADMIN)).body.data[0];
  const call = (await apiCall("GET", "/v1/calls?limit=1", undefined, ADMIN)).body.data[0];
  const hook = (await apiCall("POST", "/v1/webhooks", { url: "https://93.184.216.34/audit" }, ADMIN)).body;
  const screens = ["calls", "calls/new", `calls/${call.id}`, "live", "batches", "batches/new", batch ? `batches/${batch.id}` : null,
    "dnc", "keys", "webhooks", `webhooks/${hook.id}`, "billing"].filter(Boolean);
  const found = [];
  for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
    const p = await page(viewport, { bypassCSP: true }); // axe is injected as a script of the page
    const audit = async (s) => {
      await p.locator("main h1").first().waitFor();
      await sleep(700); // the page's data
      if (!(await p.evaluate(() => Boolean(window.axe)))) await p.addScriptTag({ path: AXE });
      const v = await p.evaluate(async () => (await window.axe.run(document, { runOnly: ["wcag2a", "wcag2aa", "wcag21aa"] }))
        .violations.map((x) => `${x.id}: ${x.help} (${x.nodes.map((n) => n.target.join(" ")).slice(0, 3).join("; ")})`));
      found.push(...v.map((x) => `${viewport.width}px #/${s} ${x}`));
      const [sw, w] = await p.evaluate(() => [document.documentElement.scrollWidth, window.innerWidth]);
      if (sw > w) found.push(`${viewport.width}px #/${s}: ${sw}px wide, wider than the screen`);
      if (viewport.width < 500)
        await p.screenshot({ path: `${SHOTS}/phone-${s.replace(/[0-9a-f-]{36}/, "one").replace("/", "-")}.png`, fullPage: true });
    };
    await p.goto(URL_ + "/");
    await audit("signin");
    await signIn(p, ADMIN);
    for (const s of screens) {
      await p.goto(`${URL_}/#/${s}`);
      await audit(s);
    }
    await p.context().close();
  }
  await apiCall("DELETE", `/v1/webhooks/${hook.id}`, undefined, ADMIN);
  assert.deepEqual(found, []);
});
