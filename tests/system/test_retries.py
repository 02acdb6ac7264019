"""Retries (issue 7, README "Retries", docs/batches.md "Retries"): a call that
ends no_answer or busy is called again as a new call (attempt, retry_of),
delay_s after it ended, up to max_attempts in all, per the project's or the
batch's policy; each attempt goes through pacing, the DNC list, the wallet
and a paused or canceled batch like any queued call.

The sim ends a call by the phone's last digit (4 no_answer, 5 busy, 0
completed), so a retried call to the same number ends the same way; an
attempt that ends otherwise is made here by a DNC add between attempts.
"""

from __future__ import annotations

import time
import uuid

from harness import wait_until
from helpers_batches import (RESULT_COLUMNS, assert_counts_add_up, assert_created, get_batch, results_csv, upload,
                             wait_batch)
from helpers_pipeline import (NO_LIMITS, assert_accepted, assert_problem, in_seconds, parse_ts, phone,
                              wait_all_final)
from helpers_webhooks import Receiver

SYSTEM_ENV = {"OUTDIAL_WEBHOOK_ALLOW_PRIVATE": "1", "OUTDIAL_WEBHOOK_POLL_MS": "100"}

EPS_S = 0.05  # clocks: ended_at is the dialer's, dialed_at PostgreSQL's, on one machine


# ---------------------------------------------------------------- helpers


def set_policy(system, pid: str, on: str | None = None, max_attempts: int | None = None,
               delay_s: int | None = None) -> None:
    args = ["project", "set", pid]
    if on is not None:
        args += ["--retry-on", on]
    if max_attempts is not None:
        args += ["--retry-max-attempts", str(max_attempts)]
    if delay_s is not None:
        args += ["--retry-delay-s", str(delay_s)]
    system.ctl(*args, json_out=False)


CHAIN_COLS = ("id", "attempt", "retry_of", "status", "final_state", "phone", "scenario", "metadata", "caller_id",
              "api_key_id", "batch_id", "due", "scheduled_for", "dispatched", "dialed", "ended", "project_id")


def chain(system, first: str) -> list[dict]:
    """Every attempt of the call `first` (itself included), by attempt, from PostgreSQL."""
    first = str(uuid.UUID(first))
    rows = system.rows(
        "select id, attempt, coalesce(retry_of::text, ''), status, coalesce(final_state, ''), phone, scenario, "
        "metadata::text, coalesce(caller_id, ''), coalesce(api_key_id::text, ''), coalesce(batch_id::text, ''), "
        "extract(epoch from due_at), coalesce(extract(epoch from scheduled_for)::text, ''), "
        "coalesce(extract(epoch from dispatched_at)::text, ''), coalesce(extract(epoch from dialed_at)::text, ''), "
        "coalesce(extract(epoch from ended_at)::text, ''), project_id "
        f"from calls where id = '{first}' or retry_of = '{first}' order by attempt")
    out = []
    for r in rows:
        d = dict(zip(CHAIN_COLS, r))
        d["attempt"] = int(d["attempt"])
        for k in ("due", "scheduled_for", "dispatched", "dialed", "ended"):
            d[k] = float(d[k]) if d[k] else None
        out.append(d)
    return out


def wait_chain(system, first: str, attempts: int, timeout: float = 60) -> list[dict]:
    """Waits until the call has `attempts` attempts, the last one final."""
    last: list[dict] = []

    def done():
        nonlocal last
        last = chain(system, first)
        return len(last) >= attempts and last[attempts - 1]["final_state"]

    try:
        wait_until(done, timeout, 0.2, what=f"{attempts} attempts of {first}")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; seen: {[(c['attempt'], c['status'], c['final_state']) for c in last]}") from None
    return last


def final_event(call: dict) -> dict:
    return [e for e in call["events"] if e["status"] in ("completed", "failed", "canceled")][-1]


