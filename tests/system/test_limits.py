"""Rate limits, wallet, DNC, scopes, revocation and cross-project access."""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from harness import wait_until
from helpers_pipeline import (NO_LIMITS, SCENARIO, assert_accepted, assert_problem, in_seconds, phone,
                              project_call_ids, wait_all_final)


def _ratelimit(r: requests.Response) -> tuple[dict, dict]:
    """Parse RateLimit-Policy and RateLimit headers ("name";q=..;w=.. / "name";r=..;t=..)."""
    def parse(v):
        assert v, f"header missing in {dict(r.headers)}"
        m = re.match(r'^\s*"([^"]+)"\s*((?:;\s*[a-z]+=\d+\s*)+)$', v)
        assert m, f"malformed RateLimit header {v!r}"
        params = dict(kv.split("=") for kv in re.findall(r"[a-z]+=\d+", m.group(2)))
        return {"name": m.group(1), **{k: int(x) for k, x in params.items()}}
    return parse(r.headers.get("ratelimit-policy")), parse(r.headers.get("ratelimit"))


# ---------------------------------------------------------------- rate limits


def test_61st_call_in_a_minute_is_429(system):
    p = system.new_project(requests_per_hour=100_000)  # calls per minute: the default 60
    far = in_seconds(86400)  # the dialers stay idle
    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=8) as ex:
        first = list(ex.map(lambda i: system.api(p.key).create_call(phone(i % 10), scheduled_for=far),
                            range(60)))
    assert [r.status_code for r in first].count(202) == 60, sorted(r.status_code for r in first)
    pol, rl = _ratelimit(first[0])
    assert pol["q"] == 60 and pol["w"] == 60, pol
    # GCRA refills one call a second: a few more may fit if sending took time
    extra = 0
    while True:
        r = p.api.create_call(phone(0), scheduled_for=far)
        if r.status_code != 202:
            break
        extra += 1
        assert extra <= 10, "no 429 after 70 calls"
    elapsed = time.monotonic() - t0
    assert extra <= elapsed + 1, f"{60 + extra} calls accepted in {elapsed:.1f} s"
    assert_problem(r, 429, "rate_limited")
    ra = r.headers.get("retry-after")
    assert ra is not None and ra.isdigit() and 1 <= int(ra) <= 60, f"Retry-After {ra!r}"
    pol, rl = _ratelimit(r)
    assert pol["q"] == 60 and pol["w"] == 60 and rl["r"] == 0, (pol, rl)
    assert len(project_call_ids(system, p.id)) == 60 + extra
    # Retry-After is honest: after it, a call is accepted again
    time.sleep(int(ra) + 0.2)
    assert_accepted(p.api.create_call(phone(0), scheduled_for=far))
    # the limit is the project's, whatever key draws on it: minting keys multiplied it (issue 18)
    assert_problem(p.admin.create_call(phone(0), scheduled_for=far), 429, "rate_limited")
    assert_problem(system.api(p.admin.post("/v1/api-keys", json={"name": "more", "scopes": ["outbound:trigger"]})
                              .json()["key"]).create_call(phone(0), scheduled_for=far), 429, "rate_limited")
    # another project is not throttled
    q = system.new_project(requests_per_hour=100_000)
    assert_accepted(q.api.create_call(phone(0), scheduled_for=far))


def test_ratelimit_headers_on_success(system):
    p = system.new_project(requests_per_hour=100_000)
    far = in_seconds(86400)
    r1 = p.api.create_call(phone(0), scheduled_for=far)
    r2 = p.api.create_call(phone(0), scheduled_for=far)
    assert_accepted(r1), assert_accepted(r2)
    (_, a), (_, b) = _ratelimit(r1), _ratelimit(r2)
    assert b["r"] < a["r"] <= 60, (a, b)


def test_requests_per_hour(system):
    p = system.new_project(requests_per_hour=5)
    for i in range(5):
        r = p.api.get("/v1/project")
        assert r.status_code == 200, f"request {i}: {r.status_code} {r.text}"
    r = p.api.get("/v1/project")
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) > 60
    pol, _ = _ratelimit(r)
    assert pol["q"] == 5 and pol["w"] == 3600, pol
    # POST /v1/calls counts too
    assert_problem(p.api.create_call(phone(0)), 429, "rate_limited")


