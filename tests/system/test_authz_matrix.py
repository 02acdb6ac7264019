"""The authorization matrix, generated from the routes table.

Every route of `routes[]` (services/ingress/ingress.c, with the scope it
needs there) is called with a key of each scope, with no key, with a revoked
key and with malformed ones:

- no key, a revoked key, a malformed key → 401 `unauthorized` with
  `WWW-Authenticate: Bearer`;
- a key without the route's scope (`admin` implies every scope) →
  403 `insufficient_scope`, and the object the request named is unchanged;
- a key with it → the route's own status: the same for every such key, one the
  document lists for the operation, never 401/403. Requests that would use up
  their object (DELETE, cancel, pause, retry...) get a fresh object each.

Then every route with an object id is called by one project with another
project's ids (calls, batches, webhooks, deliveries, API keys, DNC numbers,
scenarios; each id alone and next to one of its own): 404 `not_found`, none of
the other project's data in the answer, and the other project's object as it
was. The lists, filters and caller IDs of one project show nothing of the
other's.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid

import pytest

from harness import wait_until
from helpers_pipeline import NO_LIMITS, SCENARIO, in_seconds, phone
from helpers_routes import ROUTES, SCOPES, SPEC, Route, fill, kinds_of, raw_request, spec_op

SANITIZED = True  # services from the ASan + UBSan build when make test made one (conftest.py)
SYSTEM_SERVICES = ["ingress"]  # no call needs to get further than the ingress here
TEST_TIMEOUT = 300

OTHER_SCENARIO = "other_only"


def _enc(s: str) -> bytes:
    return urllib.parse.quote(s, safe="").encode()


class Tenant:
    """A project with its objects, reached through its admin key."""

    def __init__(self, system, label: str):
        self.system = system
        self.p = system.new_project(scopes=("outbound:trigger", "sessions:read"), **NO_LIMITS)
        self.id = self.p.id
        self.admin = self.p.admin_key
        self.label = label
        self.hook_url = f"https://93.184.216.34/{label}-{uuid.uuid4().hex[:8]}"

    # -- requests with the admin key
    def req(self, method: str, target: str | bytes, body=None, key: str | None = None, ctype: str | None = None):
        t = target.encode() if isinstance(target, str) else target
        hdrs = [(b"Authorization", f"Bearer {key or self.admin}".encode())]
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.append((b"Content-Type", (ctype or "application/json").encode()))
        return raw_request(self.system.ingress.http_port, method, t, hdrs, data, timeout=10)

    def ok(self, method: str, target: str, body=None, status: int = 200, ctype: str | None = None) -> dict:
        r = self.req(method, target, body, ctype=ctype)
        assert r.status == status, f"{method} {target}: {r}"
        return r.json() if r.body else {}

    # -- fresh objects of each kind: (the path value, for the {} segment)
    def new_call(self) -> str:
        return self.ok("POST", "/v1/calls", {"scenario": SCENARIO, "phone": phone(0),
                                             "scheduled_for": in_seconds(3600)}, 202)["id"]

    def new_batch(self) -> str:
        b = self.ok("POST", f"/v1/batches?scenario={SCENARIO}&start_at={_enc(in_seconds(3600)).decode()}",
                    f"phone,name\n{phone(0)},Ana\n".encode(), 201, ctype="text/csv")["id"]
        wait_until(lambda: self.ok("GET", f"/v1/batches/{b}")["status"] != "validating", 20,
                   what="the batch to be validated")
        return b

    def new_webhook(self) -> str:
        return self.ok("POST", "/v1/webhooks", {"url": self.hook_url, "event_types": ["batch.completed"]}, 201)["id"]

    def new_delivery(self, hook: str) -> str:
        return self.system.scalar(
            "insert into webhook_deliveries (endpoint_id, event_id, event_type, payload, status) "
            f"values ('{hook}', 'evt_{uuid.uuid4().hex}', 'batch.completed', '{{}}', 'failed') returning id")

    def new_key(self, scopes: str = "sessions:read") -> tuple[str, str]:
        k = self.system.ctl("key", "create", self.id, "--scopes", scopes, "--name", f"{self.label}-key")
        return str(k["id"]), k["key"]

    def new_dnc(self) -> str:
        ph = phone(3)
        self.ok("POST", "/v1/dnc", {"phones": [ph]})
        return _enc(ph).decode()

    # -- what an object looks like to its own project (to see that it did not change)
    def look(self, kind: str, value: str, parent: str | None = None):
        if kind == "call":
            return self.ok("GET", f"/v1/calls/{value}")
        if kind == "batch":
            return self.ok("GET", f"/v1/batches/{value}")
        if kind == "webhook":
            return self.ok("GET", f"/v1/webhooks/{value}")
        if kind == "delivery":
            return self.system.rows(f"select status, attempts, next_attempt_at from webhook_deliveries "
                                    f"where id = '{value}'")
        if kind == "api_key":
            return [k for k in self.ok("GET", "/v1/api-keys")["data"] if k["id"] == value]
        if kind == "dnc":
            return self.ok("GET", f"/v1/dnc?phone={value}")["data"]
        if kind == "scenario":
            return self.ok("GET", f"/v1/scenarios/{value}")
        raise AssertionError(kind)


# The request each route is called with: (body, Content-Type, fresh) — fresh:
# the route uses up its object, so each key that may call it gets a new one.
# A body is chosen so that a key allowed to call the route gets one fixed answer.
REQUESTS = {
    "POST /v1/calls": ({"scenario": "no_such_scenario", "phone": "+34600000010"}, None, False),
    "POST /v1/calls/{}/cancel": (None, None, True),
    "POST /v1/scenarios": ({"idn": "Bad Name"}, None, False),
    "PATCH /v1/scenarios/{}": ({"disclosure": "This is an automated call from an AI assistant."}, None, False),
    "POST /v1/api-keys": ({"name": "no scopes"}, None, False),
    "DELETE /v1/api-keys/{}": (None, None, True),
    "POST /v1/batches": (b"phone\n+34600000010\n", "text/csv", False),
    "PATCH /v1/batches/{}": ({"spend_cap_micros": 5_000_000}, None, False),
    "POST /v1/batches/{}/pause": (None, None, True),
    "POST /v1/batches/{}/resume": (None, None, True),
    "POST /v1/batches/{}/cancel": (None, None, True),
    "POST /v1/dnc": ({"phones": []}, None, False),
    "DELETE /v1/dnc/{}": (None, None, True),
    "POST /v1/caller-ids": ({"phone": "x"}, None, False),
    "POST /v1/webhooks": ({"url": "ftp://x"}, None, False),
    "PATCH /v1/webhooks/{}": ({"description": "matrix"}, None, False),
    "DELETE /v1/webhooks/{}": (None, None, True),
    "POST /v1/webhooks/{}/rotate-secret": (None, None, False),
    "POST /v1/webhooks/{}/deliveries/{}/retry": (None, None, True),
}


def request_of(route: Route):
    body, ctype, fresh = REQUESTS.get(str(route), (None, None, False))
    assert route.method == "GET" or str(route) in REQUESTS, f"{route}: add its request to REQUESTS"
    return body, ctype, fresh


class Objects:
    """Path values of a tenant's objects; fresh ones made on demand."""

    def __init__(self, t: Tenant):
        self.t = t
        self.call = t.new_call()
        self.batch = t.new_batch()
        self.webhook = t.new_webhook()
        self.delivery = t.new_delivery(self.webhook)
        self.api_key = t.new_key()[0]
        self.dnc = t.new_dnc()
        self.scenario = SCENARIO

    def segments(self, route: Route, fresh: bool) -> list[str]:
        """The values of the route's {} segments (new objects if fresh)."""
        kinds = kinds_of(route.pattern)
        if not fresh:
            return [getattr(self, k) for k in kinds]
        t, p = self.t, route.pattern
        if p.startswith("/v1/calls/"):
            return [t.new_call()]
        if p.startswith("/v1/batches/"):
            b = t.new_batch()
            if p.endswith("/resume"):
                t.ok("POST", f"/v1/batches/{b}/pause")
            return [b]
        if p.startswith("/v1/api-keys/"):
            return [t.new_key()[0]]
        if p.startswith("/v1/dnc/"):
            return [t.new_dnc()]
        if p == "/v1/webhooks/{}":
            return [t.new_webhook()]
        if p.endswith("/retry"):
            return [self.webhook, t.new_delivery(self.webhook)]
        raise AssertionError(f"no fresh object for {route}")


