"""Webhook limits a multi-tenant API needs (issue 18; docs/webhooks.md),
black-box against the real services:

  * sending slots shared fairly between projects: a project whose endpoint
    answers after 10 s, with a backlog, holds at most
    OUTDIAL_WEBHOOK_PER_PROJECT slots, and another project's deliveries keep
    their latency (p99 under 2 s) while the backlog drains;
  * no delivery row is written for a disabled endpoint (any of the three
    triggers: calls, call events, domain events such as batch.completed);
  * finished deliveries expire after OUTDIAL_WEBHOOK_RETENTION_DAYS, in
    bounded batches; pending ones and recent ones stay;
  * endpoint secrets encrypted at rest with OUTDIAL_SECRET_KEY: the table
    shows no secret, deliveries still verify (the PyPI `standardwebhooks`
    package, via helpers_webhooks), rows written before encryption keep
    working and `outdialctl migrate` seals them, a key rotation with
    OUTDIAL_SECRET_KEY_PREVIOUS, and ingress and outcome refuse to start
    without a key.

The receivers are real HTTP servers on 127.0.0.1 (helpers_webhooks.Receiver).
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import time

import pytest

from harness import BIN_DIR, SECRET_KEY, SQL_DIR, free_port, wait_until
from helpers_batches import phones, upload, wait_batch
from helpers_pipeline import NO_LIMITS, assert_accepted, parse_ts, phone
from helpers_webhooks import Receiver, reply

SYSTEM_ENV = {
    "OUTDIAL_WEBHOOK_ALLOW_PRIVATE": "1",       # receivers live on 127.0.0.1
    "OUTDIAL_WEBHOOK_POLL_MS": "100",
    "OUTDIAL_WEBHOOK_RETRY_SCHEDULE": "3600",   # a failed attempt stays pending for an hour
}
SCOPES = ("outbound:trigger", "sessions:read", "webhooks:manage")
TEST_TIMEOUT = 240
SEALED_PREFIX = "odenc1:"


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make() -> Receiver:
        rx = Receiver()
        made.append(rx)
        return rx

    yield make
    for rx in made:
        rx.close()


@contextlib.contextmanager
def restarted(system, names=("outcome",), **env):
    """Restart these services with env changes (None removes a variable);
    restore their env and restart them again afterwards."""
    saved = {n: dict(system[n].env) for n in names}
    try:
        for n in names:
            for k, v in env.items():
                if v is None:
                    system[n].env.pop(k, None)
                else:
                    system[n].env[k] = str(v)
            system[n].restart(timeout=30)
        yield
    finally:
        for n in names:
            system[n].env.clear()
            system[n].env.update(saved[n])
            if system[n].running():
                system[n].term()
            system[n].start(timeout=30)


def _project(system):
    return system.new_project(pacing=60000, scopes=SCOPES, **NO_LIMITS)


def _endpoint(p, url: str, **body) -> dict:
    r = p.api.post("/v1/webhooks", json={"url": url, **body})
    assert r.status_code == 201, r.text
    return r.json()


def _call(p, digit: int = 0, **kw) -> str:
    return assert_accepted(p.api.create_call(phone(digit), **kw))["id"]


def _stored(system, wid: str) -> tuple[str, str | None]:
    row = system.rows(f"SELECT secret, coalesce(prev_secret, '') FROM webhook_endpoints WHERE id = '{wid}'")
    assert row, f"no endpoint {wid}"
    return row[0][0], row[0][1] or None


def _kid(system) -> str:
    """The key id the services seal with, from outcome's start line."""
    for line in system.outcome.log_path.read_text().splitlines():
        if "secrets opened with key " in line:
            return line.split("secrets opened with key ", 1)[1][:8]
    raise AssertionError("outcome did not log its key id")


def _queued_hits(rx, path: str, call_id: str) -> list:
    return [h for h in rx.hits(path) if h.type == "call.queued" and h.json()["data"]["id"] == call_id]