# ------------------------------------------------------------------- wallet


def test_empty_wallet_is_402(system):
    p = system.new_project(wallet=0, **NO_LIMITS)
    assert_problem(p.api.create_call(phone(0)), 402, "insufficient_funds")
    assert project_call_ids(system, p.id) == []
    system.ctl("project", "set", p.id, "--wallet", "1000000", json_out=False)
    assert_accepted(p.api.create_call(phone(0)))


def test_empty_wallet_holds_dispatch(system):
    """A project whose wallet runs dry has its calls held, not failed (DESIGN §3)."""
    p = system.new_project(**NO_LIMITS)
    c = assert_accepted(p.api.create_call(phone(0), scheduled_for=in_seconds(2)))
    system.ctl("project", "set", p.id, "--wallet", "0", json_out=False)
    time.sleep(4)
    assert system.scalar(f"select status from calls where id = '{c['id']}'") == "queued"
    assert system.dial_count(c["id"]) == 0
    system.ctl("project", "set", p.id, "--wallet", "1000000", json_out=False)
    calls = wait_all_final(system, [c["id"]], timeout=30)
    assert calls[c["id"]]["final_state"] == "completed"


# ---------------------------------------------------------------------- DNC


def test_dnc_number_is_422(system):
    p = system.new_project(**NO_LIMITS)
    ph = phone(0)
    system.psql(f"insert into dnc (project_id, phone) values ('{p.id}', '{ph}')")
    p2 = assert_problem(p.api.create_call(ph), 422, "phone_on_dnc_list")
    assert any(e["field"] == "phone" for e in p2.get("errors") or []), p2
    assert project_call_ids(system, p.id) == []
    # only this project's list counts
    other = system.new_project(**NO_LIMITS)
    assert_accepted(other.api.create_call(ph))


def test_dnc_rechecked_at_dispatch(system):
    p = system.new_project(**NO_LIMITS)
    ph = phone(0)
    c = assert_accepted(p.api.create_call(ph, scheduled_for=in_seconds(2)))
    system.psql(f"insert into dnc (project_id, phone) values ('{p.id}', '{ph}')")
    calls = wait_all_final(system, [c["id"]], timeout=20)
    assert (calls[c["id"]]["status"], calls[c["id"]]["final_state"]) == ("canceled", "dnc_blocked")
    assert calls[c["id"]]["cost_micros"] == 0
    time.sleep(0.5)
    assert system.dial_count(c["id"]) == 0


# ------------------------------------------------------------------- scopes


def test_missing_or_bad_key_is_401(system):
    p = system.new_project(**NO_LIMITS)
    anon = system.api()
    for path in ("/v1/calls", "/v1/project", f"/v1/calls/{uuid.uuid4()}"):
        r = anon.get(path)
        assert_problem(r, 401, "unauthorized")
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
    assert_problem(anon.post("/v1/calls", json={"scenario": SCENARIO, "phone": phone(0)}), 401, "unauthorized")
    assert_problem(system.api("not-a-key").get("/v1/project"), 401, "unauthorized")
    assert_problem(system.api(p.key + "x").get("/v1/project"), 401, "unauthorized")
    r = anon.get("/v1/project", headers={"Authorization": f"Basic {p.key}"})
    assert_problem(r, 401, "unauthorized")
    r = anon.get("/v1/project", headers={"Authorization": "Bearer "})
    assert_problem(r, 401, "unauthorized")