def call(t: Tenant, route: Route, segs: list[str], key: str | None, auth: bytes | None = None):
    body, ctype, _ = request_of(route)
    target = fill(route.pattern, [s.encode() for s in segs])
    hdrs = []
    if auth is not None:
        hdrs.append((b"Authorization", auth))
    elif key is not None:
        hdrs.append((b"Authorization", f"Bearer {key}".encode()))
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.append((b"Content-Type", (ctype or "application/json").encode()))
    return raw_request(t.system.ingress.http_port, route.method, target, hdrs, data, timeout=10)


def problem_code(r) -> str | None:
    try:
        return r.json().get("code") if r.ctype == "application/problem+json" else None
    except ValueError:
        return None


@pytest.fixture(scope="module")
def tenants(system):
    p, q = Tenant(system, "mine"), Tenant(system, "other")
    system.ctl("scenario", "add", q.id, OTHER_SCENARIO, "--disclosure", "An AI calls.", json_out=False)
    return Objects(p), Objects(q)


@pytest.fixture(scope="module")
def keys(system, tenants):
    """A key of each scope of the first project, and its revoked admin key."""
    mine = tenants[0].t
    out = {s: mine.new_key(s)[1] for s in SCOPES}
    rid, rkey = mine.new_key("admin")
    assert mine.req("GET", "/v1/project", key=rkey).status == 200  # now in the ingress's key cache
    mine.ok("DELETE", f"/v1/api-keys/{rid}", status=204)
    wait_until(lambda: mine.req("GET", "/v1/project", key=rkey).status == 401, 10,
               what="the revoked key to be refused")
    out["revoked"] = rkey
    return out