def _ctl_migrate(system, **env) -> subprocess.CompletedProcess:
    e = system.env()
    for k, v in env.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return subprocess.run([str(BIN_DIR / "outdialctl"), "migrate", "--dir", str(SQL_DIR)], env=e,
                          capture_output=True, text=True, timeout=60)


# ============================================================ 1. fair slots


def test_slow_project_cannot_hold_the_slots_others_need(system, receivers):
    """Project A's endpoint answers after 10 s and has 12 due deliveries; the
    sender has 8 slots (OUTDIAL_WEBHOOK_CONCURRENCY), 8 per endpoint, and 4
    per project. A never has more than 4 in flight; project B's call.queued
    events, one every 0.4 s while A's backlog drains, arrive with p99 under
    2 s; then A's backlog is delivered whole. (Before the per-project cap, A
    took all 8 slots and B waited for A's 10 s answers.)"""
    slow, fast = receivers(), receivers()
    slow.plan("/a", [], then=reply(200, delay=10))
    with restarted(system, OUTDIAL_WEBHOOK_CONCURRENCY="8", OUTDIAL_WEBHOOK_PER_ENDPOINT="8",
                   OUTDIAL_WEBHOOK_PER_PROJECT="4", OUTDIAL_WEBHOOK_TIMEOUT_MS="15000"):
        a, b = _project(system), _project(system)
        ep_a = _endpoint(a, slow.url("/a"), event_types=["call.queued"])
        _endpoint(b, fast.url("/b"), event_types=["call.queued"])
        try:
            a_ids = [_call(a, 0) for _ in range(12)]
            slow.wait_hits(4, "/a", timeout=10, what="A's first requests")
            t0 = time.monotonic()
            b_ids = []
            while time.monotonic() - t0 < 10:   # B's events while A's first two rounds are out
                b_ids.append(_call(b, 0))
                time.sleep(0.4)
            fast.wait_for(lambda hs: all(_queued_hits(fast, "/b", c) for c in b_ids), "/b", timeout=20,
                          what="B's call.queued events")
            lat = sorted(_queued_hits(fast, "/b", c)[0].at - parse_ts(_queued_hits(fast, "/b", c)[0].json()
                                                                       ["created_at"]).timestamp()
                         for c in b_ids)
            p50 = lat[len(lat) // 2]
            p99 = lat[max(0, math.ceil(0.99 * len(lat)) - 1)]
            print(f"\nfairness: B {len(lat)} deliveries while A (10 s endpoint, 12 due) drained: "
                  f"p50 {p50:.3f} s, p99 {p99:.3f} s, max {lat[-1]:.3f} s; "
                  f"A max in flight {slow.max_in_flight('/a')}")
            assert p99 < 2.0, f"B's p99 {p99:.2f} s behind A's slow endpoint: {[round(x, 2) for x in lat]}"
            assert slow.count("/a") < 12, "A's backlog should still be draining while B was measured"
            # A's backlog drains, never more than its cap at once
            slow.wait_for(lambda hs: {h.json()["data"]["id"] for h in hs} >= set(a_ids), "/a", timeout=60,
                          what="A's whole backlog")
            assert slow.max_in_flight("/a") == 4, (
                f"{slow.max_in_flight('/a')} of A's requests in flight at once (cap 4)")
        finally:
            a.api.delete(f"/v1/webhooks/{ep_a['id']}")


def test_copies_before_the_upgrade_lease_nothing(system, receivers):
    """During a rolling upgrade, an outcome copy older than 023 calls the old
    od_webhook_cycle: it records its answers but leases nothing (it could not
    open the encrypted secrets, 024); the new signature leases the delivery."""
    rx = receivers()
    p = _project(system)
    ep = _endpoint(p, rx.url("/up"), event_types=["call.queued"])
    system.outcome.term()
    try:
        cid = _call(p, 0)
        old = system.scalar("SELECT od_webhook_cycle('old-copy', '[]', '{1}', 60, 100, 8, 1)")
        assert old == "[]", old
        new = system.scalar("SELECT od_webhook_cycle('new-copy', '[]', '{1}', 60, 100, 8, 64, 1)")
        assert cid in new and ep["id"] in new and SEALED_PREFIX in new, new
    finally:
        system.outcome.start(timeout=30)
    # its one-second lease runs out and the real outcome sends it
    rx.wait_for(lambda hs: _queued_hits(rx, "/up", cid), "/up", timeout=20, what="the delivery")
    assert _queued_hits(rx, "/up", cid)[0].valid_for(ep["secret"])


# ============================================ 2. disabled endpoints, retention


def test_no_deliveries_written_for_disabled_endpoints(system, receivers):
    """A disabled endpoint gets no delivery rows from any trigger: calls
    (call.queued), call events (dialing ... completed) and domain events
    (batch.completed); an enabled one beside it gets them all."""
    rx = receivers()
    p = _project(system)
    on = _endpoint(p, rx.url("/on"))
    off = _endpoint(p, rx.url("/off"), enabled=False)
    cid = _call(p, 0)
    p.wait_final(cid, timeout=30)
    r = upload(p.api, "phone\n" + "\n".join(phones([0, 0])) + "\n", pacing=6000)
    assert r.status_code in (200, 201, 202), r.text
    wait_batch(p.api, r.json()["id"], timeout=60)
    rx.wait_for(lambda hs: any(h.type == "batch.completed" for h in hs), "/on", timeout=20,
                what="batch.completed on the enabled endpoint")
    got = dict(system.rows(f"SELECT endpoint_id, count(*) FROM webhook_deliveries "
                           f"WHERE endpoint_id IN ('{on['id']}', '{off['id']}') GROUP BY endpoint_id"))
    assert int(got.get(on["id"], 0)) >= 3 * 4 + 1, got   # 3 calls' queued .. completed, and the batch's
    assert off["id"] not in got, f"deliveries written for a disabled endpoint: {got}"
    assert rx.count("/off") == 0


def test_finished_deliveries_expire_after_the_retention(system, receivers):
    """Succeeded and failed deliveries created more than
    OUTDIAL_WEBHOOK_RETENTION_DAYS (30) days ago are deleted, 2,500 of them
    in batches of 1,000; a pending one as old stays, and so do recent ones."""
    rx = receivers()
    rx.plan("/down", [], then=503)
    p = _project(system)
    ok = _endpoint(p, rx.url("/ok"), event_types=["call.queued"])
    down = _endpoint(p, rx.url("/down"), event_types=["call.queued"])
    cids = [_call(p, 0) for _ in range(3)]
    rx.wait_for(lambda hs: len([h for h in hs if h.path == "/ok"]) >= 3
                and len([h for h in hs if h.path == "/down"]) >= 3, timeout=20, what="first attempts")
    wait_until(lambda: system.scalar(f"SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = '{down['id']}' "
                                     f"AND attempts = 1 AND lease_owner IS NULL") == "3", 20, 0.1,
               what="the 503s recorded (pending, next attempt in an hour)")
    recent = system.scalar(f"SELECT id FROM webhook_deliveries WHERE endpoint_id = '{ok['id']}' LIMIT 1")
    # two of ok's (succeeded) and every one of down's (pending) made 31 days old, plus 2,500 old finished rows
    system.psql(f"""
        UPDATE webhook_deliveries SET created_at = now() - interval '31 days'
         WHERE (endpoint_id = '{ok['id']}' AND id <> '{recent}') OR endpoint_id = '{down['id']}';
        INSERT INTO webhook_deliveries (endpoint_id, event_id, event_type, payload, status, attempts, created_at,
                                        delivered_at)
        SELECT '{ok['id']}', 'evt_old' || i, 'call.queued', '{{}}', CASE WHEN i % 2 = 0 THEN 'succeeded'
               ELSE 'failed' END, 1, now() - interval '40 days' - make_interval(secs => i), now() - interval '40 days'
          FROM generate_series(1, 2500) i;
        -- 29 days: inside the retention
        UPDATE webhook_deliveries SET created_at = now() - interval '29 days' WHERE id = '{recent}';
    """)
    before = system.outcome.metrics().get("outdial_outcome_webhook_deliveries_expired_total", 0)
    wait_until(lambda: system.scalar(f"SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = '{ok['id']}'")
               == "1", 30, 0.2, what="the old finished deliveries deleted")
    assert system.scalar(f"SELECT id FROM webhook_deliveries WHERE endpoint_id = '{ok['id']}'") == recent
    assert system.scalar(f"SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = '{down['id']}' "
                         f"AND status = 'pending'") == "3", "pending deliveries are never expired"
    wait_until(lambda: system.outcome.metrics().get("outdial_outcome_webhook_deliveries_expired_total", 0)
               - before >= 2502, 10, 0.2, what="the expiry metric")
    assert "webhook retention: 1000 finished deliveries" in system.outcome.log_path.read_text(), (
        "the deletions run in batches of 1,000")
    del cids


# ============================================================ 3. secrets at rest


def test_secrets_are_encrypted_at_rest(system, receivers):
    """After creating and rotating an endpoint, nothing in webhook_endpoints
    (or the audit log) holds a whsec_ value or either secret; the deliveries
    carry both signatures, and they verify (standardwebhooks)."""
    rx = receivers()
    p = _project(system)
    ep = _endpoint(p, rx.url("/s"), event_types=["call.queued"])
    first = ep["secret"]
    assert first.startswith("whsec_")
    r = p.api.post(f"/v1/webhooks/{ep['id']}/rotate-secret")
    assert r.status_code == 200, r.text
    second = r.json()["secret"]
    assert second.startswith("whsec_") and second != first
    dump = system.psql("SELECT row_to_json(w) FROM webhook_endpoints w")
    assert "whsec_" not in dump, dump
    for s in (first, second):
        assert s not in dump and s[6:] not in dump, "a secret readable in the table"
    sealed, sealed_prev = _stored(system, ep["id"])
    assert sealed.startswith(SEALED_PREFIX + _kid(system) + ":"), sealed
    assert sealed_prev and sealed_prev.startswith(SEALED_PREFIX), sealed_prev
    audit = system.psql("SELECT row_to_json(a) FROM audit_log a")
    assert "whsec_" not in audit and "odenc1" not in audit
    cid = _call(p, 0)
    rx.wait_for(lambda hs: _queued_hits(rx, "/s", cid), "/s", timeout=20, what="the delivery")
    hit = _queued_hits(rx, "/s", cid)[0]
    assert hit.valid_for(second) and hit.valid_for(first), hit.signature
    assert len(hit.signature.split()) == 2, hit.signature


def test_plain_rows_keep_working_and_migrate_seals_them(system, receivers):
    """A row written before encryption (its secret in plain text) is still
    signed with; `outdialctl migrate` with the key seals it, in place, and
    deliveries go on verifying with the same secret. Without the key,
    migrate changes nothing and warns."""
    rx = receivers()
    p = _project(system)
    ep = _endpoint(p, rx.url("/plain"), event_types=["call.queued"])
    plain = "whsec_" + "QUJD" * 10 + "QUI="     # any base64 of 32 bytes
    system.psql(f"UPDATE webhook_endpoints SET secret = '{plain}' WHERE id = '{ep['id']}'")
    c1 = _call(p, 0)
    rx.wait_for(lambda hs: _queued_hits(rx, "/plain", c1), "/plain", timeout=20, what="a delivery")
    assert _queued_hits(rx, "/plain", c1)[0].valid_for(plain)

    cp = _ctl_migrate(system, OUTDIAL_SECRET_KEY=None)
    assert cp.returncode == 0, cp.stderr
    assert "plain text" in cp.stderr, cp.stderr
    assert _stored(system, ep["id"])[0] == plain

    cp = _ctl_migrate(system)
    assert cp.returncode == 0, cp.stderr
    sealed = _stored(system, ep["id"])[0]
    assert sealed.startswith(SEALED_PREFIX) and "whsec_" not in sealed, sealed
    c2 = _call(p, 0)
    rx.wait_for(lambda hs: _queued_hits(rx, "/plain", c2), "/plain", timeout=20, what="a delivery after migrate")
    assert _queued_hits(rx, "/plain", c2)[0].valid_for(plain)
    # again: nothing left to seal
    cp = _ctl_migrate(system)
    assert cp.returncode == 0 and "sealed" not in cp.stderr, cp.stderr
    assert _stored(system, ep["id"])[0] == sealed


def test_secret_key_rotation(system, receivers):
    """Rotating OUTDIAL_SECRET_KEY: `outdialctl migrate` with the new key and
    the previous one re-seals every row; outcome with the new key (the
    previous one still set) signs as before. A migrate whose keys open
    nothing fails and changes nothing."""
    rx = receivers()
    p = _project(system)
    ep = _endpoint(p, rx.url("/rot"), event_types=["call.queued"])
    secret = ep["secret"]
    old_kid = _kid(system)
    new_key = "ab" * 32
    cp = _ctl_migrate(system, OUTDIAL_SECRET_KEY="cd" * 32)   # a key that opens nothing
    assert cp.returncode == 1 and "cannot be opened" in cp.stderr, (cp.returncode, cp.stderr)
    assert _stored(system, ep["id"])[0].startswith(f"{SEALED_PREFIX}{old_kid}:")
    try:
        with restarted(system, ("ingress", "outcome"), OUTDIAL_SECRET_KEY=new_key,
                       OUTDIAL_SECRET_KEY_PREVIOUS=SECRET_KEY):
            new_kid = _kid(system)
            assert new_kid != old_kid
            c1 = _call(p, 0)    # before migrate: outcome opens the row with the previous key
            rx.wait_for(lambda hs: _queued_hits(rx, "/rot", c1), "/rot", timeout=20, what="a delivery")
            assert _queued_hits(rx, "/rot", c1)[0].valid_for(secret)
            cp = _ctl_migrate(system, OUTDIAL_SECRET_KEY=new_key, OUTDIAL_SECRET_KEY_PREVIOUS=SECRET_KEY)
            assert cp.returncode == 0, cp.stderr
            assert _stored(system, ep["id"])[0].startswith(f"{SEALED_PREFIX}{new_kid}:")
            assert system.scalar(f"SELECT count(*) FROM webhook_endpoints "
                                 f"WHERE secret NOT LIKE '{SEALED_PREFIX}{new_kid}:%'") == "0"
            c2 = _call(p, 0)
            rx.wait_for(lambda hs: _queued_hits(rx, "/rot", c2), "/rot", timeout=20, what="a delivery")
            assert _queued_hits(rx, "/rot", c2)[0].valid_for(secret)
    finally:
        # back to the module's key for the tests after this one
        cp = _ctl_migrate(system, OUTDIAL_SECRET_KEY=SECRET_KEY, OUTDIAL_SECRET_KEY_PREVIOUS=new_key)
        assert cp.returncode == 0, cp.stderr


@pytest.mark.parametrize("binary", ["outdial-ingress", "outdial-outcome"])
@pytest.mark.parametrize("key", [None, "", "12345", "zz" * 32])
def test_services_refuse_to_start_without_a_valid_key(system, binary, key):
    env = system.env(OUTDIAL_HTTP_PORT=str(free_port()))
    if key is None:
        env.pop("OUTDIAL_SECRET_KEY", None)
    else:
        env["OUTDIAL_SECRET_KEY"] = key
    cp = subprocess.run([str(BIN_DIR / binary)], env=env, capture_output=True, text=True, timeout=30)
    assert cp.returncode != 0, f"{binary} started without a valid key"
    assert "OUTDIAL_SECRET_KEY" in cp.stderr, cp.stderr
