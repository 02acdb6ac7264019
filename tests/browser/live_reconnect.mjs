// The Live tab across an ingress that dies: driven by tests/system/test_console.py,
// which kills and restarts the ingress while this page watches.
//
//   stdout "watching"          the Live tab is open and streaming
//   stdin  <call id>           (after the restart) a call placed since
//   stdout "reconnected"       the tab said so, then showed that call live and ended
// Exits 0 on success, 1 with the reason on stderr.
import { createInterface } from "node:readline";
const { chromium } = await import(process.env.OUTDIAL_PLAYWRIGHT || "playwright-core");

const URL_ = process.env.OUTDIAL_URL, KEY = process.env.OUTDIAL_KEY, SHOTS = process.env.OUTDIAL_SHOTS || ".";
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                        args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const p = await (await browser.newContext({ locale: "en-GB" })).newPage();
const errors = [];
p.on("pageerror", (e) => errors.push(e.message));
try {
  await p.goto(URL_ + "/");
  await p.getByLabel("API key").fill(KEY);
  await p.getByRole("button", { name: "Sign in" }).click();
  await p.getByRole("link", { name: "Live" }).click();
  await p.getByText("Live: updates as they happen.").waitFor();
  console.log("watching");
  // the stream breaks: the tab says so, and reconnects by itself once the ingress is back
  await p.getByText("Connection lost; reconnecting…").waitFor({ timeout: 30000 });
  await p.screenshot({ path: `${SHOTS}/live-reconnecting.png`, fullPage: true });
  const id = await new Promise((res) => createInterface({ input: process.stdin }).once("line", (l) => res(l.trim())));
  await p.getByText("Live: updates as they happen.").waitFor({ timeout: 30000 });
  await p.locator(`tr[data-call="${id}"]`).waitFor({ timeout: 30000 });
  await p.locator(`tr[data-call="${id}"]`).waitFor({ state: "detached", timeout: 30000 });
  const ended = await p.evaluate((c) => window.__outdialLive.ended.filter((e) => e.call_id === c).map((e) => e.status), id);
  if (ended.join() !== "completed") throw new Error(`the call's final events in Live: ${JSON.stringify(ended)}`);
  if (errors.length) throw new Error(`errors in the page: ${errors.join("; ")}`);
  console.log("reconnected");
} catch (e) {
  await p.screenshot({ path: `${SHOTS}/FAILED-live-reconnect.png`, fullPage: true }).catch(() => {});
  console.error(e.stack || String(e));
  process.exitCode = 1;
} finally {
  await browser.close();
}
