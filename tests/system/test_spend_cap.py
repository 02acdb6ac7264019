"""Spend caps (issue 7, docs/batches.md "Spend cap"): a batch that sets
spend_cap_micros is paused with pause_reason spend_cap once its calls' cost
reaches the cap, its remaining calls held (not dialed); it resumes only after
the cap is raised or removed. The wallet's own floor: a project's wallet goes
negative by no more than the calls already in flight.

Costs: the sim bills `sim_talk_ms` of talk (metadata column of the CSV) at
the project's price, rounded up to the second.
"""

from __future__ import annotations

import math
import time

from harness import wait_until
from helpers_batches import assert_created, csv_text, get_batch, results_csv, upload, wait_batch
from helpers_pipeline import DEFAULT_PRICE_PER_MIN, NO_LIMITS, assert_accepted, assert_problem, phone, wait_all_final

COST = math.ceil(1 * DEFAULT_PRICE_PER_MIN / 60)  # one billed second (900 ms of talk)


def _batch(p, n, cap=None, pacing=60):
    rows = [["phone", "sim_talk_ms"]] + [[phone(0), "900"] for _ in range(n)]  # billed 1 s
    return assert_created(upload(p.api, csv_text(rows), pacing=pacing, spend_cap=cap))


def _billed(system, bid):
    return int(system.scalar(f"SELECT coalesce(sum(cost_micros), 0) FROM calls WHERE batch_id = '{bid}'"))


def _dialed(system, bid):
    return int(system.scalar(f"SELECT count(*) FROM calls WHERE batch_id = '{bid}' AND dialed_at IS NOT NULL"))


def test_the_cap_pauses_the_batch_and_holds_the_rest(system):
    p = system.new_project(pacing=600, **NO_LIMITS)
    b = _batch(p, 12, cap=3 * COST)
    assert b["spend_cap_micros"] == 3 * COST and b["pause_reason"] is None
    paused = wait_batch(p.api, b["id"], lambda x: x["status"] == "paused", timeout=60, what="paused by the cap")
    assert paused["pause_reason"] == "spend_cap", paused
    # settle: calls in flight when it paused end and are billed
    wait_until(lambda: get_batch(p.api, b["id"])["counts"]["dialing"] + get_batch(p.api, b["id"])["counts"]
               ["connected"] == 0, timeout=30, what="in-flight calls ended")
    time.sleep(2)
    after = get_batch(p.api, b["id"])
    spent, dialed = after["spent_micros"], _dialed(system, b["id"])
    assert spent == _billed(system, b["id"]) and spent >= 3 * COST, after
    # over the cap by the calls in flight at most (one per second at this pacing, each ~1.1 s)
    assert spent <= 3 * COST + 3 * COST, (spent, dialed)
    assert after["counts"]["queued"] == 12 - dialed and after["counts"]["queued"] > 0, after
    assert after["final_states"]["completed"] == dialed
    time.sleep(2)
    assert _dialed(system, b["id"]) == dialed, "a paused batch's calls were dialed"
    # the last call's event says so, and the audit log names the outcome service
    details = [system.scalar(f"SELECT string_agg(detail, ' | ') FROM call_events e JOIN calls c ON c.id = e.call_id "
                             f"WHERE c.batch_id = '{b['id']}'")]
    assert "reached its spend cap" in details[0], details
    audit = [a for a in p.admin.get("/v1/audit-log", params={"action": "batch.paused"}).json()["data"]
             if a["object_id"] == b["id"]]
    assert audit and audit[0]["actor"] == {"type": "system", "service": "outcome"}, audit
    assert audit[0]["changes"]["pause_reason"]["to"] == "spend_cap", audit

    # resuming at the cap is refused; raising it lets the batch go on, removing it lets it finish
    assert_problem(p.api.post(f"/v1/batches/{b['id']}/resume"), 409, "spend_cap_reached")
    up = p.api.patch(f"/v1/batches/{b['id']}", json={"spend_cap_micros": spent + 2 * COST})
    assert up.status_code == 200 and up.json()["spend_cap_micros"] == spent + 2 * COST, up.text
    assert p.api.post(f"/v1/batches/{b['id']}/resume").status_code == 200
    again = wait_batch(p.api, b["id"], lambda x: x["status"] in ("paused", "completed"), timeout=60, what="paused again")
    assert again["status"] == "paused" and again["pause_reason"] == "spend_cap", again
    wait_until(lambda: get_batch(p.api, b["id"])["counts"]["dialing"] + get_batch(p.api, b["id"])["counts"]
               ["connected"] == 0, timeout=30, what="in-flight calls ended")
    assert p.api.patch(f"/v1/batches/{b['id']}", json={"spend_cap_micros": None}).status_code == 200
    assert p.api.post(f"/v1/batches/{b['id']}/resume").status_code == 200
    done = wait_batch(p.api, b["id"], lambda x: x["status"] == "completed", timeout=60, what="completed")
    assert done["final_states"]["completed"] == 12 and done["spent_micros"] == _billed(system, b["id"]), done
    assert done["pause_reason"] is None and done["spend_cap_micros"] is None
    _, rows = results_csv(p.api, b["id"])
    assert len(rows) == 1 + 12 and all(r[4] == "completed" for r in rows[1:]), rows
    changes = [a["changes"] for a in p.admin.get("/v1/audit-log", params={"action": "batch.updated"}).json()["data"]]
    assert {"spend_cap_micros": {"from": spent + 2 * COST, "to": None}} in changes, changes


