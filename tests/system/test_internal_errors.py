"""Internal errors (issue 7): a call that ends internal_error records the
component that failed, the reason and the correlation ids; the outcome
service counts it in outdial_internal_errors_total{component}, writes one
alert line an operator's log router can match ("alert": "internal_error"),
and POSTs it to the operator's webhook, signed, again after a failure.

The fault is real: the dialer is killed (kill -9) with calls on the line, so
their leases run out and the reaper ends them. Two outcome copies run, so
"once" is checked across copies. The engine component is checked in
test_engine.py (an engine that refuses the session).
"""

from __future__ import annotations

import json
import time

import pytest

from harness import free_port, wait_until
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final, wait_status
from helpers_webhooks import Receiver

ALERT_PORT = free_port()
ALERT_SECRET = "whsec_" + "c2VjcmV0LWZvci1hbGVydHMtaW4tdGVzdHMtMDEyMzQ1Njc="
SYSTEM_ENV = {
    "OUTDIAL_ALERT_WEBHOOK_URL": f"http://127.0.0.1:{ALERT_PORT}/alerts",
    "OUTDIAL_ALERT_WEBHOOK_SECRET": ALERT_SECRET,
    "OUTDIAL_ALERT_WEBHOOK_RETRY_S": "1",
    "OUTDIAL_REAPER_INTERVAL_MS": "200",
}


@pytest.fixture(scope="module")
def rx():
    r = Receiver(port=ALERT_PORT)
    yield r
    r.close()


@pytest.fixture(scope="module")
def outcome2(system):
    svc = system.add_service("outcome2", "outdial-outcome")
    yield svc
    svc.term()


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a member twice in a log line: {keys}"
    return dict(pairs)


def _alert_lines(system, call_ids):
    """The alert lines of these calls in both outcome copies' logs (every generation), each checked to name
    every member once (a log router's JSON parser may refuse or mangle a line that does not)."""
    lines = []
    for name in ("outcome", "outcome2"):
        svc = system.services.get(name)
        if svc is None:
            continue
        for path in sorted(svc.log_dir.glob(f"{name}.*.log")):
            for raw in path.read_text(errors="replace").splitlines():
                if '"alert"' not in raw:
                    continue
                line = json.loads(raw, object_pairs_hook=_no_duplicate_keys)
                if line.get("alert") == "internal_error" and line.get("call_id") in call_ids:
                    lines.append(line)
    return lines


def _metric(system, component):
    total = 0.0
    for name in ("outcome", "outcome2"):
        svc = system.services.get(name)
        if svc is not None and svc.running():
            total += svc.metrics().get(f'outdial_internal_errors_total{{component="{component}"}}', 0.0)
    return total


def _kill_dialer_with_calls_on_the_line(system, p, n):
    ids = [assert_accepted(p.api.create_call(phone(0), metadata={"sim_talk_ms": 120000}))["id"] for _ in range(n)]
    for i in ids:
        wait_status(system, i, ("connected",), timeout=30)
    dialer_ids = {system.scalar(f"SELECT dialer_id FROM calls WHERE id = '{i}'") for i in ids}
    system.dialer.kill9()
    system.dialer.start(timeout=30)
    calls = wait_all_final(system, ids, timeout=40)
    assert {c["final_state"] for c in calls.values()} == {"internal_error"}, calls
    return ids, dialer_ids


def test_a_dead_dialers_calls_are_recorded_counted_logged_and_sent_once(system, rx, outcome2):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    before = _metric(system, "dialer")
    rx.plan("/alerts", [], then=200)
    ids, dialer_ids = _kill_dialer_with_calls_on_the_line(system, p, 3)

    # recorded on the call, in the transaction that ended it
    for i in ids:
        err = json.loads(system.scalar(f"SELECT internal_error FROM calls WHERE id = '{i}'"))
        assert err["component"] == "dialer" and err["detected_by"] == "outcome reaper", err
        assert err["reason"] == "the dialer stopped renewing its lease", err
        assert err["dialer_id"] in dialer_ids, err

    # one POST per call (two outcome copies claim with SKIP LOCKED), signed, with the correlation ids
    wait_until(lambda: len({h.id for h in rx.hits("/alerts")}) >= 3, timeout=20, what="3 alert webhooks")
    time.sleep(1.5)  # a duplicate would have come by now
    hits = [h for h in rx.hits("/alerts") if h.json().get("call_id") in ids]
    assert sorted(h.json()["call_id"] for h in hits) == sorted(ids), [h.json() for h in hits]
    for h in hits:
        assert h.valid_for(ALERT_SECRET), h.headers
        body = h.json()
        assert h.id == f"alert_{body['call_id']}"
        assert body["type"] == "internal_error" and body["component"] == "dialer"
        assert body["project_id"] == p.id and body["batch_id"] is None
        assert body["scenario"] == p.scenario and body["dialer_id"] in dialer_ids
        assert body["reason"] == "the dialer stopped renewing its lease" and body["ended_at"]
    assert system.scalar(f"SELECT count(*) FROM calls WHERE id = ANY('{{{','.join(ids)}}}') "
                         "AND alerted_at IS NOT NULL") == "3"

    # one alert line per call over both copies, routable by its members
    lines = _alert_lines(system, set(ids))
    assert sorted(l["call_id"] for l in lines) == sorted(ids), lines
    for l in lines:
        assert l["level"] == "error" and l["component"] == "dialer" and l["project_id"] == p.id, l
        assert l["msg"].startswith("ALERT internal_error in dialer"), l
    # counted once each
    wait_until(lambda: _metric(system, "dialer") - before == 3, timeout=10,
               what=f"internal error metric +3 (now {_metric(system, 'dialer') - before})")


def test_a_failing_operator_webhook_is_sent_again_and_alerted_once(system, rx, outcome2):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    before = _metric(system, "dialer")
    rx.plan("/alerts", [503, 500], then=200)  # the first two POSTs fail, whoever sends them
    ids, _ = _kill_dialer_with_calls_on_the_line(system, p, 1)
    cid = ids[0]
    wait_until(lambda: any(h.json().get("call_id") == cid and h.answer == 200 for h in rx.hits("/alerts")),
               timeout=30, what="the alert delivered after two failures")
    mine = [h for h in rx.hits("/alerts") if h.json().get("call_id") == cid]
    assert [h.answer for h in mine] == [503, 500, 200], [h.answer for h in mine]
    # backoff: 1 s, then 2 s
    assert mine[1].t - mine[0].t >= 0.9 and mine[2].t - mine[1].t >= 1.9, [h.t for h in mine]
    assert len({h.id for h in mine}) == 1  # the same webhook-id every time: receivers deduplicate on it
    wait_until(lambda: system.scalar(f"SELECT alerted_at IS NOT NULL FROM calls WHERE id = '{cid}'") == "t",
               timeout=10, what="alert marked done")
    assert system.scalar(f"SELECT alert_attempts FROM calls WHERE id = '{cid}'") == "3"
    # the line and the count happen once, not per attempt
    assert len(_alert_lines(system, {cid})) == 1
    assert _metric(system, "dialer") - before == 1
