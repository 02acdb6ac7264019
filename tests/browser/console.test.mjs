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
mkdirSync(SHOTS, { recursive: true });
let browser;

before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                    args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});
after(async () => browser && (await browser.close()));

const open = new Set(); // pages of the running test: a failure screenshots them

async function page(viewport = { width: 1280, height: 800 }) {
  const ctx = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "Europe/Madrid" });
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
  assert.equal(await p.getByRole("link", { name: "API keys" }).isVisible(), false);
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
  assert.ok(lines[4].startsWith("not-a-phone,Bad,y,") && lines[4].endsWith("invalid_phone"), text);
  assert.ok(id);
  await p.context().close();
});

test("API keys: issue one (shown once), use it, revoke it", async () => {
  const p = await page();
  p.on("dialog", (d) => d.accept());
  await signIn(p, ADMIN);
  await p.getByRole("link", { name: "API keys" }).click();
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
  let status = 0;
  for (let i = 0; i < 50 && status !== 401; i++) { // revocation takes effect within the auth cache (2 s)
    status = (await use()).status;
    if (status !== 401) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(status, 401);
  await p.context().close();
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