def assert_linked(ch: list[dict]) -> None:
    """attempt 1..n, retry_of the first's id, everything else the first's."""
    first = ch[0]
    assert [c["attempt"] for c in ch] == list(range(1, len(ch) + 1)), ch
    assert first["retry_of"] == "", first
    for c in ch[1:]:
        assert c["retry_of"] == first["id"], (c, first["id"])
        for k in ("phone", "scenario", "metadata", "caller_id", "api_key_id", "batch_id", "project_id"):
            assert c[k] == first[k], (k, c[k], first[k])
    ids = [c["id"] for c in ch]
    assert ids == sorted(ids), f"attempt ids (UUIDv7) not in creation order: {ids}"


# ---------------------------------------------------------------- UUIDv7 in SQL


def test_uuid7_made_in_sql(system):
    """od_uuid7(): version 7, variant 10, the time in the first 48 bits, in
    time order; and after an id made in C (od_uuid7 of the ingress)."""
    p = system.new_project(**NO_LIMITS)
    c_made = assert_accepted(p.api.create_call(phone(0), scheduled_for=in_seconds(3600)))["id"]
    time.sleep(0.01)
    rows = system.rows("select od_uuid7()::text, floor(extract(epoch from clock_timestamp()) * 1000)::bigint, "
                       "pg_sleep(0.002) from generate_series(1, 50)")
    ids = [r[0] for r in rows]
    assert len(set(ids)) == 50
    for u, ms in ((r[0], int(r[1])) for r in rows):
        v = uuid.UUID(u)
        assert v.version == 7, u
        assert v.variant == uuid.RFC_4122, u
        assert u[14] == "7" and u[19] in "89ab", u
        t = int(u.replace("-", "")[:12], 16)
        assert 0 <= ms - t <= 5, (u, t, ms)  # made just before the clock was read again
    assert ids == sorted(ids), "ids made 2 ms apart are not in time order"
    assert c_made < ids[0], (c_made, ids[0])
    # many in one millisecond: still distinct (74 random bits)
    many = system.rows("select od_uuid7()::text from generate_series(1, 2000)")
    assert len({r[0] for r in many}) == 2000
    p.api.post(f"/v1/calls/{c_made}/cancel")


# ---------------------------------------------------------------- the policy


def test_project_policy_default_and_outdialctl(system):
    p = system.new_project(**NO_LIMITS)
    proj = p.api.get("/v1/project").json()
    assert proj["retry"] == {"on": ["no_answer", "busy"], "max_attempts": 1, "delay_s": 1800}, proj
    set_policy(system, p.id, on="busy", max_attempts=3, delay_s=60)
    assert p.api.get("/v1/project").json()["retry"] == {"on": ["busy"], "max_attempts": 3, "delay_s": 60}
    set_policy(system, p.id, max_attempts=2)  # the others stay
    assert p.api.get("/v1/project").json()["retry"] == {"on": ["busy"], "max_attempts": 2, "delay_s": 60}
    set_policy(system, p.id, on="")
    assert p.api.get("/v1/project").json()["retry"]["on"] == []
    # bad values: refused by outdialctl, nothing changed
    for args in (["--retry-on", "completed"], ["--retry-on", "no_answer,"], ["--retry-max-attempts", "0"],
                 ["--retry-max-attempts", "11"], ["--retry-delay-s", "0"], ["--retry-delay-s", "604801"],
                 ["--retry-delay-s", "1e3"]):
        cp = system.ctl("project", "set", p.id, *args, json_out=False, check=False)
        assert cp.returncode == 2, (args, cp.returncode, cp.stderr)
        assert f"outdialctl: {args[0]}:" in cp.stderr, cp.stderr  # the option named as typed
    assert p.api.get("/v1/project").json()["retry"] == {"on": [], "max_attempts": 2, "delay_s": 60}
    # the audit log names the operator's change
    acts = p.admin.get("/v1/audit-log", params={"action": "project.updated"}).json()["data"]
    assert any("retry_max_attempts" in a["changes"] for a in acts), acts


