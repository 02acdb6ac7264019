"""A dialer that can no longer prove it holds a call's lease neither dials it
nor keeps it (issue 18, finding 3; proto/sql/021_claim.sql,
services/dialer/lease.c).

PostgreSQL is stopped past the lease while one call is up at the carrier and
three wait in the trunk's queue (one INVITE per 5 s, lease 4 s). Before the
fix the queued calls were dialed while PostgreSQL was away, after their
leases had run out, and the reaper failed them (internal_error) when it came
back: the customer retries those, and the person is called twice. Now: the
call that is up is hung up (BYE) when its lease deadline passes, the queued
ones are never sent, and every one ends internal_error. sipp's message log
counts the INVITEs.
"""

from __future__ import annotations

import time

import helpers_sipp as sipp
from harness import free_port, wait_until
from helpers_pipeline import NO_LIMITS, assert_accepted, phone, wait_all_final

TRUNK_PORT = free_port()
DIALER_SIP_PORT = free_port()
LEASE_S = 4
CALLS = 4

SYSTEM_ENV = sipp.dialer_env(TRUNK_PORT, DIALER_SIP_PORT, OUTDIAL_SIP_CPS="0.2", OUTDIAL_SIP_MAX_TALK_S="120",
                             OUTDIAL_DIALER_LEASE_S=str(LEASE_S), OUTDIAL_REAPER_INTERVAL_MS="200")


def test_postgresql_away_past_the_lease_no_dial_after_the_reap(system, infra, tmp_path):
    carrier = sipp.Carrier(tmp_path, "answer_we_bye", port=TRUNK_PORT, calls=CALLS)
    try:
        p = system.new_project(pacing=600, **NO_LIMITS)
        ids = [assert_accepted(p.api.create_call(phone(0)))["id"] for _ in range(CALLS)]
        in_list = ",".join(f"'{i}'" for i in ids)
        # every call claimed (its lease taken), the first one up at the carrier, the others queued at the trunk
        wait_until(lambda: int(system.scalar(f"select count(*) from calls where id in ({in_list}) "
                                             "and status in ('dialing', 'connected')")) == CALLS,
                   20, 0.05, what="all calls claimed")
        wait_until(lambda: int(system.scalar(f"select count(*) from calls where id in ({in_list}) "
                                             "and status = 'connected'")) >= 1, 30, 0.05, what="the first call up")
        infra.pg_stop()
        # one INVITE out by now (a second if the machine was slow to get here: it is up too)
        sent = carrier.messages().count("INVITE sip:")
        assert 1 <= sent < CALLS, carrier.errors()
        stopped = time.monotonic()
        try:
            # past every queued call's turn at the trunk (5 s, 10 s, 15 s) and its lease (4 s)
            time.sleep(3 * 5 + 1)
            assert "BYE sip:" in carrier.messages(), "the call that was up was not hung up:\n" + carrier.errors()
        finally:
            infra.pg_start()
        assert time.monotonic() - stopped > LEASE_S
        finals = wait_all_final(system, ids, timeout=60)
        invites = carrier.messages().count("INVITE sip:")
        assert invites == sent, f"{invites - sent} INVITEs after PostgreSQL stopped: calls were dialed after " \
                                f"their leases ran out\n" + carrier.errors()
        for i in ids:
            assert finals[i]["final_state"] == "internal_error", finals[i]
        lost = [ln for ln in system.services["dialer"].log_lines() if "lease lost" in str(ln.get("msg", ""))]
        assert {ln.get("call_id") for ln in lost} == set(ids), lost  # each one hung up by the dialer itself
    finally:
        carrier.stop()