def test_every_route_is_in_the_table():
    for route in ROUTES:
        request_of(route)
        spec_op(route)


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_scope_matrix(system, tenants, keys, route):
    mine = tenants[0]
    t = mine.t
    _, _, fresh = request_of(route)
    op = spec_op(route)
    documented = {int(c) for c in op_responses(op)}
    bad = []
    # refused: each against one object, which must be as it was afterwards
    victim = mine.segments(route, fresh)
    kinds = kinds_of(route.pattern)
    before = [t.look(k, v) for k, v in zip(kinds, victim)]
    admin = keys["admin"]
    unauth = {"no key": None, "revoked key": keys["revoked"]}
    malformed = {"no scheme": admin.encode(), "Basic scheme": b"Basic " + admin.encode(),
                 "key cut short": b"Bearer " + admin[:-1].encode(), "key and junk": b"Bearer " + admin.encode() + b"x",
                 "empty": b"Bearer ", "not a key": b"Bearer not-a-key"}
    for what, key in unauth.items():
        r = call(t, route, victim, key)  # key None: no Authorization header at all
        if r.status != 401 or problem_code(r) != "unauthorized" or "bearer" not in r.headers.get(
                "www-authenticate", "").lower():
            bad.append(f"{what}: {r}")
    for what, auth in malformed.items():
        r = call(t, route, victim, None, auth=auth)
        if r.status != 401 or problem_code(r) != "unauthorized":
            bad.append(f"malformed key ({what}): {r}")
    for s in SCOPES:
        if s == route.scope or s == "admin":
            continue
        r = call(t, route, victim, keys[s])
        if r.status != 403 or problem_code(r) != "insufficient_scope":
            bad.append(f"scope {s}: {r}")
    after = [t.look(k, v) for k, v in zip(kinds, victim)]
    if before != after:
        bad.append(f"a refused request changed its object: {before} -> {after}")
    # allowed: the route's own status, the same for each key that may call it
    seen = {}
    for s in SCOPES:
        if s != route.scope and s != "admin":
            continue
        r = call(t, route, mine.segments(route, fresh), keys[s])
        seen[s] = r.status
        if r.status is None or r.status in (401, 403) or r.status >= 500 or r.status not in documented:
            bad.append(f"scope {s} (allowed): {r} (documented: {sorted(documented)})")
    if len(set(seen.values())) > 1:
        bad.append(f"keys allowed to call it answered differently: {seen}")
    assert not bad, f"{route} (needs {route.scope}):\n" + "\n".join(bad)