def test_bad_batch_policy_is_422_naming_the_field(system):
    p = system.new_project(**NO_LIMITS)
    body = "phone\n" + phone(4) + "\n"
    cases = [
        ({"retry_on": "voicemail_detected"}, "invalid_retry_on", "retry_on"),
        ({"retry_on": "no_answer,,busy"}, "invalid_retry_on", "retry_on"),
        ({"retry_on": "completed"}, "invalid_retry_on", "retry_on"),
        ({"retry_max_attempts": "0"}, "invalid_retry_max_attempts", "retry_max_attempts"),
        ({"retry_max_attempts": "11"}, "invalid_retry_max_attempts", "retry_max_attempts"),
        ({"retry_max_attempts": "two"}, "invalid_retry_max_attempts", "retry_max_attempts"),
        ({"retry_max_attempts": ""}, "invalid_retry_max_attempts", "retry_max_attempts"),
        ({"retry_delay_s": "0"}, "invalid_retry_delay_s", "retry_delay_s"),
        ({"retry_delay_s": "604801"}, "invalid_retry_delay_s", "retry_delay_s"),
        ({"retry_delay_s": "-1"}, "invalid_retry_delay_s", "retry_delay_s"),
        ({"retry_delay_s": "9" * 40}, "invalid_retry_delay_s", "retry_delay_s"),
    ]
    for fields, code, field in cases:
        for multipart in (False, True):
            if multipart:
                r = p.api.post("/v1/batches", data={"scenario": "appointment_reminder", **fields},
                               files={"file": ("c.csv", body.encode(), "text/csv")})
            else:
                r = p.api.post("/v1/batches", params={"scenario": "appointment_reminder", **fields},
                               data=body.encode(), headers={"Content-Type": "text/csv"})
            prob = assert_problem(r, 422, code)
            assert [e["field"] for e in prob["errors"]] == [field], prob
    # a field sent twice in the form is a malformed form, as the other settings
    r = p.api.post("/v1/batches", files=[("scenario", (None, "appointment_reminder")), ("retry_on", (None, "busy")),
                                         ("retry_on", (None, "no_answer")), ("file", ("c.csv", body, "text/csv"))])
    assert_problem(r, 400, "invalid_multipart")
    assert p.api.get("/v1/batches").json()["data"] == []


# ---------------------------------------------------------------- single calls


