"""GET /v1/events (docs/events.md): every call event of the project, live,
exactly once per stream, resumable with Last-Event-ID."""

from __future__ import annotations

import json
import threading
import time

import requests

from harness import wait_until
from helpers_pipeline import NO_LIMITS, assert_accepted, assert_problem, phone


class Stream:
    """An SSE client on a thread: collects (id, event, data) until closed."""

    def __init__(self, url: str, key: str, last_event_id: str | None = None):
        headers = {"Authorization": f"Bearer {key}", "Accept": "text/event-stream"}
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        self.resp = requests.get(f"{url}/v1/events", headers=headers, stream=True, timeout=(5, 60))
        self.events: list[tuple[str, str, dict]] = []
        self.comments: list[str] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        if self.resp.status_code == 200:
            self.thread.start()

    def _read(self):
        ev: dict = {}
        try:
            for raw in self.resp.iter_lines(decode_unicode=True):
                if raw == "":
                    if "data" in ev:
                        self.events.append((ev.get("id", ""), ev.get("event", ""), json.loads(ev["data"])))
                    ev = {}
                elif raw.startswith(":"):
                    self.comments.append(raw)
                else:
                    k, _, v = raw.partition(":")
                    ev[k] = v[1:] if v.startswith(" ") else v
        except Exception:
            pass
        self.ended.set()

    def close(self):
        self.resp.close()
        self.ended.wait(5)

    def triples(self) -> list[tuple[str, str, str]]:
        return [(i, d["call_id"], d["status"]) for i, _, d in self.events]


def _db_events(system, project_id: str) -> list[tuple[str, str, str]]:
    """(event id as the stream names it, call id, status) of the project's call events, in stream order."""
    rows = system.rows("select e.xid::text || '-' || e.id, e.call_id, e.status from call_events e "
                       f"join calls c on c.id = e.call_id where c.project_id = '{project_id}' order by e.xid, e.id")
    return [(r[0], r[1], r[2]) for r in rows]


def _place(p, n: int) -> list[str]:
    return [assert_accepted(p.api.create_call(phone(i % 10)))["id"] for i in range(n)]


def test_three_streams_get_every_event_once(system):
    p = system.new_project(pacing=60000, **NO_LIMITS)
    other = system.new_project(pacing=60000, **NO_LIMITS)
    streams = [Stream(system.url, p.key) for _ in range(3)]
    for s in streams:
        assert s.resp.status_code == 200, s.resp.text
        assert s.resp.headers["content-type"].startswith("text/event-stream"), s.resp.headers
    wait_until(lambda: all(s.comments for s in streams), 10, 0.05, what="streams open")
    ids = _place(p, 1000)
    _place(other, 20)  # another project's calls never show
    for i in ids:
        p.wait_final(i, timeout=120)
    want = _db_events(system, p.id)
    assert len(want) >= 2 * len(ids), "every call has at least its dialing and final events"
    for s in streams:
        wait_until(lambda s=s: len(s.events) >= len(want), 30, 0.1,
                   what=f"{len(want)} events on a stream (has {len(s.events)})")
    time.sleep(1)  # nothing more, no duplicate, comes
    for k, s in enumerate(streams):
        got = s.triples()
        # exactly the database's events, each once, in order
        assert got == want, f"stream {k}: {len(got)} events ({len(set(got))} distinct), {len(want)} in the database"
        assert {c for _, c, _ in got} == set(ids), f"stream {k} shows calls of another project"
        assert all(name == f"call.{d['status']}" for _, name, d in s.events)
        final = [d for _, _, d in s.events if d["status"] in ("completed", "failed", "canceled")]
        assert all(d["final_state"] for d in final) and all(d["phone"].startswith("+") for d in final)
        s.close()


def test_resume_with_last_event_id(system):
    p = system.new_project(pacing=60000, **NO_LIMITS)
    s = Stream(system.url, p.key)
    wait_until(lambda: s.comments, 10, 0.05, what="stream open")
    first = _place(p, 20)
    for i in first:
        p.wait_final(i, timeout=60)
    wait_until(lambda: len(s.events) >= len(_db_events(system, p.id)), 30, 0.1, what="first events")
    s.close()
    last = s.events[-1][0]
    # missed while disconnected
    second = _place(p, 20)
    for i in second:
        p.wait_final(i, timeout=60)
    r = Stream(system.url, p.key, last_event_id=last)
    want = _db_events(system, p.id)
    wait_until(lambda: len(s.events) + len(r.events) >= len(want), 30, 0.1, what="resumed events")
    time.sleep(1)
    got = s.triples() + r.triples()
    assert got == want, f"{len(s.events)} + {len(r.events)} events, {len(want)} in the database"
    assert {c for _, c, _ in r.triples()} == set(second), "the resumed stream starts after Last-Event-ID"
    r.close()


def test_bad_requests(system):
    p = system.new_project(pacing=600, **NO_LIMITS)
    r = requests.get(f"{system.url}/v1/events",
                     headers={"Authorization": f"Bearer {p.key}", "Last-Event-ID": "nope"}, timeout=10)
    assert_problem(r, 400, "invalid_parameter")
    trig = system.ctl("key", "create", p.id, "--scopes", "outbound:trigger")["key"]
    r = requests.get(f"{system.url}/v1/events", headers={"Authorization": f"Bearer {trig}"}, timeout=10)
    assert_problem(r, 403, "insufficient_scope")
    r = requests.get(f"{system.url}/v1/events", timeout=10)
    assert_problem(r, 401, "unauthorized")


def test_drain_ends_streams(system):
    p = system.new_project(pacing=600, **NO_LIMITS)
    s = Stream(system.url, p.key)
    wait_until(lambda: s.comments, 10, 0.05, what="stream open")
    ingress = system.services["ingress"]
    t0 = time.monotonic()
    rc = ingress.term(timeout=30)
    assert rc == 0, ingress.log_tail(20)
    assert time.monotonic() - t0 < 10, "an open stream held the drain"
    assert s.ended.wait(5), "the stream was not ended"
    ingress.start(timeout=30)
