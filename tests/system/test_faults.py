"""Faults (guarantees 1 and 2): whatever crashes, every accepted call reaches a
final state and no call is dialed twice (by the sim's dial log)."""

from __future__ import annotations

import time

import pytest

from harness import wait_until
from helpers_pipeline import (NO_LIMITS, Poster, assert_accepted, assert_events_in_order,
                              assert_never_dialed_twice, assert_sim_results, phone, project_call_ids,
                              wait_all_final, wait_status)

FINAL_TIMEOUT = 120  # after a fault: Kafka rebalances, reconnects, sweeps


@pytest.fixture(autouse=True)
def all_services_up(system):
    """Each test starts and ends with the four services running."""
    def ensure():
        for svc in system.services.values():
            if not svc.running():
                svc.start(timeout=30)
    ensure()
    yield
    ensure()


def _settle(system, project, posted_ids=(), timeout=FINAL_TIMEOUT, allow_internal_error=False):
    """Every call of the project (2xx or not: a call stored just before a fault
    counts too) ends final, as the sim says, dialed at most once."""
    ids = project_call_ids(system, project.id)
    missing = set(posted_ids) - set(ids)
    assert not missing, f"answered 2xx but not stored: {sorted(missing)[:5]}"
    calls = wait_all_final(system, ids, timeout=timeout)
    time.sleep(1.0)  # a late second dial would be in the log by now
    counts = assert_never_dialed_twice(system, ids)
    assert_sim_results(system, calls, allow_internal_error=allow_internal_error)
    never = [i for i, c in calls.items() if counts.get(i, 0) == 0 and c["final_state"] != "internal_error"]
    assert not never, f"calls that ended as the sim says without being dialed: {never[:5]}"
    return calls


def test_kill9_dialer_with_calls_in_flight(system):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    long_ids = [assert_accepted(p.api.create_call(phone(0), metadata={"sim_talk_ms": 120000}))["id"]
                for _ in range(3)]
    for i in long_ids:
        wait_status(system, i, ("connected",), timeout=30)
        assert system.dial_count(i) == 1
    # calls queued behind them (dispatched or not) when the dialer dies
    queued = [assert_accepted(p.api.create_call(phone(d)))["id"] for d in range(10)]
    system.dialer.kill9()
    t_kill = time.monotonic()
    system.dialer.start(timeout=30)

    calls = wait_all_final(system, long_ids, timeout=30)
    took = time.monotonic() - t_kill
    for i in long_ids:
        c = p.api.call(i)
        assert (c["status"], c["final_state"]) == ("failed", "internal_error"), c
        assert c["cost_micros"] == 0, c
        assert_events_in_order(c)
    assert took <= 15, f"in-flight calls of a dead dialer took {took:.1f} s to end (lease 3 s)"
    # the restarted dialer takes the rest; the in-flight ones are never dialed again
    _settle(system, p, queued, allow_internal_error=True)
    for i in long_ids:
        assert system.dial_count(i) == 1, f"call {i} dialed again after the dialer restart"
    # and it works normally afterwards
    c = assert_accepted(p.api.create_call(phone(0)))
    assert wait_all_final(system, [c["id"]], timeout=60)[c["id"]]["final_state"] == "completed"


def test_kill9_scheduler_mid_stream(system):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    with Poster(system.url, p.key, threads=2, interval=0.05) as poster:
        time.sleep(2)
        system.scheduler.kill9()
        time.sleep(0.5)
        system.scheduler.start(timeout=30)
        time.sleep(2)
    poster.assert_only((202,))
    assert len(poster.accepted_ids()) >= 20, poster.statuses()
    _settle(system, p, poster.accepted_ids())


def test_kill9_outcome_and_restart(system):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    before = [assert_accepted(p.api.create_call(phone(d)))["id"] for d in range(10)]
    system.outcome.kill9()
    with Poster(system.url, p.key, threads=2, interval=0.1) as poster:
        time.sleep(3)  # calls are dialed and end while nobody records their events
    time.sleep(1)
    system.outcome.start(timeout=30)
    poster.assert_only((202,))
    calls = _settle(system, p, before + poster.accepted_ids())
    for cid in before:
        assert_events_in_order(p.api.call(cid))
    assert not [i for i, c in calls.items() if c["final_state"] == "internal_error"]