def test_no_answer_retried_up_to_max_after_the_delay_and_paced(system):
    """Three no_answer calls, three attempts each, 2 s apart at least, in a
    project paced at 20/min (3 s): the retries wait behind the project's other
    calls, no two dispatches are closer than the pacing, and the third attempt
    is the last."""
    p = system.new_project(pacing=20, **NO_LIMITS)
    set_policy(system, p.id, on="no_answer", max_attempts=3, delay_s=2)
    firsts = []
    for i in range(3):
        c = assert_accepted(p.api.create_call(phone(4), metadata={"n": i}))
        assert (c["attempt"], c["retry_of"]) == (1, None), c
        firsts.append(c["id"])
    others = [assert_accepted(p.api.create_call(phone(0)))["id"] for _ in range(2)]
    chains = {f: wait_chain(system, f, 3, timeout=90) for f in firsts}
    wait_all_final(system, others, timeout=30)
    time.sleep(3)  # the delay again: no fourth attempt comes
    for f in firsts:
        ch = chain(system, f)
        assert len(ch) == 3, f"attempts of {f}: {[(c['attempt'], c['final_state']) for c in ch]}"
        assert_linked(ch)
        assert all(c["final_state"] == "no_answer" for c in ch), ch
        for prev, nxt in zip(ch, ch[1:]):
            assert abs(nxt["due"] - (prev["ended"] + 2)) < 0.002, (prev, nxt)
            assert nxt["scheduled_for"] == nxt["due"], nxt
            assert nxt["dialed"] - prev["ended"] >= 2 - EPS_S, (
                f"attempt {nxt['attempt']} dialed {nxt['dialed'] - prev['ended']:.3f} s after the last ended")
        for c in ch:
            assert system.dial_count(c["id"]) == 1, c
        chains[f] = ch
    for o in others:
        assert len(chain(system, o)) == 1, "a completed call was retried"
    # pacing holds over first calls and retries together: dispatches >= 3 s apart
    rows = system.rows(f"select extract(epoch from dispatched_at) from calls where project_id = '{p.id}' "
                       "and dispatched_at is not null order by dispatched_at")
    times = [float(r[0]) for r in rows]
    assert len(times) == 11, times
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert min(gaps) >= 3 - 0.1, f"dispatches closer than the pacing (3 s): {gaps}"
    # some retries came due while the first calls still waited for the pacing: they queued
    held = [c["dispatched"] - c["due"] for ch in chains.values() for c in ch[1:]]
    assert max(held) > 1.0, f"no retry waited behind other calls: {held}"
    # the API: each attempt its own call, linked to the first; the ended attempt's event names the next
    f = firsts[0]
    ch = chains[f]
    for i, c in enumerate(ch):
        got = p.api.call(c["id"])
        assert got["attempt"] == i + 1 and got["retry_of"] == (None if i == 0 else f), got
        detail = final_event(got)["detail"]
        if i < 2:
            nxt = ch[i + 1]
            assert f"; retry {i + 2} of 3 at " in detail and f"as call {nxt['id']}" in detail, detail
            assert p.api.call(nxt["id"])["scheduled_for"] in detail, detail
        else:
            assert "retry" not in detail, detail
    listed = p.api.get("/v1/calls", params={"phone": ch[0]["phone"]}).json()["data"]
    assert sorted((c["attempt"], c["retry_of"]) for c in listed) == [(1, None), (2, f), (3, f)], listed


def test_busy_is_retried_only_when_the_policy_says(system):
    p = system.new_project(**NO_LIMITS)
    set_policy(system, p.id, on="no_answer", max_attempts=2, delay_s=1)
    busy = assert_accepted(p.api.create_call(phone(5)))["id"]
    na = assert_accepted(p.api.create_call(phone(4)))["id"]
    wait_chain(system, na, 2, timeout=30)
    wait_all_final(system, [busy])
    time.sleep(2)
    assert len(chain(system, busy)) == 1, "busy retried by a no_answer policy"

    set_policy(system, p.id, on="busy")
    busy = assert_accepted(p.api.create_call(phone(5)))["id"]
    na = assert_accepted(p.api.create_call(phone(4)))["id"]
    ch = wait_chain(system, busy, 2, timeout=30)
    assert_linked(ch)
    assert [c["final_state"] for c in ch] == ["busy", "busy"], ch
    wait_all_final(system, [na])
    time.sleep(2)
    assert len(chain(system, na)) == 1, "no_answer retried by a busy policy"
    assert len(chain(system, busy)) == 2, "more attempts than max_attempts"


def test_other_final_states_are_never_retried(system):
    p = system.new_project(**NO_LIMITS)
    set_policy(system, p.id, on="no_answer,busy", max_attempts=5, delay_s=1)
    ids = {d: assert_accepted(p.api.create_call(phone(d)))["id"] for d in (0, 1, 2, 3, 6, 7, 8, 9)}
    wait_all_final(system, ids.values(), timeout=30)
    time.sleep(2.5)
    retried = system.rows(f"select retry_of from calls where project_id = '{p.id}' and retry_of is not null")
    assert retried == [], f"calls retried that must not be: {retried}"
    for d, cid in ids.items():
        assert "retry" not in final_event(p.api.call(cid))["detail"], d


