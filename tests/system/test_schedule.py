"""Due times and pacing (DESIGN §3): a call is dispatched within about a
second of scheduled_for, never before; a project's pacing spaces its dials."""

from __future__ import annotations

from datetime import datetime, timezone

from harness import wait_until
from helpers_pipeline import (NO_LIMITS, assert_accepted, in_seconds, parse_ts, phone, wait_all_final)

EARLY_S = 0.1   # clock granularity: dialed_at is ms, taken in PostgreSQL
LATE_S = 1.5


def _dialed(system, ids) -> dict[str, datetime]:
    rows = system.rows("select id, extract(epoch from dialed_at) from calls "
                       f"where id in ({','.join(repr(i) for i in ids)})")
    return {r[0]: datetime.fromtimestamp(float(r[1]), timezone.utc) for r in rows if r[1]}


def test_scheduled_for_is_honoured(system):
    p = system.new_project(**NO_LIMITS)
    offsets = [3, 5, 7]
    calls = []
    for off in offsets:
        when = in_seconds(off)
        c = assert_accepted(p.api.create_call(phone(5), scheduled_for=when))
        assert parse_ts(c["scheduled_for"]) == parse_ts(when), (c["scheduled_for"], when)
        calls.append((c["id"], parse_ts(when)))
    # one in the recent past (allowed up to 60 s): due at once
    now = datetime.now(timezone.utc)
    past = assert_accepted(p.api.create_call(phone(5), scheduled_for=in_seconds(-30)))
    ids = [c[0] for c in calls] + [past["id"]]
    wait_all_final(system, ids, timeout=30)
    dialed = _dialed(system, ids)
    for cid, due in calls + [(past["id"], now)]:
        delta = (dialed[cid] - due).total_seconds()
        assert -EARLY_S <= delta <= LATE_S, f"call {cid} due {due} dialed {dialed[cid]} ({delta:+.3f} s)"
        assert system.dial_count(cid) == 1


def test_pacing_30_per_minute_spaces_dials_2s(system):
    p = system.new_project(pacing=30, **NO_LIMITS)
    ids = [assert_accepted(p.api.create_call(phone(7)))["id"] for _ in range(4)]
    wait_all_final(system, ids, timeout=40)
    times = sorted(_dialed(system, ids).values())
    assert len(times) == 4
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    assert all(g >= 1.9 for g in gaps), f"dials closer than 2 s at 30/min: {gaps}"
    assert all(g <= 3.0 for g in gaps), f"dials held back longer than pacing needs: {gaps}"


def test_pacing_is_per_project(system):
    """A slow project does not hold back another project's calls."""
    slow = system.new_project(pacing=1, **NO_LIMITS)
    fast = system.new_project(pacing=600, **NO_LIMITS)
    s_ids = [assert_accepted(slow.api.create_call(phone(7)))["id"] for _ in range(3)]
    f_ids = [assert_accepted(fast.api.create_call(phone(7)))["id"] for _ in range(5)]
    wait_all_final(system, f_ids + s_ids[:1], timeout=20)
    # pacing 1/min: the slow project's second call waits a minute
    assert system.scalar("select count(*) from calls where status = 'queued' and id in "
                         f"({','.join(repr(i) for i in s_ids)})") == "2"
    for i in s_ids[1:]:
        assert system.dial_count(i) == 0
    for i in s_ids[1:]:  # leave nothing due behind
        slow.api.post(f"/v1/calls/{i}/cancel")


def test_scheduled_call_survives_scheduler_restart(system):
    """Far-future calls live in PostgreSQL: a restarted scheduler still dials
    them on time."""
    p = system.new_project(**NO_LIMITS)
    when = in_seconds(8)
    c = assert_accepted(p.api.create_call(phone(5), scheduled_for=when))
    rc = system.scheduler.term()
    assert rc == 0, f"scheduler exit code {rc} after SIGTERM"
    system.scheduler.start()
    wait_all_final(system, [c["id"]], timeout=30)
    delta = (_dialed(system, [c["id"]])[c["id"]] - parse_ts(when)).total_seconds()
    assert -EARLY_S <= delta <= LATE_S, f"dialed {delta:+.3f} s from its due time after a restart"
    assert system.dial_count(c["id"]) == 1


def test_pacing_holds_at_the_dial_after_dispatches_waited(system):
    """Dispatches that waited in Kafka (here: the dialer down while the
    scheduler dispatched 10 calls at 60/min) are not dialed together when a
    dialer takes them: the claim keeps the project's rate too (1 s tolerance)."""
    p = system.new_project(pacing=60, **NO_LIMITS)
    system.dialer.kill9()
    try:
        ids = [assert_accepted(p.api.create_call(phone(7)))["id"] for _ in range(10)]
        dispatched = lambda: system.scalar(  # noqa: E731
            "select count(*) from calls where dispatched_at is not null and id in "
            f"({','.join(repr(i) for i in ids)})") == "10"
        wait_until(dispatched, 30, 0.2, what="10 calls dispatched at 60/min")
    finally:
        system.dialer.start(timeout=30)
    wait_all_final(system, ids, timeout=60)
    times = sorted(_dialed(system, ids).values())
    assert len(times) == 10
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:])]
    # the tolerance lets the second claim come at most 1 s early; after that, 1 s apart
    assert sum(g < 0.9 for g in gaps) <= 2, f"dials bunched after the dialer's restart: {gaps}"
    assert (times[-1] - times[0]).total_seconds() >= 7.5, f"10 dials in {times[-1] - times[0]} at 60/min"
    for i in ids:
        assert system.dial_count(i) == 1