def test_outcome_restarts_on_a_backlog(system):
    """Thousands of events waiting when the outcome service starts: its first
    fetch fills whole batches in one loop turn. The batch flushed by the 500th
    event must not be sent again by the flush timer the first event started
    (it was: two answers for one batch, offsets committed on the wrong one,
    and with assertions on, an abort)."""
    p = system.new_project(pacing=100_000, **NO_LIMITS)
    system.outcome.kill9()
    ids = [assert_accepted(p.api.create_call(phone(d % 10)))["id"] for d in range(600)]
    pending = set(ids)

    def ended_at_dialer():  # its log's "ended:" line of each call
        pending.difference_update(x.get("call_id") for x in system.dialer.log_lines()
                                  if str(x.get("msg", "")).startswith("ended:"))
        return not pending
    wait_until(ended_at_dialer, 120, 0.5, what="600 calls to end at the dialer")
    system.outcome.start(timeout=30)
    calls = wait_all_final(system, ids, timeout=120)
    assert system.outcome.running(), f"the outcome service died on the backlog:\n{system.outcome.log_tail(20)}"
    assert_sim_results(system, calls)
    assert_never_dialed_twice(system, ids)
    for cid in ids[:20]:
        assert_events_in_order(p.api.call(cid))


def test_kafka_down_10s_while_posting(system, infra):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    with Poster(system.url, p.key, threads=4, interval=0.1) as poster:
        time.sleep(1.5)
        infra.kafka_stop()
        try:
            time.sleep(10)
        finally:
            infra.kafka_start()
        time.sleep(3)
    poster.assert_only((202, 503))
    n_ok = poster.statuses()[202]
    assert n_ok >= 10, poster.statuses()
    print(f"answers with Kafka down 10 s: {dict(poster.statuses())}")
    _settle(system, p, poster.accepted_ids(), timeout=180)
    # the services are ready again
    for svc in system.services.values():
        wait_until(lambda: svc.get("/readyz").status_code == 200, 60, 0.5, what=f"{svc.name} ready")


def test_postgres_restart_mid_stream(system, infra):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    with Poster(system.url, p.key, threads=3, interval=0.1) as poster:
        time.sleep(2)
        infra.pg_restart()
        time.sleep(4)
    poster.assert_only((202, 503))
    assert poster.statuses()[202] >= 10, poster.statuses()
    print(f"answers around a PostgreSQL restart: {dict(poster.statuses())}")
    _settle(system, p, poster.accepted_ids(), allow_internal_error=True)
    # every service is ready again and a new call goes through
    for svc in system.services.values():
        wait_until(lambda: svc.get("/readyz").status_code == 200, 30, 0.5, what=f"{svc.name} ready")
    c = assert_accepted(p.api.create_call(phone(0)))
    assert wait_all_final(system, [c["id"]], timeout=30)[c["id"]]["final_state"] == "completed"


@pytest.mark.parametrize("name", ["ingress", "scheduler", "dialer", "outcome"])
def test_sigterm_under_load_drains(system, name):
    p = system.new_project(pacing=3000, **NO_LIMITS)
    # calls in every stage: some in flight for a while when the signal comes
    slow = [assert_accepted(p.api.create_call(phone(0), metadata={"sim_talk_ms": 3000}))["id"]
            for _ in range(3)]
    with Poster(system.url, p.key, threads=2, interval=0.05) as poster:
        time.sleep(1.0)
        for i in slow:  # in the middle of their conversation when the signal comes
            wait_status(system, i, ("connected",), timeout=20)
        svc = system.services[name]
        t0 = time.monotonic()
        rc = svc.term(timeout=30)
        drain_s = time.monotonic() - t0
        assert rc == 0, f"{name} exited {rc} after SIGTERM (drain {drain_s:.1f} s)\n{svc.log_tail(20)}"
        svc.start(timeout=30)
        time.sleep(1.5)
    # while ingress is down the client sees refused connections: not accepted, retried
    poster.assert_only((202, 503), allow_conn_errors=(name == "ingress"))
    calls = _settle(system, p, slow + poster.accepted_ids())
    assert not [i for i, c in calls.items() if c["final_state"] == "internal_error"], \
        f"a drained {name} left calls to the reaper"
    print(f"{name}: drained in {drain_s:.2f} s; answers {dict(poster.statuses())}")


def test_health_endpoints_after_faults(system):
    for svc in system.services.values():
        assert svc.get("/healthz").status_code == 200
        assert svc.get("/readyz").status_code == 200
        r = svc.get("/metrics")
        assert r.status_code == 200 and r.text.strip(), f"{svc.name} /metrics empty"
    assert_never_dialed_twice(system)