def op_responses(op) -> list[str]:
    return [c for c in SPEC["paths"][op.path][op.route.method.lower()]["responses"] if str(c).isdigit()]


def foreign_strings(o: Objects) -> list[str]:
    """What of a tenant must never show in another's answers."""
    t = o.t
    return [o.call, o.batch, o.webhook, o.delivery, o.api_key, urllib.parse.unquote(o.dnc), t.p.caller_id,
            t.id, t.hook_url, OTHER_SCENARIO]


@pytest.mark.parametrize("route", [r for r in ROUTES if "{}" in r.pattern], ids=str)
def test_other_projects_ids(system, tenants, route):
    mine, other = tenants
    kinds = kinds_of(route.pattern)
    theirs_all = [OTHER_SCENARIO if k == "scenario" else getattr(other, k) for k in kinds]
    variants = [theirs_all]
    if len(kinds) > 1:  # one of mine next to one of theirs: the delivery of their webhook under mine
        variants += [[getattr(mine, kinds[0])] + theirs_all[1:], theirs_all[:1] + [getattr(mine, k) for k in kinds[1:]]]
    secrets = foreign_strings(other)
    bad = []
    for segs in variants:
        before = [other.t.look(k, v) for k, v in zip(kinds, segs) if v in theirs_all]
        r = call(mine.t, route, segs, mine.t.admin)
        if r.status != 404 or problem_code(r) != "not_found":
            bad.append(f"{segs}: {r}")
        leaked = [s for s in secrets if s.encode() in r.body]
        if leaked:
            bad.append(f"{segs}: the answer holds the other project's {leaked}: {r.body[:300]!r}")
        after = [other.t.look(k, v) for k, v in zip(kinds, segs) if v in theirs_all]
        if before != after:
            bad.append(f"{segs}: the other project's object changed: {before} -> {after}")
    assert not bad, f"{route}:\n" + "\n".join(bad)


def test_lists_and_filters_show_nothing_of_another_project(system, tenants):
    mine, other = tenants
    secrets = foreign_strings(other)
    t = mine.t
    bad = []
    for route in ROUTES:
        if route.method != "GET" or "{}" in route.pattern:
            continue
        r = t.req("GET", route.pattern)
        if r.status != 200:
            bad.append(f"{route}: {r}")
        leaked = [s for s in secrets if s.encode() in r.body]
        if leaked:
            bad.append(f"{route}: holds the other project's {leaked}")
    filters = [f"/v1/calls?batch_id={other.batch}", f"/v1/dnc?phone={other.dnc}",
               f"/v1/calls?phone={_enc(urllib.parse.unquote(other.dnc)).decode()}",
               f"/v1/calls?cursor={other.call}", f"/v1/batches?cursor={other.batch}"]
    for f in filters:
        r = t.req("GET", f)
        leaked = [s for s in secrets if s.encode() in r.body]
        if r.status != 200 and not 400 <= (r.status or 0) < 500 or leaked:
            bad.append(f"GET {f}: {r} {leaked}")
    # their caller ID and their scenario are not mine to use
    r = t.req("POST", "/v1/calls", {"scenario": SCENARIO, "phone": phone(0), "caller_id": other.t.p.caller_id,
                                    "scheduled_for": in_seconds(3600)})
    if r.status != 422 or problem_code(r) != "caller_id_not_verified":
        bad.append(f"a call with the other project's caller ID: {r}")
    r = t.req("POST", "/v1/calls", {"scenario": OTHER_SCENARIO, "phone": phone(0)})
    if r.status != 422 or problem_code(r) != "unknown_scenario":
        bad.append(f"a call with the other project's scenario: {r}")
    assert not bad, "\n".join(bad)