def test_dnc_added_before_a_retry_ends_it_dnc_blocked(system):
    p = system.new_project(**NO_LIMITS)
    set_policy(system, p.id, on="no_answer", max_attempts=3, delay_s=3)
    first = assert_accepted(p.api.create_call(phone(4)))["id"]
    ch = wait_chain(system, first, 1)
    r = p.admin.post("/v1/dnc", json={"phones": [ch[0]["phone"]]})
    assert r.status_code == 200, r.text
    ch = wait_chain(system, first, 2, timeout=30)
    assert ch[1]["status"] == "canceled" and ch[1]["final_state"] == "dnc_blocked", ch[1]
    assert ch[1]["dialed"] is None and system.dial_count(ch[1]["id"]) == 0
    time.sleep(4)
    assert len(chain(system, first)) == 2, "an attempt after dnc_blocked"


def test_a_canceled_call_is_not_retried(system):
    p = system.new_project(**NO_LIMITS)
    set_policy(system, p.id, on="no_answer", max_attempts=3, delay_s=4)
    # a first call canceled while queued
    later = assert_accepted(p.api.create_call(phone(4), scheduled_for=in_seconds(30)))["id"]
    r = p.api.post(f"/v1/calls/{later}/cancel")
    assert r.status_code == 200 and r.json()["final_state"] == "canceled", r.text
    # a pending retry canceled: the chain ends there
    first = assert_accepted(p.api.create_call(phone(4)))["id"]
    ch = wait_chain(system, first, 1)
    ch = wait_until(lambda: len(chain(system, first)) == 2 and chain(system, first), 10, 0.1, what="the retry")
    assert ch[1]["status"] == "queued", ch[1]
    r = p.api.post(f"/v1/calls/{ch[1]['id']}/cancel")
    assert r.status_code == 200, r.text
    assert (r.json()["attempt"], r.json()["retry_of"], r.json()["final_state"]) == (2, first, "canceled")
    time.sleep(6)
    assert len(chain(system, first)) == 2 and system.dial_count(ch[1]["id"]) == 0
    assert len(chain(system, later)) == 1 and system.dial_count(later) == 0


def test_an_empty_wallet_holds_a_retry(system):
    p = system.new_project(**NO_LIMITS)
    set_policy(system, p.id, on="busy", max_attempts=2, delay_s=3)
    first = assert_accepted(p.api.create_call(phone(5)))["id"]
    wait_chain(system, first, 1, timeout=20)
    system.ctl("project", "set", p.id, "--wallet", "0", json_out=False)
    time.sleep(5)
    ch = chain(system, first)
    assert len(ch) == 2 and ch[1]["status"] == "queued" and ch[1]["dispatched"] is None, ch
    system.ctl("project", "topup", p.id, "1000000", json_out=False)
    ch = wait_chain(system, first, 2, timeout=20)
    assert ch[1]["final_state"] == "busy" and ch[1]["dialed"] - ch[1]["due"] > 1, ch[1]


def test_each_attempt_sends_its_webhooks(system):
    p = system.new_project(**NO_LIMITS)
    set_policy(system, p.id, on="no_answer", max_attempts=2, delay_s=1)
    with Receiver() as rx:
        r = p.admin.post("/v1/webhooks", json={"url": rx.url("/h"), "event_types": ["call.queued", "call.failed"]})
        assert r.status_code == 201, r.text
        first = assert_accepted(p.api.create_call(phone(4)))["id"]
        ch = wait_chain(system, first, 2, timeout=30)

        def got(hits):
            seen = {(h.json()["data"]["id"], h.type) for h in hits}
            return all((c["id"], t) in seen for c in ch for t in ("call.queued", "call.failed"))

        rx.wait_for(got, "/h", timeout=30, what="call.queued and call.failed of both attempts")
        hits = rx.hits("/h")
    for h in hits:
        d = h.json()["data"]
        if d["id"] == ch[1]["id"]:
            assert (d["attempt"], d["retry_of"]) == (2, first), d
        elif d["id"] == first:
            assert (d["attempt"], d["retry_of"]) == (1, None), d


