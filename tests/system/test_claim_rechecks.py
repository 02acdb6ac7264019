"""The claim checks again what can change while a dispatch waits in Kafka
(proto/sql/021_claim.sql): the do-not-call list and the calling windows.

The dialer is stopped so that dispatches wait (as behind a dialer's backlog or
a rebalance); the change is made; the dialer is started and claims them.
Before the fix the number on the DNC list was dialed, and so was the call
whose window had closed. The scheduler's re-dispatch of unclaimed calls is
kept far away (OUTDIAL_SCHED_REDISPATCH_S) so that only the claim can catch it.
"""

from __future__ import annotations

import time
from datetime import datetime

from harness import wait_until
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final

SYSTEM_ENV = {"OUTDIAL_SCHED_REDISPATCH_S": "600"}
NY = "+12125550100"  # America/New_York; ends in 0: the sim completes it
DAILY_9_21 = '[{"days":"mon-sun","from":"09:00","to":"21:00"}]'


def _dispatched(system, ids: list[str]) -> bool:
    in_list = ",".join(f"'{i}'" for i in ids)
    return int(system.scalar(f"select count(*) from calls where id in ({in_list}) and status = 'queued' "
                             "and dispatched_at is not null")) == len(ids)


def test_number_put_on_dnc_while_its_dispatch_waited_was_dialed(system):
    p = system.new_project(pacing=600, scopes=("outbound:trigger", "sessions:read", "dnc:manage"), **NO_LIMITS)
    system.dialer.stop()
    try:
        blocked, other = phone(0), phone(0)
        ids = [assert_accepted(p.api.create_call(n))["id"] for n in (blocked, other)]
        wait_until(lambda: _dispatched(system, ids), 20, 0.1, what="both calls dispatched")
        r = p.api.post("/v1/dnc", json={"phones": [blocked]})
        assert r.status_code in (200, 201), r.text
    finally:
        system.dialer.start()
    finals = wait_all_final(system, ids, timeout=30)
    assert finals[ids[0]]["final_state"] == "dnc_blocked", finals[ids[0]]
    assert finals[ids[1]]["final_state"] == "completed", finals[ids[1]]
    assert system.dial_count(ids[0]) == 0, "a number on the DNC list was dialed"
    assert system.dial_count(ids[1]) == 1
    call = p.api.get(f"/v1/calls/{ids[0]}").json()
    assert call["status"] == "canceled"
    assert any("do-not-call" in (e.get("detail") or "") for e in call["events"]), call["events"]


def test_window_that_closed_while_the_dispatch_waited_was_dialed(system):
    p = system.new_project(pacing=600, **NO_LIMITS)
    system.ctl("project", "set", p.id, "--calling-windows", DAILY_9_21, json_out=False)
    # the scheduler dispatches at 20:59:40 in New York; the dialer claims at 21:00:30 there
    day = datetime.now().date().isoformat()
    sched = round(datetime.fromisoformat(f"{day}T20:59:40-05:00").timestamp() - time.time())
    system.scheduler.env["OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S"] = str(sched)
    system.dialer.env["OUTDIAL_DIALER_TEST_CLOCK_OFFSET_S"] = str(sched + 50)
    system.dialer.stop()
    system.scheduler.restart()
    try:
        cid = assert_accepted(p.api.create_call(NY))["id"]
        wait_until(lambda: _dispatched(system, [cid]), 20, 0.1, what="the call dispatched")
    finally:
        system.dialer.start()
    wait_until(lambda: int(system.scalar(f"select count(*) from calls where id = '{cid}' "
                                         "and dispatched_at is null and window_held_until is not null")) == 1,
               20, 0.1, what="the claim to hand the call back to the scheduler")
    call = p.admin.call(cid)
    assert call["status"] == "queued", call
    assert call["calling_window"]["held_until"] is not None, call
    held = datetime.fromisoformat(call["calling_window"]["held_until"].replace("Z", "+00:00"))
    assert 11.5 * 3600 < held.timestamp() - (time.time() + sched + 50) < 12.5 * 3600, call["calling_window"]
    time.sleep(2)
    assert system.dial_count(cid) == 0, "a call outside its calling window was dialed"
    # back to the real clock for the next tests
    system.scheduler.env["OUTDIAL_SCHED_TEST_CLOCK_OFFSET_S"] = "0"
    system.dialer.env["OUTDIAL_DIALER_TEST_CLOCK_OFFSET_S"] = "0"
    system.scheduler.restart()
    system.dialer.restart()
