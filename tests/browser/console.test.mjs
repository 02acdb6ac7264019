// Browser tests of the web console (services/ingress/console): Debian's
// Chromium, headless, driven by playwright-core, against the real system
// that tests/system/test_console.py starts. One screenshot per screen goes
// to $OUTDIAL_SHOTS.
//
//   OUTDIAL_URL=http://127.0.0.1:8080 OUTDIAL_KEY=odk_... OUTDIAL_SHOTS=dir node tests/browser/console.test.mjs
import { test, after, before } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
// playwright-core lives in deploy/local/deps.sh's cache: its entry file is given by path
const { chromium } = await import(process.env.OUTDIAL_PLAYWRIGHT || "playwright-core");

const URL_ = process.env.OUTDIAL_URL;
const KEY = process.env.OUTDIAL_KEY;
const SHOTS = process.env.OUTDIAL_SHOTS || "console-shots";
const PHONE = process.env.OUTDIAL_PHONE; // a number that completes in the sim
mkdirSync(SHOTS, { recursive: true });
let browser;

before(async () => {
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                    args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});
after(async () => browser && (await browser.close()));

async function page(viewport = { width: 1280, height: 800 }) {
  const ctx = await browser.newContext({ viewport, locale: "en-GB", timezoneId: "Europe/Madrid" });
  const p = await ctx.newPage();
  p.on("pageerror", (e) => { throw new Error(`page error: ${e.message}`); });
  return p;
}

async function signIn(p, key = KEY) {
  await p.goto(URL_ + "/");
  await p.getByLabel("API key").fill(key);
  await p.getByRole("button", { name: "Sign in" }).click();
}

test("sign in: a wrong key is refused in place; the key stays out of the URL; sign out forgets it", async () => {
  const p = await page();
  await signIn(p, "odk_not_a_real_key_000000000000000000000000");
  await p.getByRole("alert").filter({ hasText: "unknown or revoked" }).waitFor();
  assert.equal(await p.evaluate(() => sessionStorage.getItem("outdial.key")), null);
  await p.screenshot({ path: `${SHOTS}/signin-error.png` });
  await signIn(p);
  await p.getByRole("heading", { name: "Calls" }).waitFor();
  assert.ok(!p.url().includes(KEY), "the key is not in the URL");
  assert.equal(await p.evaluate(() => sessionStorage.getItem("outdial.key")), KEY);
  await p.screenshot({ path: `${SHOTS}/calls.png`, fullPage: true });
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
