"""The project's controls (docs/control.md): the DNC list, caller IDs,
billing, the audit log, and who may call which endpoint.

Black box: the HTTP API, outdialctl and psql on the module's database.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from harness import Api
from helpers_pipeline import NO_LIMITS, SCENARIO, assert_accepted, assert_problem, in_seconds, phone


def _project(system, **kw):
    return system.new_project(pacing=600, scopes=("outbound:trigger", "sessions:read", "dnc:manage"),
                              **NO_LIMITS, **kw)


def _ok(r, status=200) -> dict:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:600]}"
    return r.json() if r.content else {}


def _dnc_add(api: Api, phones) -> dict:
    return _ok(api.post("/v1/dnc", json={"phones": phones}))


# ------------------------------------------------------------------------ DNC


def test_dnc_add_lookup_remove_and_enforcement(system):
    p = _project(system)
    a, b = phone(0), phone(0)
    spaced_b = f"{b[:3]} {b[3:6]}-{b[6:8]}.{b[8:]}"
    out = _dnc_add(p.api, [a, spaced_b, "nope", a])
    assert (out["added"], out["already_listed"], out["invalid_count"]) == (2, 0, 1), out
    assert out["invalid"] == [{"index": 2, "value": "nope", "code": "invalid_phone"}], out
    again = _dnc_add(p.api, [a, b])
    assert (again["added"], again["already_listed"]) == (0, 2), again

    got = _ok(p.api.get("/v1/dnc", params={"phone": spaced_b}))["data"]
    assert [(e["phone"], e["source"]) for e in got] == [(b, "api")], got
    assert _ok(p.api.get("/v1/dnc", params={"phone": phone(0)}))["data"] == []
    # a text that is no number is on no list: an empty page (issue 18: the document cannot say "possible")
    assert _ok(p.api.get("/v1/dnc", params={"phone": "12"}))["data"] == []

    # refused at ingress, rejected per row in a batch
    assert_problem(p.api.create_call(a), 422, "phone_on_dnc_list")
    # re-checked at dispatch: queued before the number was listed
    c = phone(0)
    call = assert_accepted(p.api.create_call(c, scheduled_for=in_seconds(3)))
    _dnc_add(p.api, [c])
    final = p.wait_final(call["id"], timeout=30)
    assert final["final_state"] == "dnc_blocked" and final["status"] == "canceled", final

    # removed: a call to it goes through again; removing twice is 404
    assert p.api.delete(f"/v1/dnc/{a.replace('+', '%2B')}").status_code == 204
    assert_problem(p.api.delete(f"/v1/dnc/{a.replace('+', '%2B')}"), 404, "not_found")
    assert_problem(p.api.delete("/v1/dnc/not-a-number"), 404, "not_found")
    assert p.api.delete(f"/v1/dnc/{b}").status_code == 204, "a raw + in the path works too"
    assert_accepted(p.api.create_call(a))


def test_dnc_bad_input(system):
    p = _project(system)
    for body in ({"phones": "x"}, {"phones": [1]}, {"numbers": []}, [phone(0)], {"phones": [], "x": 1}):
        assert_problem(p.api.post("/v1/dnc", json=body), 400, "invalid_json")
    assert_problem(p.api.post("/v1/dnc", data=b"{nope", headers={"Content-Type": "application/json"}),
                   400, "invalid_json")
    assert_problem(p.api.post("/v1/dnc", json={"phones": []}), 422, "no_numbers")
    assert_problem(p.api.post("/v1/dnc", data=b"phone\n", headers={"Content-Type": "text/csv"}), 422, "no_numbers")
    assert_problem(p.api.post("/v1/dnc", data=b"phone\n\"+3461", headers={"Content-Type": "text/csv"}),
                   422, "csv_unbalanced_quote")
    assert_problem(p.api.post("/v1/dnc", data=b"phone\n\xff\n", headers={"Content-Type": "text/csv"}),
                   422, "csv_not_utf8")
    assert_problem(p.api.post("/v1/dnc", data=b"x", headers={"Content-Type": "text/plain"}),
                   415, "unsupported_media_type")
    # a cell cut at 64 bytes never splits a UTF-8 character (the answer stays valid JSON)
    long_bad = "é" * 40
    out = _ok(p.api.post("/v1/dnc", data=f"phone\n{long_bad}\n{phone(0)}\n".encode(),
                         headers={"Content-Type": "text/csv"}))
    assert out["added"] == 1 and out["invalid"][0]["row"] == 1, out
    assert long_bad.startswith(out["invalid"][0]["value"]) and len(out["invalid"][0]["value"]) == 32, out
    for q in ({"limit": "0"}, {"limit": "x"}, {"cursor": "abc"}):
        assert_problem(p.api.get("/v1/dnc", params=q), 400, "invalid_parameter")


def test_dnc_csv_import_of_100000_numbers(system):
    p = _project(system)
    base = random.randint(0, 8_000_000)
    numbers = [f"+3461{base + i:07d}" for i in range(100_000)]
    body = ("Phone,name\r\n" + "".join(f"{n},x\r\n" for n in numbers) + "garbage,y\r\n").encode()
    t0 = time.monotonic()
    out = _ok(p.api.post("/v1/dnc", data=body, headers={"Content-Type": "text/csv"}, timeout=120))
    took = time.monotonic() - t0
    assert (out["added"], out["invalid_count"]) == (100_000, 1), out
    assert out["invalid"] == [{"row": 100_001, "value": "garbage", "code": "invalid_phone"}], out
    assert int(system.scalar(f"select count(*) from dnc where project_id = '{p.id}' and source = 'csv'")) == 100_000
    # the list pages in number order
    first = _ok(p.api.get("/v1/dnc", params={"limit": 200}))
    second = _ok(p.api.get("/v1/dnc", params={"limit": 200, "cursor": first["next_cursor"]}))
    got = [e["phone"] for e in first["data"] + second["data"]]
    assert got == sorted(numbers)[:400], got[:3]
    # a headerless file: one number per line
    extra = [phone(0), phone(0)]
    out = _ok(p.api.post("/v1/dnc", data="\n".join(extra).encode(), headers={"Content-Type": "text/csv"}))
    assert out["added"] == 2, out
    print(f"DNC import of 100,000 numbers: {took:.2f} s")


# ----------------------------------------------------------------- caller IDs


def test_caller_ids(system):
    p = _project(system)
    listed = _ok(p.admin.get("/v1/caller-ids"))["data"]
    assert [(c["phone"], c["default"], c["verified_by"]) for c in listed] == [(p.caller_id, True, "operator")], listed
    new = f"+1415556{random.randint(1000, 9999)}"
    r = p.admin.post("/v1/caller-ids", json={"phone": new})
    c = _ok(r, 201)
    admin_key_id = system.scalar(f"select id from api_keys where project_id = '{p.id}' and name = 'admin'")
    assert c["phone"] == new and c["default"] is False and c["verified_by"] == f"api_key:{admin_key_id}", c
    assert_problem(p.admin.post("/v1/caller-ids", json={"phone": new}), 409, "caller_id_exists")
    assert_problem(p.admin.post("/v1/caller-ids", json={"phone": "555"}), 422, "invalid_phone")
    assert_problem(p.admin.post("/v1/caller-ids", json={"phone": new, "x": 1}), 400, "invalid_json")
    assert_problem(p.admin.post("/v1/caller-ids", data=b"[", headers={"Content-Type": "application/json"}),
                   400, "invalid_json")
    # calls may use it now; an unlisted number is refused
    call = assert_accepted(p.api.create_call(phone(0), caller_id=new))
    assert call["caller_id"] == new, call
    assert_problem(p.api.create_call(phone(0), caller_id="+14155550000"), 422, "caller_id_not_verified")
    assert [x["phone"] for x in _ok(p.admin.get("/v1/caller-ids"))["data"]] == [p.caller_id, new]


# -------------------------------------------------------------------- billing


def test_billing_by_final_state(system):
    p = _project(system)
    ids = [assert_accepted(p.api.create_call(phone(d), metadata={"sim_talk_ms": "1500"}))["id"]
           for d in (0, 0, 1, 2, 3, 5)]
    calls = [p.wait_final(i, timeout=60) for i in ids]
    bill = _ok(p.api.get("/v1/billing"))
    fs = bill["final_states"]
    assert len(fs) == 10 and set(fs["completed"]) == {"calls", "billed_s", "cost_micros"}, fs
    for state in {c["final_state"] for c in calls}:
        mine = [c for c in calls if c["final_state"] == state]
        assert fs[state]["calls"] == len(mine), (state, fs[state])
        assert fs[state]["cost_micros"] == sum(c["cost_micros"] for c in mine), (state, fs[state], mine)
    total = sum(c["cost_micros"] for c in calls)
    assert bill["totals"]["calls"] == len(calls) and bill["totals"]["cost_micros"] == total, bill["totals"]
    assert total > 0, "completed calls cost something"
    assert bill["ledger"]["debits_micros"] == total, bill["ledger"]
    assert bill["wallet"]["balance_micros"] == _ok(p.api.get("/v1/project"))["wallet"]["balance_micros"]
    assert len(bill["ledger"]["entries"]) == bill["ledger"]["entries_total"] >= 1, bill["ledger"]

    # a top-up by the operator: in the ledger, the balance and the audit log
    before = bill["wallet"]["balance_micros"]
    system.ctl("project", "topup", p.id, "5000000", "--reason", "invoice 42", json_out=False)
    bill = _ok(p.api.get("/v1/billing"))
    assert bill["wallet"]["balance_micros"] == before + 5_000_000, bill["wallet"]
    assert bill["ledger"]["entries"][0]["amount_micros"] == 5_000_000, bill["ledger"]["entries"][0]
    assert bill["ledger"]["entries"][0]["reason"] == "invoice 42", bill["ledger"]["entries"][0]
    # the opening balance, then the top-up; the debits are the calls' costs
    assert bill["ledger"]["topups_micros"] == 1_000_000_000 + 5_000_000, bill["ledger"]
    assert bill["ledger"]["debits_micros"] == total, bill["ledger"]
    audit = _ok(p.admin.get("/v1/audit-log", params={"action": "project.updated"}))["data"]
    assert audit[0]["changes"]["wallet_micros"] == {"from": before, "to": before + 5_000_000}, audit[0]
    assert audit[0]["actor"]["type"] == "operator", audit[0]

    future = _ok(p.api.get("/v1/billing", params={"from": in_seconds(3600), "to": in_seconds(7200)}))
    assert future["totals"] == {"calls": 0, "billed_s": 0, "cost_micros": 0}, future
    assert future["ledger"]["entries"] == [], future["ledger"]
    assert_problem(p.api.get("/v1/billing", params={"from": "yesterday"}), 400, "invalid_parameter")
    # to before from: an empty range, zeros (issue 18: no schema can order two parameters)
    empty = _ok(p.api.get("/v1/billing", params={"from": in_seconds(60), "to": in_seconds(0)}))
    assert empty["totals"] == {"calls": 0, "billed_s": 0, "cost_micros": 0}, empty


# ------------------------------------------------------------------ audit log


def _audit(api: Api, **params) -> list[dict]:
    return _ok(api.get("/v1/audit-log", params=params))["data"]


def test_audit_log_records_changes_with_actor(system):
    p = _project(system)
    key = _ok(p.admin.post("/v1/api-keys", json={"name": "temp", "scopes": ["sessions:read"]}), 201)
    assert p.admin.delete(f"/v1/api-keys/{key['id']}").status_code == 204
    _dnc_add(p.api, [phone(0), phone(0)])
    _ok(p.admin.post("/v1/caller-ids", json={"phone": f"+1415557{random.randint(1000, 9999)}"}), 201)
    r = p.api.post("/v1/batches", params={"scenario": SCENARIO, "start_at": in_seconds(3600)},
                   data=f"phone\n{phone(0)}\n".encode(), headers={"Content-Type": "text/csv"})
    batch = _ok(r, 201)
    _ok(p.api.post(f"/v1/batches/{batch['id']}/pause"))
    _ok(p.api.post(f"/v1/batches/{batch['id']}/cancel"))
    system.ctl("project", "set", p.id, "--pacing", "300", json_out=False)

    log = _audit(p.admin, limit=200)
    actions = [e["action"] for e in reversed(log)]
    want = ["api_key.created", "api_key.revoked", "dnc.added", "caller_id.created", "batch.created", "batch.paused",
            "batch.canceled", "project.updated"]
    it = iter(actions)
    assert all(a in it for a in want), f"audit actions {actions} lack, in order, {want}"
    by: dict = {}
    for e in log:  # newest first: the latest of each action
        by.setdefault(e["action"], e)
    admin_key_id = system.scalar(f"select id from api_keys where project_id = '{p.id}' and name = 'admin'")
    assert by["api_key.created"]["actor"] == {"type": "api_key", "key_id": admin_key_id, "ip": "127.0.0.1"}, by
    assert by["api_key.created"]["object_id"] == key["id"] and "key_hash" not in by["api_key.created"]["changes"]
    assert by["dnc.added"]["actor"]["key_id"] == p.key_id and by["dnc.added"]["changes"]["count"] == 2, by
    assert by["batch.paused"]["object_id"] == batch["id"], by["batch.paused"]
    assert by["batch.paused"]["changes"]["status"] == {"from": "scheduled", "to": "paused"} or \
        by["batch.paused"]["changes"]["status"]["to"] == "paused", by["batch.paused"]
    op = by["project.updated"]
    assert op["actor"]["type"] == "operator" and op["changes"]["pacing_per_min"] == {"from": 600, "to": 300}, op
    # dispatches and outcomes are not changes by anyone: a completed call adds nothing
    n = len(_audit(p.admin, limit=200))
    p.wait_final(assert_accepted(p.api.create_call(phone(0)))["id"], timeout=30)
    assert len(_audit(p.admin, limit=200)) == n

    # pages, filter, append-only
    page = _ok(p.admin.get("/v1/audit-log", params={"limit": 2}))
    nxt = _ok(p.admin.get("/v1/audit-log", params={"limit": 2, "cursor": page["next_cursor"]}))
    assert [e["id"] for e in page["data"] + nxt["data"]] == [e["id"] for e in log[:4]]
    assert [e["action"] for e in _audit(p.admin, action="dnc.added")] == ["dnc.added"]
    with pytest.raises(Exception, match="append-only"):
        system.scalar(f"delete from audit_log where project_id = '{p.id}'")
    with pytest.raises(Exception, match="append-only"):
        system.scalar(f"update audit_log set action = 'x' where project_id = '{p.id}'")
    for q in ({"cursor": "x"}, {"limit": "500"}):
        assert_problem(p.admin.get("/v1/audit-log", params=q), 400, "invalid_parameter")


# ------------------------------------------------------- authorisation matrix

# (method, path, the scope it needs, a request body) — bodies are harmless: a
# key that may call the endpoint gets a 2xx or a 4xx about the body, never 401/403.
ENDPOINTS = [
    ("GET", "/v1/calls", "sessions:read", None),
    ("GET", "/v1/calls/{call}", "sessions:read", None),
    ("POST", "/v1/calls", "outbound:trigger", {"scenario": "nope", "phone": "+34612345670"}),
    ("POST", "/v1/calls/{call}/cancel", "outbound:trigger", None),
    ("GET", "/v1/calls/{call}/recording", "sessions:read", None),
    ("GET", "/v1/project", "sessions:read", None),
    ("GET", "/v1/scenarios", "sessions:read", None),
    ("GET", "/v1/scenarios/appointment_reminder", "sessions:read", None),
    ("POST", "/v1/scenarios", "admin", {"idn": "Bad Name"}),
    ("PATCH", "/v1/scenarios/appointment_reminder", "admin", {"nope": 1}),
    ("GET", "/v1/batches", "sessions:read", None),
    ("GET", "/v1/batches/{batch}", "sessions:read", None),
    ("GET", "/v1/batches/{batch}/results.csv", "sessions:read", None),
    ("POST", "/v1/batches/{batch}/pause", "outbound:trigger", None),
    ("PATCH", "/v1/batches/{batch}", "outbound:trigger", {"spend_cap_micros": 5000000}),
    ("GET", "/v1/dnc", "dnc:manage", None),
    ("POST", "/v1/dnc", "dnc:manage", {"phones": []}),
    ("DELETE", "/v1/dnc/%2B34600000000", "dnc:manage", None),
    ("GET", "/v1/caller-ids", "admin", None),
    ("POST", "/v1/caller-ids", "admin", {"phone": "x"}),
    ("GET", "/v1/billing", "sessions:read", None),
    ("GET", "/v1/audit-log", "admin", None),
    ("GET", "/v1/api-keys", "admin", None),
    ("POST", "/v1/api-keys", "admin", {"name": "x"}),
    ("GET", "/v1/webhooks", "webhooks:manage", None),
    ("POST", "/v1/webhooks", "webhooks:manage", {"url": "ftp://x"}),
    ("GET", "/v1/webhooks/{hook}", "webhooks:manage", None),
    ("PATCH", "/v1/webhooks/{hook}", "webhooks:manage", {"description": "x"}),
    ("POST", "/v1/webhooks/{hook}/rotate-secret", "webhooks:manage", None),
    ("GET", "/v1/webhooks/{hook}/deliveries", "webhooks:manage", None),
    ("POST", "/v1/webhooks/{hook}/deliveries/{call}/retry", "webhooks:manage", None),
    ("DELETE", "/v1/webhooks/{hook}", "webhooks:manage", None),
]
SCOPES = ["outbound:trigger", "sessions:read", "webhooks:manage", "dnc:manage", "admin"]


def test_authorisation_matrix(system):
    p = _project(system)
    other = _project(system)
    call = assert_accepted(p.api.create_call(phone(0), scheduled_for=in_seconds(3600)))["id"]
    r = p.api.post("/v1/batches", params={"scenario": SCENARIO, "start_at": in_seconds(3600)},
                   data=f"phone\n{phone(0)}\n".encode(), headers={"Content-Type": "text/csv"})
    batch = _ok(r, 201)["id"]
    # a public address: accepted without a DNS lookup (nothing is sent there: it only hears of batches)
    hook = _ok(p.admin.post("/v1/webhooks", json={"url": "https://93.184.216.34/hooks",
                                                   "event_types": ["batch.completed"]}), 201)["id"]
    keys = {s: system.api(system.ctl("key", "create", p.id, "--scopes", s)["key"]) for s in SCOPES}
    others = {s: system.api(system.ctl("key", "create", other.id, "--scopes", s)["key"]) for s in SCOPES}
    bad = []
    for method, path, scope, body in ENDPOINTS:
        url = path.format(call=call, batch=batch, hook=hook)
        kw = {"json": body} if body is not None else {}
        r = system.api().request(method, url, **kw)
        if r.status_code != 401:
            bad.append((method, path, "no key", r.status_code))
        for s, api in keys.items():
            r = api.request(method, url, **kw)
            allowed = s == scope or s == "admin"
            if allowed and r.status_code in (401, 403) or not allowed and r.status_code != 403:
                bad.append((method, path, s, r.status_code))
            elif not allowed:
                assert r.json()["code"] == "insufficient_scope", r.text
        # another project's key with every right: another project's objects are not found
        r = others["admin"].request(method, url, **kw)
        if "{call}" in path or "{batch}" in path or "{hook}" in path:
            if r.status_code != 404:
                bad.append((method, path, "other project", r.status_code))
        elif r.status_code in (401, 403) or r.status_code >= 500:
            bad.append((method, path, "other project", r.status_code))
    assert not bad, "unexpected answers (method, path, key, status):\n" + "\n".join(map(str, bad))
    # nothing of p is visible to the other project
    assert _ok(others["admin"].get("/v1/calls"))["data"] == []
    assert _ok(others["admin"].get("/v1/batches"))["data"] == []
    assert call not in str(_ok(others["admin"].get("/v1/audit-log")))
    assert uuid.UUID(batch)
