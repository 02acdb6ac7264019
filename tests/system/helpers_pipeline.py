"""Helpers shared by the pipeline system tests (test_calls, test_idempotency,
test_limits, test_validation, test_schedule, test_faults).

Only black-box means: the HTTP API, outdialctl, psql on the module's database
and the sim provider's dial log. Everything that waits has a timeout.
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Iterable

import requests

from harness import wait_until

SCENARIO = "appointment_reminder"

# The sim provider's table (DESIGN §4): last digit -> what the call must end as.
#   digit: (status, final_state, outcome, goal_completed, billed)
SIM = {
    0: ("completed", "completed", "success", True, True),
    1: ("completed", "completed", "success", False, True),
    2: ("completed", "completed", "middle", False, True),
    3: ("completed", "completed", "spam", False, True),
    4: ("failed", "no_answer", None, None, False),
    5: ("failed", "busy", None, None, False),
    6: ("failed", "voicemail_detected", None, None, False),
    7: ("failed", "invalid_number", None, None, False),
    8: ("failed", "caller_id_unauthorized", None, None, False),
    9: ("failed", "provider_error", None, None, False),
}

FINAL_STATUSES = ("completed", "failed", "canceled")
STATUS_RANK = {"queued": 0, "dialing": 1, "connected": 2, "completed": 3, "failed": 3, "canceled": 3}

DEFAULT_PRICE_PER_MIN = 100_000

# limits high enough that a test's own traffic (and polling) is never throttled
NO_LIMITS = dict(calls_per_min=100_000, requests_per_hour=1_000_000)


# --------------------------------------------------------------------- values


def phone(digit: int) -> str:
    """A distinct, possible Spanish number (+34 and 9 digits) ending in `digit`."""
    return f"+346{random.randint(0, 9_999_999):07d}{digit}"


def digit_of(e164: str) -> int:
    return int(e164[-1])


def rfc3339(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def in_seconds(s: float) -> str:
    return rfc3339(datetime.now(timezone.utc) + timedelta(seconds=s))


def parse_ts(s: str | None) -> datetime | None:
    if s is None:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def idem_key() -> str:
    return f"test-{uuid.uuid4()}"


# --------------------------------------------------------------- assertions


def assert_problem(r: requests.Response, status: int, code: str | Iterable[str] | None = None) -> dict:
    """r is an RFC 9457 problem with this HTTP status and (one of) these codes."""
    codes = None if code is None else ({code} if isinstance(code, str) else set(code))
    assert r.status_code == status, (
        f"expected {status} {codes}, got {r.status_code}: {r.text[:600]}")
    ctype = r.headers.get("content-type", "")
    assert ctype.split(";")[0].strip().lower() == "application/problem+json", (
        f"{status} answer is {ctype!r}, not application/problem+json: {r.text[:300]}")
    p = r.json()
    assert isinstance(p, dict), p
    for k in ("type", "title", "status", "detail", "code"):
        assert k in p, f"problem lacks {k!r}: {p}"
    assert p["status"] == status, p
    if codes is not None:
        assert p["code"] in codes, f"code {p['code']!r}, expected one of {sorted(codes)}: {p}"
    if "errors" in p and p["errors"] is not None:
        assert isinstance(p["errors"], list), p
        for e in p["errors"]:
            assert {"field", "code", "message"} <= set(e), p
    return p


def assert_accepted(r: requests.Response) -> dict:
    assert r.status_code == 202, f"expected 202, got {r.status_code}: {r.text[:600]}"
    assert r.headers.get("content-type", "").startswith("application/json"), r.headers
    c = r.json()
    uuid.UUID(c["id"])
    assert c["status"] == "queued", c
    assert c["final_state"] is None, c
    loc = r.headers.get("location", "")
    assert loc.endswith(f"/v1/calls/{c['id']}"), f"Location {loc!r} for call {c['id']}"
    return c


def assert_events_in_order(call: dict) -> list[str]:
    """The call's event history moves forward only, in time order, starts with
    one `queued` and ends with exactly one final event matching the call's
    status. Returns the statuses with consecutive repeats collapsed."""
    evs = call.get("events")
    assert isinstance(evs, list) and evs, f"no events: {call}"
    statuses = [e["status"] for e in evs]
    assert statuses[0] == "queued", statuses
    assert statuses.count("queued") == 1, statuses
    ranks = [STATUS_RANK.get(s, -1) for s in statuses]
    assert -1 not in ranks, f"unknown event status in {statuses}"
    assert ranks == sorted(ranks), f"events go backwards: {statuses}"
    finals = [s for s in statuses if s in FINAL_STATUSES]
    assert finals == [call["status"]], f"final events {finals} for a {call['status']} call: {statuses}"
    assert statuses[-1] == call["status"], statuses
    times = [parse_ts(e["at"]) for e in evs]
    assert times == sorted(times), f"event times not in order: {[e['at'] for e in evs]}"
    collapsed = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    return collapsed


def expected_cost(call: dict, price_per_min: int = DEFAULT_PRICE_PER_MIN) -> int:
    billed = call.get("billed_s")
    if billed is None:
        billed = -(-int(round(call["duration_s"] * 1000)) // 1000)  # ceil of seconds
    return -(-billed * price_per_min // 60)


# ------------------------------------------------------------------ database


def _in_list(ids: Iterable[str]) -> str:
    ids = [str(uuid.UUID(str(i))) for i in ids]
    return ",".join(f"'{i}'" for i in ids) or "NULL"


def db_calls(system, ids: Iterable[str] = (), projects: Iterable[str] | None = None) -> dict[str, dict]:
    """id -> {status, final_state, outcome, goal_completed, phone} straight from
    PostgreSQL: the calls `ids`, or every call of `projects` (for thousands of
    calls: a list of ids that long does not fit in psql's command line)."""
    where = f"id in ({_in_list(ids)})" if projects is None else f"project_id in ({_in_list(projects)})"
    rows = system.rows(
        "select id, status, coalesce(final_state,''), coalesce(outcome,''), "
        f"coalesce(goal_completed::text,''), phone, cost_micros from calls where {where}")
    out = {}
    for r in rows:
        out[r[0]] = dict(status=r[1], final_state=r[2] or None, outcome=r[3] or None,
                         goal_completed=None if r[4] == "" else r[4] == "true",
                         phone=r[5], cost_micros=int(r[6]))
    return out


def project_call_ids(system, project_id: str) -> list[str]:
    return [r[0] for r in system.rows(f"select id from calls where project_id = '{project_id}' order by id")]


def wait_all_final(system, ids: Iterable[str], timeout: float = 60) -> dict[str, dict]:
    """Poll PostgreSQL until every call in ids has a final state; returns db_calls."""
    ids = list(ids)
    last: dict[str, dict] = {}

    def done():
        nonlocal last
        last = db_calls(system, ids)
        return len(last) == len(set(ids)) and all(c["final_state"] for c in last.values())

    try:
        wait_until(done, timeout, 0.25, what=f"{len(ids)} calls to reach a final state")
    except TimeoutError as e:
        pending = {i: (c["status"] if i in last else "MISSING") for i, c in
                   ((i, last.get(i)) for i in ids) if c is None or not c["final_state"]}
        raise TimeoutError(f"{e}; not final: {dict(list(pending.items())[:20])} "
                           f"({len(pending)} of {len(ids)})") from None
    return last


def wait_status(system, call_id: str, statuses: Iterable[str], timeout: float = 20) -> str:
    statuses = set(statuses)

    def get():
        s = system.scalar(f"select status from calls where id = '{call_id}'")
        return s if s in statuses else None

    return wait_until(get, timeout, 0.05, what=f"call {call_id} to be {sorted(statuses)}")


def dial_counts(system) -> collections.Counter:
    return collections.Counter(d[1] for d in system.dials())


def assert_never_dialed_twice(system, ids: Iterable[str] | None = None) -> collections.Counter:
    counts = dial_counts(system)
    scope = counts if ids is None else {i: counts.get(i, 0) for i in ids}
    twice = {i: n for i, n in scope.items() if n > 1}
    assert not twice, f"calls dialed more than once (sim dial log): {twice}"
    return counts


def assert_sim_results(system, calls: dict[str, dict], allow_internal_error: bool = False) -> None:
    """Every call ended as the sim's digit table says (internal_error optionally
    tolerated, e.g. after a database restart)."""
    bad = {}
    for cid, c in calls.items():
        st, fs, oc, goal, _ = SIM[digit_of(c["phone"])]
        if allow_internal_error and c["final_state"] == "internal_error":
            continue
        if (c["status"], c["final_state"], c["outcome"], c["goal_completed"]) != (st, fs, oc, goal):
            bad[cid] = (c["phone"], c["status"], c["final_state"], c["outcome"], c["goal_completed"])
    assert not bad, f"calls that did not end as the sim table says: {dict(list(bad.items())[:10])}"


# ------------------------------------------------------------------- client


class Poster:
    """Background client posting calls to POST /v1/calls until stop().

    Each request has its own Idempotency-Key; on a 503 or a connection error it
    is retried with the same key (as a well-behaved client does) up to
    `retries` times. `answers` records (status or exception name, call id) of
    every attempt; `accepted` maps idempotency key -> call id of 2xx answers.
    """

    def __init__(self, base_url: str, key: str, threads: int = 3, interval: float = 0.1,
                 digits: Iterable[int] = range(10), retries: int = 3, metadata: dict | None = None,
                 timeout: float = 20):
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.nthreads = threads
        self.interval = interval
        self.digits = list(digits)
        self.retries = retries
        self.metadata = metadata
        self.timeout = timeout
        self.stop_ev = threading.Event()
        self.lock = threading.Lock()
        self.answers: list[tuple[object, str | None]] = []
        self.accepted: dict[str, str] = {}
        self.conflicts: list[str] = []  # idempotency keys whose 2xx answers disagree
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> "Poster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        for i in range(self.nthreads):
            t = threading.Thread(target=self._loop, name=f"poster-{i}", daemon=True)
            t.start()
            self.threads.append(t)

    def stop(self, timeout: float = 60) -> None:
        self.stop_ev.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"poster threads did not stop: {alive}"

    def _one(self, s: requests.Session, key: str, body: bytes) -> None:
        for attempt in range(self.retries + 1):
            try:
                r = s.post(self.base_url + "/v1/calls", data=body, timeout=self.timeout,
                           headers={"Idempotency-Key": key, "Content-Type": "application/json"})
                status: object = r.status_code
                cid = None
                if 200 <= r.status_code < 300:
                    cid = r.json().get("id")
            except requests.RequestException as e:
                status, cid = type(e).__name__, None
            with self.lock:
                self.answers.append((status, cid))
                if cid is not None:
                    prev = self.accepted.setdefault(key, cid)
                    if prev != cid:
                        self.conflicts.append(key)
            if status == 503 or isinstance(status, str):
                time.sleep(0.3)
                continue
            return

    def _loop(self) -> None:
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {self.key}"
        while not self.stop_ev.is_set():
            body = {"scenario": SCENARIO, "phone": phone(random.choice(self.digits))}
            if self.metadata:
                body["metadata"] = self.metadata
            self._one(s, idem_key(), json.dumps(body).encode())
            self.stop_ev.wait(self.interval)

    # -- results
    def statuses(self) -> collections.Counter:
        return collections.Counter(a[0] for a in self.answers)

    def accepted_ids(self) -> list[str]:
        return sorted(set(self.accepted.values()))

    def assert_only(self, allowed=(202, 503), allow_conn_errors: bool = False) -> None:
        bad = {k: n for k, n in self.statuses().items()
               if k not in allowed and not (allow_conn_errors and isinstance(k, str))}
        assert not bad, f"unexpected answers while posting: {bad} (all: {dict(self.statuses())})"
        assert not self.conflicts, f"one Idempotency-Key got two different calls: {self.conflicts[:5]}"