def test_scopes_403(system):
    p = system.new_project(**NO_LIMITS)
    read = system.api(system.ctl("key", "create", p.id, "--scopes", "sessions:read")["key"])
    trig = system.api(system.ctl("key", "create", p.id, "--scopes", "outbound:trigger")["key"])
    other = system.api(system.ctl("key", "create", p.id, "--scopes", "webhooks:manage,dnc:manage")["key"])

    c = assert_accepted(trig.create_call(phone(0)))
    assert_problem(read.create_call(phone(0)), 403, "insufficient_scope")
    assert_problem(other.create_call(phone(0)), 403, "insufficient_scope")
    assert_problem(trig.get(f"/v1/calls/{c['id']}"), 403, "insufficient_scope")
    assert_problem(trig.get("/v1/calls"), 403, "insufficient_scope")
    assert read.get(f"/v1/calls/{c['id']}").status_code == 200
    assert_problem(read.post(f"/v1/calls/{c['id']}/cancel"), 403, "insufficient_scope")
    for k in (read, trig, other, p.api):
        assert_problem(k.get("/v1/api-keys"), 403, "insufficient_scope")
        assert_problem(k.post("/v1/api-keys", json={"name": "x", "scopes": ["admin"]}), 403, "insufficient_scope")
    # admin implies every scope
    assert p.admin.get(f"/v1/calls/{c['id']}").status_code == 200
    assert_accepted(p.admin.create_call(phone(1)))
    assert p.admin.get("/v1/api-keys").status_code == 200


# -------------------------------------------------------------- revocation


def _wait_401(api, timeout: float = 5.0) -> float:
    t0 = time.monotonic()
    wait_until(lambda: api.get("/v1/project").status_code == 401, timeout + 0.5, 0.1,
               what="revoked key to be refused")
    took = time.monotonic() - t0
    assert took <= timeout, f"revocation took {took:.2f} s"
    for _ in range(5):  # and it stays refused
        assert_problem(api.get("/v1/project"), 401, "unauthorized")
        time.sleep(0.1)
    return took


def test_revoke_via_api_within_5s(system):
    p = system.new_project(**NO_LIMITS)
    r = p.admin.post("/v1/api-keys", json={"name": "temp", "scopes": ["sessions:read", "outbound:trigger"]})
    assert r.status_code == 201, r.text
    k = r.json()
    assert {"id", "name", "scopes", "key", "created_at"} <= set(k), k
    assert sorted(k["scopes"]) == ["outbound:trigger", "sessions:read"]
    api = system.api(k["key"])
    assert api.get("/v1/project").status_code == 200  # now cached by ingress
    assert_accepted(api.create_call(phone(0)))
    listed = [x["id"] for x in p.admin.get("/v1/api-keys").json()["data"]]
    assert k["id"] in listed and all("key" not in x for x in p.admin.get("/v1/api-keys").json()["data"])
    r = p.admin.delete(f"/v1/api-keys/{k['id']}")
    assert r.status_code == 204, r.text
    _wait_401(api)
    assert_problem(api.create_call(phone(0)), 401, "unauthorized")
    assert k["id"] not in [x["id"] for x in p.admin.get("/v1/api-keys").json()["data"]]
    assert_problem(p.admin.delete(f"/v1/api-keys/{k['id']}"), 404, "not_found")


def test_revoke_via_cli_within_5s(system):
    p = system.new_project(**NO_LIMITS)
    assert p.api.get("/v1/project").status_code == 200
    system.ctl("key", "revoke", p.key_id, json_out=False)
    _wait_401(p.api)


# ----------------------------------------------------------- cross-project


def test_other_projects_objects_are_404(system):
    a = system.new_project(**NO_LIMITS)
    b = system.new_project(**NO_LIMITS)
    ca = assert_accepted(a.api.create_call(phone(0), scheduled_for=in_seconds(3600)))
    assert_problem(b.api.get(f"/v1/calls/{ca['id']}"), 404, "not_found")
    assert_problem(b.admin.get(f"/v1/calls/{ca['id']}"), 404, "not_found")
    assert_problem(b.api.post(f"/v1/calls/{ca['id']}/cancel"), 404, "not_found")
    assert ca["id"] not in [c["id"] for c in b.admin.get("/v1/calls").json()["data"]]
    assert_problem(b.admin.delete(f"/v1/api-keys/{a.key_id}"), 404, "not_found")
    # a's call and key are untouched
    assert a.api.call(ca["id"])["status"] == "queued"
    assert a.api.get("/v1/project").status_code == 200
    # unknown ids are 404 the same way
    assert_problem(a.api.get(f"/v1/calls/{uuid.uuid4()}"), 404, "not_found")
    assert_problem(a.api.get("/v1/calls/not-a-uuid"), 404, "not_found")
    # b's view of the project is b's
    assert b.api.get("/v1/project").json()["id"] == b.id