# ---------------------------------------------------------------- batches


def test_batch_with_its_own_policy(system):
    """A batch's retries: counts and results.csv show each row once, by its
    latest attempt, with the number of attempts; the batch completes only
    after its last attempt."""
    p = system.new_project(scopes=("outbound:trigger", "sessions:read", "dnc:manage"), **NO_LIMITS)
    set_policy(system, p.id, on="busy", max_attempts=1, delay_s=1800)  # the project's: no retry
    na, busy, done, invalid, blocked = phone(4), phone(5), phone(0), phone(7), phone(5)
    rows = [["phone", "name"], [na, "a"], [busy, "b"], ["12", "bad"], [done, "d"], [invalid, "e"], [blocked, "f"]]
    body = "".join(",".join(r) + "\r\n" for r in rows)
    r = upload(p.api, body, multipart=True, pacing=600)
    r2 = p.api.post("/v1/batches", data={"scenario": "appointment_reminder", "pacing_per_min": "600",
                                          "retry_on": "no_answer, busy", "retry_max_attempts": "3",
                                          "retry_delay_s": "2"},
                    files={"file": ("c.csv", body.encode(), "text/csv")})
    plain = assert_created(r)
    assert plain["retry"] is None, plain
    b = assert_created(r2, p.api)
    assert b["retry"] == {"on": ["no_answer", "busy"], "max_attempts": 3, "delay_s": 2}, b
    assert b["accepted_rows"] == 5 and b["rejected_rows"] == 1, b
    bid = b["id"]
    firsts = dict(system.rows(f"select phone, id from calls where batch_id = '{bid}' and attempt = 1"))
    # the sixth row's second attempt meets the DNC list: that row ends dnc_blocked
    wait_chain(system, firsts[blocked], 1, timeout=20)
    r = p.api.post("/v1/dnc", json={"phones": [blocked]})
    assert r.status_code == 200, r.text
    # while a retry is pending the batch is not done
    wait_chain(system, firsts[na], 2, timeout=30)
    mid = get_batch(p.api, bid)
    assert mid["finished_at"] is None and mid["status"] == "running", mid
    final = wait_batch(p.api, bid, timeout=60)
    assert final["status"] == "completed", final
    assert_counts_add_up(final)
    chains = {ph: chain(system, cid) for ph, cid in firsts.items()}
    assert [len(chains[x]) for x in (na, busy, done, invalid, blocked)] == [3, 3, 1, 1, 2], chains
    for ch in chains.values():
        assert_linked(ch)
        assert all(c["final_state"] for c in ch), ch
    last_end = max(c["ended"] for ch in chains.values() for c in ch)
    assert parse_ts(final["finished_at"]).timestamp() >= last_end - EPS_S, (final["finished_at"], last_end)
    assert final["counts"] == {"queued": 0, "dialing": 0, "connected": 0, "completed": 1, "failed": 3,
                               "canceled": 1}, final
    assert {k: v for k, v in final["final_states"].items() if v} == {
        "completed": 1, "no_answer": 1, "busy": 1, "invalid_number": 1, "dnc_blocked": 1}, final
    # results.csv: the latest attempt's call and state, and the number of attempts
    raw, recs = results_csv(p.api, bid)
    assert recs[0] == ["phone", "name"] + RESULT_COLUMNS and "attempts" in RESULT_COLUMNS, recs[0]
    res = {rec[0]: dict(zip(RESULT_COLUMNS, rec[2:])) for rec in recs[1:]}
    want = {na: ("no_answer", "3"), busy: ("busy", "3"), done: ("completed", "1"), invalid: ("invalid_number", "1"),
            blocked: ("dnc_blocked", "2")}
    for ph, (fs, n) in want.items():
        row = res[ph]
        assert (row["final_state"], row["attempts"]) == (fs, n), (ph, row)
        assert row["call_id"] == chains[ph][-1]["id"], (ph, row, chains[ph])
    assert (res["12"]["attempts"], res["12"]["call_id"], res["12"]["error"]) == ("", "", "invalid_phone"), res["12"]
    # the batch's calls: every attempt, each in the batch
    listed = p.api.get("/v1/calls", params={"batch_id": bid, "limit": 100}).json()["data"]
    assert len(listed) == 10 and all(c["batch_id"] == bid for c in listed), listed
    wait_batch(p.api, plain["id"], timeout=30)
    assert system.scalar(f"select count(*) from calls where batch_id = '{plain['id']}' and attempt > 1") == "0"


