// bench/console/run.sh's measurement: see there.
const { chromium } = await import(process.env.OUTDIAL_PLAYWRIGHT);
const URL_ = process.env.OUTDIAL_URL, KEY = process.env.OUTDIAL_KEY, RUNS = Number(process.env.RUNS || 5);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
                                        args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function once(slow) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const p = await ctx.newPage();
  const cdp = await ctx.newCDPSession(p);
  if (slow) {
    await cdp.send("Emulation.setCPUThrottlingRate", { rate: 6 });
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: 150,
      downloadThroughput: 1.6e6 / 8, uploadThroughput: 750e3 / 8 });
  }
  // signed in already (what the sign-in page stores); a mutation observer in the page notes when each
  // screen is drawn (performance.now(), from the navigation's start), so the automation's own delays
  // are not counted
  await p.addInitScript(([k, scopes]) => {
    sessionStorage.setItem("outdial.key", k);
    sessionStorage.setItem("outdial.scopes", scopes);
    window.__drawn = {};
    const checks = { calls: () => document.querySelectorAll("tbody tr[data-call]").length >= 50,
                     call: () => document.querySelector("#timeline li"),
                     billing: () => document.querySelector('tr[data-state="total"]') };
    new MutationObserver(() => {
      for (const [name, drawn] of Object.entries(checks))
        if (!(name in window.__drawn) && drawn()) window.__drawn[name] = performance.now();
    }).observe(document, { childList: true, subtree: true });
  }, [KEY, JSON.stringify({ read: true, trigger: true, admin: true, dnc: true, webhooks: true })]);
  const drawn = async (name) => {
    await p.waitForFunction((n) => n in window.__drawn, name, { timeout: 60000 });
    return p.evaluate((n) => window.__drawn[n] - (window.__clicked || 0), name);
  };
  const t = {};
  await p.goto(URL_ + "/#/calls");
  t.calls = await drawn("calls");
  await p.evaluate(() => { window.__clicked = performance.now(); document.querySelector("tbody tr[data-call] a").click(); });
  t.call = await drawn("call");
  await p.evaluate(() => { window.__clicked = performance.now(); location.hash = "#/billing"; });
  t.billing = await drawn("billing");
  [t.dcl, t.bytes, t.decoded] = await p.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const files = [nav, ...performance.getEntriesByType("resource").filter((r) => !r.name.includes("/v1/"))];
    return [nav.domContentLoadedEventEnd, files.reduce((n, r) => n + r.transferSize, 0),
            files.reduce((n, r) => n + r.decodedBodySize, 0)];
  });
  await ctx.close();
  return t;
}

const results = {};
for (const slow of [false, true]) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await once(slow));
  results[slow ? "slow" : "fast"] = Object.fromEntries(["dcl", "calls", "call", "billing", "bytes", "decoded"].map((k) => [k, median(runs.map((r) => r[k]))]));
}
await browser.close();
const f = results.fast, s = results.slow;
console.log(`console files: ${(f.bytes / 1024).toFixed(1)} KiB transferred (gzip), ${(f.decoded / 1024).toFixed(1)} KiB decoded; no framework`);
console.log("                       unthrottled   6x CPU + fast 3G   ratio");
for (const [k, label] of [["dcl", "open: files loaded"], ["calls", "open: Calls (50 rows)"], ["call", "a call's page"], ["billing", "Billing page"]])
  console.log(`${label.padEnd(22)} ${String(Math.round(f[k])).padStart(8)} ms ${String(Math.round(s[k])).padStart(12)} ms   ${(s[k] / f[k]).toFixed(1)}x`);