def test_a_cap_not_reached_changes_nothing(system):
    p = system.new_project(pacing=600, **NO_LIMITS)
    b = _batch(p, 3, cap=100 * COST)
    done = wait_batch(p.api, b["id"], lambda x: x["status"] == "completed", timeout=60, what="completed")
    assert done["spent_micros"] == _billed(system, b["id"]) > 0 and done["pause_reason"] is None
    # a batch whose last call reaches the cap completes: nothing is left to hold
    b2 = _batch(p, 2, cap=2 * COST)
    done2 = wait_batch(p.api, b2["id"], lambda x: x["status"] == "completed", timeout=60, what="completed")
    assert done2["spent_micros"] == _billed(system, b2["id"]) >= 2 * COST


def test_bad_caps_are_refused(system):
    p = system.new_project(pacing=600, **NO_LIMITS)
    rows = csv_text([["phone"], [phone(0)]])
    for bad in ("0", "-5", "1.5", "abc", "", "1" * 30):
        r = upload(p.api, rows, spend_cap=bad)
        problem = assert_problem(r, 422, "invalid_spend_cap")
        assert problem["errors"][0]["field"] == "spend_cap_micros"
    r = upload(p.api, rows, multipart=True, spend_cap="0")
    assert_problem(r, 422, "invalid_spend_cap")
    b = _batch(p, 1, cap=None, pacing=1)
    for body, code in (({"spend_cap_micros": 0}, "invalid_spend_cap"), ({"spend_cap_micros": "5"}, "invalid_spend_cap"),
                       ({"spend_cap_micros": 1.5}, "invalid_spend_cap"), ({"pacing_per_min": 5}, "unknown_field")):
        assert_problem(p.api.patch(f"/v1/batches/{b['id']}", json=body), 422, code)
    assert_problem(p.api.patch(f"/v1/batches/{b['id']}", json={}), 400, "invalid_json")
    assert_problem(p.api.patch(f"/v1/batches/{b['id']}", data=b"nope", headers={"Content-Type": "application/json"}),
                   400, "invalid_json")
    assert_problem(p.api.patch("/v1/batches/0193f3c2-0000-7000-8000-000000000000", json={"spend_cap_micros": 5}),
                   404, "not_found")
    other = system.new_project(pacing=600, **NO_LIMITS)
    assert_problem(other.api.patch(f"/v1/batches/{b['id']}", json={"spend_cap_micros": 5}), 404, "not_found")


def test_the_wallet_goes_negative_by_the_calls_in_flight_at_most(system):
    """Six calls paced one per 2 s against a wallet of one call's cost: the
    first bill empties it, and the calls not yet dispatched are held; the debt
    is at most the calls that were already dialing when it ran dry."""
    p = system.new_project(pacing=30, wallet=COST, **NO_LIMITS)
    ids = [assert_accepted(p.api.create_call(phone(0), metadata={"sim_talk_ms": 900}))["id"] for _ in range(6)]
    wait_until(lambda: int(system.scalar(f"SELECT count(*) FROM calls WHERE project_id = '{p.id}' "
                                         "AND final_state IS NOT NULL")) >= 1, timeout=30, what="a first bill")
    time.sleep(6)  # room for three more dispatches, were they allowed
    dialed = int(system.scalar(f"SELECT count(*) FROM calls WHERE project_id = '{p.id}' AND dialed_at IS NOT NULL"))
    billed = int(system.scalar(f"SELECT coalesce(sum(cost_micros), 0) FROM calls WHERE project_id = '{p.id}'"))
    wallet = p.admin.get("/v1/project").json()["wallet"]["balance_micros"]
    assert dialed <= 2, f"{dialed} calls dispatched although the wallet ran dry after the first"
    assert wallet == COST - billed and wallet <= 0, (wallet, billed)
    assert wallet >= COST - dialed * 2 * COST, (wallet, dialed)
    queued = int(system.scalar(f"SELECT count(*) FROM calls WHERE project_id = '{p.id}' AND status = 'queued'"))
    assert queued == 6 - dialed
    system.ctl("project", "set", p.id, "--wallet", "100000000", json_out=False)
    calls = wait_all_final(system, ids, timeout=60)
    assert {c["final_state"] for c in calls.values()} == {"completed"}