def test_batch_follows_the_project_policy_unless_it_has_its_own(system):
    p = system.new_project(**NO_LIMITS)
    set_policy(system, p.id, on="no_answer", max_attempts=2, delay_s=1)
    body = "phone\r\n" + phone(4) + "\r\n"
    inherit = assert_created(upload(p.api, body, pacing=600))
    off = assert_created(p.api.post("/v1/batches", params={"scenario": "appointment_reminder",
                                                           "pacing_per_min": "600", "retry_max_attempts": "1"},
                                    data=("phone\r\n" + phone(4) + "\r\n").encode(),
                                    headers={"Content-Type": "text/csv"}), p.api)
    assert inherit["retry"] is None
    # the fields not given are the project's at upload
    assert off["retry"] == {"on": ["no_answer"], "max_attempts": 1, "delay_s": 1}, off
    a = wait_batch(p.api, inherit["id"], timeout=30)
    o = wait_batch(p.api, off["id"], timeout=30)
    _, recs = results_csv(p.api, inherit["id"])
    attempts = recs[0].index("attempts")
    assert recs[1][attempts] == "2" and a["final_states"]["no_answer"] == 1, (recs, a)
    _, recs = results_csv(p.api, off["id"])
    assert recs[1][attempts] == "1" and o["final_states"]["no_answer"] == 1, (recs, o)


def test_paused_batch_retry_waits_and_canceled_batch_is_not_retried(system):
    p = system.new_project(**NO_LIMITS)
    fields = {"scenario": "appointment_reminder", "pacing_per_min": "600", "retry_on": "no_answer",
              "retry_max_attempts": "3", "retry_delay_s": "2"}

    def make():
        r = p.api.post("/v1/batches", params=fields, data=("phone\r\n" + phone(4) + "\r\n").encode(),
                       headers={"Content-Type": "text/csv"})
        b = assert_created(r, p.api)
        first = system.scalar(f"select id from calls where batch_id = '{b['id']}'")
        wait_chain(system, first, 1, timeout=20)
        return b["id"], first

    bid, first = make()
    assert p.api.post(f"/v1/batches/{bid}/pause").json()["status"] == "paused"
    time.sleep(4)
    ch = chain(system, first)
    assert len(ch) == 2 and ch[1]["status"] == "queued" and ch[1]["dialed"] is None, ch
    assert p.api.post(f"/v1/batches/{bid}/resume").json()["status"] == "running"
    wait_chain(system, first, 3, timeout=30)
    b = wait_batch(p.api, bid, timeout=30)
    assert b["status"] == "completed" and b["final_states"]["no_answer"] == 1, b

    bid, first = make()
    time.sleep(0.5)
    c = p.api.post(f"/v1/batches/{bid}/cancel").json()
    assert c["status"] == "canceled", c
    time.sleep(3)
    ch = chain(system, first)
    assert len(ch) == 2 and ch[1]["final_state"] == "canceled" and ch[1]["dialed"] is None, ch
    b = get_batch(p.api, bid)
    assert b["counts"]["canceled"] == 1 and b["counts"]["failed"] == 0 and b["finished_at"] is not None, b
