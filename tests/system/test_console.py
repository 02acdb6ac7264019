"""The web console in a real browser: tests/browser/console.test.mjs (Debian's
Chromium headless, playwright-core from npm) against this module's system.
Screenshots of every screen are kept in build/test-artifacts/console/.

Also, without a browser: the console's files are served with strict headers,
and the API key never appears in what the server logs.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from helpers_pipeline import NO_LIMITS, phone

SYSTEM_ENV = {
    "OUTDIAL_WEBHOOK_ALLOW_PRIVATE": "1",      # the browser tests' webhook receiver is on 127.0.0.1
    "OUTDIAL_WEBHOOK_RETRY_SCHEDULE": "600",   # a failed delivery waits: the console's Retry is what sends it
}

ROOT = Path(__file__).resolve().parents[2]
NODE_MODULES = Path(os.environ.get("OUTDIAL_CACHE") or Path.home() / ".cache" / "outdial") / "node" / "node_modules"
SHOTS = ROOT / "build" / "test-artifacts" / "console"


def test_console_files_and_headers(system):
    url = system.services["ingress"].url
    r = requests.get(url + "/", timeout=5)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.headers
    assert '<script src="/console/app.js"' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert r.headers["x-content-type-options"] == "nosniff"
    js = requests.get(url + "/console/app.js", timeout=5)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "sessionStorage" in js.text and "localStorage" not in js.text
    for bad in ("/console/..%2Fingress.c", "/console/.hidden", "/console/nope.js", "/console/main.c"):
        assert requests.get(url + bad, timeout=5).status_code == 404, bad


@pytest.mark.parametrize("path,name", [("/", "index.html"), ("/console/app.js", "app.js"),
                                       ("/console/style.css", "style.css")])
def test_console_files_gzipped_and_revalidated(system, path, name):
    """Gzipped for a client that accepts it, as is for one that does not, the
    same bytes as the file either way; an ETag, and 304 without a body while
    the file is unchanged; revalidated on each load (no-cache), not no-store."""
    url = system.services["ingress"].url + path
    on_disk = (ROOT / "services/ingress/console" / name).read_bytes()
    z = requests.get(url, headers={"Accept-Encoding": "gzip"}, timeout=5, stream=True)
    raw = z.raw.read(decode_content=False)
    assert z.status_code == 200 and z.headers["content-encoding"] == "gzip", z.headers
    assert int(z.headers["content-length"]) == len(raw) < len(on_disk) / 2
    assert gzip.decompress(raw) == on_disk
    assert z.headers["vary"].lower() == "accept-encoding" and z.headers["cache-control"] == "no-cache"
    for ae in ("identity", "gzip;q=0, identity", "gzip; q=0.000", "br"):
        plain = requests.get(url, headers={"Accept-Encoding": ae}, timeout=5)
        assert "content-encoding" not in plain.headers and plain.content == on_disk, ae
    assert requests.get(url, headers={"Accept-Encoding": "deflate, GZIP;q=0.5"}, timeout=5,
                        stream=True).headers.get("content-encoding") == "gzip"
    etag = z.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{16}"', etag), etag
    again = requests.get(url, headers={"If-None-Match": etag}, timeout=5)
    assert again.status_code == 304 and again.content == b"", again.headers
    assert requests.get(url, headers={"If-None-Match": f'W/"x", {etag}'}, timeout=5).status_code == 304
    assert requests.get(url, headers={"If-None-Match": '"0000000000000000"'}, timeout=5).status_code == 200
    # the API's answers stay no-store
    assert requests.get(system.services["ingress"].url + "/v1/calls", timeout=5).headers["cache-control"] == "no-store"


def test_console_in_a_browser(system):
    node = shutil.which("node")
    if not (node and Path("/usr/bin/chromium").exists() and (NODE_MODULES / "playwright-core").exists()
            and (NODE_MODULES / "axe-core").exists()):
        pytest.fail("node, /usr/bin/chromium, playwright-core and axe-core are needed (deploy/local/deps.sh installs them)")
    p = system.new_project(pacing=600, scopes=("outbound:trigger", "sessions:read"), **NO_LIMITS)
    shutil.rmtree(SHOTS, ignore_errors=True)
    env = dict(os.environ, OUTDIAL_URL=system.services["ingress"].url, OUTDIAL_KEY=p.key,
               OUTDIAL_ADMIN_KEY=p.admin_key, OUTDIAL_PHONE=phone(0),
               OUTDIAL_PHONES=",".join(phone(0) for _ in range(10)), OUTDIAL_BUSY_PHONE=phone(5),
               OUTDIAL_SHOTS=str(SHOTS), OUTDIAL_PLAYWRIGHT=str(NODE_MODULES / "playwright-core" / "index.mjs"),
               OUTDIAL_AXE=str(NODE_MODULES / "axe-core" / "axe.min.js"))
    r = subprocess.run([node, "--test", "--test-concurrency=1", "--test-reporter=spec",
                        str(ROOT / "tests/browser/console.test.mjs")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"browser tests failed:\n{r.stdout[-6000:]}\n{r.stderr[-3000:]}"
    shots = sorted(x.name for x in SHOTS.glob("*.png"))
    assert {"calls.png", "calls-filtered.png", "new-call.png", "live.png", "call.png", "calls-phone.png",
            "new-batch.png", "batch.png", "keys.png", "dnc.png", "webhooks.png", "webhook.png", "billing.png",
            "phone-signin.png", "phone-calls.png", "phone-calls-one.png", "phone-webhooks-one.png", "phone-billing.png"} <= set(shots), shots
    # the keys went to the API in a header only: no log line of ingress holds them
    log = system.services["ingress"].log_tail(100000)
    assert p.key not in log and p.admin_key not in log


def test_console_live_reconnects_after_ingress_dies(system):
    """The Live tab is open when the ingress is killed (-9): the tab says the
    connection is lost, reconnects by itself once an ingress is back, and
    shows a call placed since, live, until it ends completed."""
    node = shutil.which("node")
    p = system.new_project(pacing=600, scopes=("outbound:trigger", "sessions:read"), **NO_LIMITS)
    SHOTS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OUTDIAL_URL=system.services["ingress"].url, OUTDIAL_KEY=p.key, OUTDIAL_SHOTS=str(SHOTS),
               OUTDIAL_PLAYWRIGHT=str(NODE_MODULES / "playwright-core" / "index.mjs"))
    proc = subprocess.Popen([node, str(ROOT / "tests/browser/live_reconnect.mjs")], env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == "watching", proc.stderr.read()
        ingress = system.services["ingress"]
        ingress.restart(hard=True)          # kill -9, then a new ingress on the same port
        r = p.api.create_call(phone(0), metadata={"sim_ring_ms": "1500", "sim_talk_ms": "1500"})
        assert r.status_code == 202, r.text
        proc.stdin.write(r.json()["id"] + "\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and out.strip() == "reconnected", f"{out}\n{err}"
