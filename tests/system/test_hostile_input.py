"""Hostile input, generated from the routes table and the OpenAPI document.

For every route of `routes[]` (services/ingress/ingress.c), the operation of
proto/openapi.yaml says which inputs it takes; each one gets, in an
otherwise valid request of an admin key:

- every string: invalid UTF-8 (percent-encoded and raw where the place allows
  raw bytes), NUL (raw, `%00`, `\\u0000`), bad percent-encoding, the empty
  string (where the schema does not take it), a long value (4,000 characters,
  under h2o's header limits) and an overlong one (100,000; 1 MiB in bodies),
  and in JSON every wrong type (number, object, array, null, bool);
- every number: 0, -1, 2^63, 2^64 and a non-number — each value that the
  document's own schema accepts (a `minimum: 0`, a nullable field) is left
  out, since a valid value is not hostile;
- the headers: Authorization (every route), Idempotency-Key, Content-Type
  (routes with a body, including a multipart boundary) and Last-Event-ID
  where the document lists them;
- the whole body (invalid UTF-8, empty, each wrong JSON type), the parts of
  the multipart upload (their values, the file, the file's `filename`) and
  the CSV bodies.

Expected of each request: within 10 s, a 4xx `application/problem+json`
whose `status` is the HTTP status and whose `code` is one the document
names (the Problem enum or an operation's own); h2o's own 400 for what is not
HTTP at all (a NUL in a header) is the one other answer taken. A valid time at
the end of its range (year 0001, 9999) may also be a 2xx, and one entry of a
DNC import may be a 200 that adds nothing and lists it as invalid (the import
refuses entries one by one, as documented). After each route: the ingress still runs and answers
/healthz; for a route that changes state (any method but GET), no row was
added to or removed from any table.
"""

from __future__ import annotations

import copy
import json
import re
import time
import urllib.parse
from dataclasses import dataclass, field

import pytest

import harness
from harness import run
from helpers_pipeline import NO_LIMITS, SCENARIO, in_seconds, phone
from helpers_routes import (ROUTES, Resp, Route, deref, fill, kinds_of, problem_codes, raw_h2_request, raw_request,
                            spec_op)

SANITIZED = True  # services from the ASan + UBSan build when make test made one (conftest.py)
SYSTEM_SERVICES = ["ingress"]  # nothing here should get as far as the scheduler
TEST_TIMEOUT = 300

CODES = problem_codes()

# ------------------------------------------------------------------- values

BAD_UTF8 = b"\xff\xfe\xc3\x28\xed\xa0\x80\xc0\xaf"  # stray bytes, a cut sequence, a surrogate, an overlong '/'
LONG, OVERLONG, HUGE = 4_000, 100_000, 1 << 20

# (label, bytes): what a string becomes; each place encodes it its own way
STRINGS = [
    ("bad-utf8", BAD_UTF8),
    ("nul", b"a\x00b"),
    ("long-4k", b"A" * LONG),
    ("overlong-100k", b"A" * OVERLONG),
]
# RFC 3339 at and past the ends of the range (an offset that moves 0001 / 9999
# out of it, a leap second, a day that does not exist): as a filter a 2xx may
# be right, a 5xx never is; as a time to call or start, each is refused
EDGE_TIMES = ["0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "0001-01-01T00:00:00+23:59",
              "9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59-23:59"]
NEAR_EDGE_TIMES = ["2026-12-31T23:59:60Z", "2026-02-30T00:00:00Z"]
NUMBERS = [("zero", 0), ("minus-one", -1), ("2^63", 2 ** 63), ("2^64", 2 ** 64)]
WRONG_TYPES = [("number", 1), ("float", 1.5), ("object", {}), ("array", []), ("null", None), ("bool", True)]


def pct(b: bytes) -> bytes:
    return urllib.parse.quote_from_bytes(b, safe="").encode()


def url_values(schema: dict | None = None) -> list[tuple[str, bytes]]:
    """The hostile values of a query parameter or path segment, encoded for the URL
    (and for a number, those of NUMBERS its schema does not accept)."""
    out = [("bad-utf8", pct(BAD_UTF8)), ("bad-utf8-raw", BAD_UTF8), ("nul", b"a%00b"),
           ("long-4k", b"A" * LONG), ("overlong-100k", b"A" * OVERLONG), ("bad-percent", b"%G1%"),
           ("empty", b"")]
    if schema is not None and schema_accepts(schema, ""):
        out = [(lbl, v) for lbl, v in out if lbl != "empty"]  # a documented value, not a hostile one
    if schema is not None and is_numeric(schema):
        out += [(lbl, str(n).encode()) for lbl, n in NUMBERS if not number_valid(schema, n)]
        out.append(("not-a-number", b"12abc"))
    return out


def header_values() -> list[tuple[str, bytes]]:
    return [("bad-utf8", BAD_UTF8), ("nul", b"a\x00b"), ("long-4k", b"A" * LONG),
            ("overlong-100k", b"A" * OVERLONG)]


# ------------------------------------------------------- the schema's view


def json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def schema_accepts(schema: dict, v) -> bool:
    """Whether the document's schema takes v as valid (then v is not hostile)."""
    schema = deref(schema)
    if "enum" in schema:
        return v in schema["enum"]
    types = schema.get("type")
    if types is None:
        return any(schema_accepts(s, v) for s in schema.get("oneOf", []) + schema.get("anyOf", [])) \
            if ("oneOf" in schema or "anyOf" in schema) else True
    types = [types] if isinstance(types, str) else types
    t = json_type(v)
    if not (t in types or (t == "integer" and "number" in types)):
        return False
    if t in ("integer", "number"):
        if "minimum" in schema and v < schema["minimum"]:
            return False
        if "maximum" in schema and v > schema["maximum"]:
            return False
        return t != "integer" or "integer" in types or "number" in types
    if t == "string":
        if "maxLength" in schema and len(v) > schema["maxLength"]:
            return False
        if len(v) < schema.get("minLength", 0):
            return False
        fmt = {"date-time": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$",
               "uuid": r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"}.get(schema.get("format"))
        if fmt and not re.match(fmt, v):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], v):
            return False
    if t == "array" and "minItems" in schema and len(v) < schema["minItems"]:
        return False
    return True


def number_valid(schema: dict, n: int) -> bool:
    """Whether the schema takes n; 2^63 and more only under a stated maximum
    (an open range is no promise to take what no int64 holds)."""
    return schema_accepts(schema, n) and (n < 2 ** 63 or "maximum" in deref(schema))


def is_numeric(schema: dict) -> bool:
    t = deref(schema or {}).get("type")
    t = [t] if isinstance(t, str) else (t or [])
    return "integer" in t or "number" in t


# ----------------------------------------------------------------- requests


class Raw:
    """A JSON string given as raw bytes (which may not be UTF-8)."""

    def __init__(self, b: bytes):
        self.b = b


def encode_json(obj) -> bytes:
    raws: list[bytes] = []

    def walk(o):
        if isinstance(o, Raw):
            raws.append(o.b)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(o, dict):
            return {k: walk(v) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    text = json.dumps(walk(obj)).encode()
    for i, b in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"'.encode(), b'"' + b + b'"')
    return text


@dataclass
class Part:
    name: str
    data: bytes
    filename: bytes | None = None


@dataclass
class Req:
    route: Route
    segs: list[bytes]
    query: list[tuple[str, bytes]] = field(default_factory=list)
    headers: dict[str, bytes] = field(default_factory=dict)
    kind: str = "none"          # none | json | multipart | csv | raw
    obj: object = None          # json
    parts: list[Part] = field(default_factory=list)
    data: bytes = b""           # csv, raw
    ctype: bytes | None = None  # the Content-Type the kind implies, unless headers has one

    def render(self) -> tuple[bytes, list[tuple[bytes, bytes]], bytes | None]:
        target = fill(self.route.pattern, self.segs)
        if self.query:
            target += b"?" + b"&".join(k.encode() + b"=" + v for k, v in self.query)
        hdrs = dict(self.headers)
        body = None
        boundary = b"hostile-boundary-7c1e"
        if self.kind == "json":
            body, ct = encode_json(self.obj), b"application/json"
        elif self.kind == "multipart":
            body = b""
            for p in self.parts:
                disp = b'form-data; name="' + p.name.encode() + b'"'
                if p.filename is not None:
                    disp += b'; filename="' + p.filename + b'"'
                body += b"--" + boundary + b"\r\nContent-Disposition: " + disp + b"\r\n\r\n" + p.data + b"\r\n"
            body += b"--" + boundary + b"--\r\n"
            ct = b"multipart/form-data; boundary=" + boundary
        elif self.kind == "csv":
            body, ct = self.data, b"text/csv"
        elif self.kind == "raw":
            body, ct = self.data, self.ctype
        else:
            ct = None
        if ct is not None and "content-type" not in hdrs:
            hdrs["content-type"] = ct
        return target, [(k.encode(), v) for k, v in hdrs.items()], body


@dataclass
class Objects:
    """The project's objects the path segments name, as valid path values."""
    admin_key: str
    ids: dict[str, str]


def csv_of(*phones: str) -> bytes:
    return ("phone,name\n" + "".join(f"{p},Ana\n" for p in phones)).encode()


def bases(route: Route, objs: Objects) -> list[Req]:
    """Valid requests of the route (one per media type it takes); the only
    hand-written part: every value here would succeed on its own."""
    segs = [objs.ids[k].encode() for k in kinds_of(route.pattern)]
    auth = {"authorization": b"Bearer " + objs.admin_key.encode()}
    r = lambda **kw: Req(route, list(segs), headers=dict(auth), **kw)  # noqa: E731
    later = in_seconds(3600)
    json_bases = {
        "POST /v1/calls": {"scenario": SCENARIO, "phone": phone(0), "scheduled_for": later,
                           "metadata": {"name": "Ana"}, "caller_id": objs.ids["caller_id"]},
        "POST /v1/scenarios": {"idn": "hostile_x", "disclosure": "This is an automated call.",
                               "disclosure_enabled": True, "opt_out_script": "Say stop to opt out."},
        "PATCH /v1/scenarios/{}": {"disclosure": "This is an automated call from an AI."},
        "POST /v1/api-keys": {"name": "hostile", "scopes": ["sessions:read"]},
        "PATCH /v1/batches/{}": {"spend_cap_micros": 5_000_000},
        "POST /v1/dnc": {"phones": [phone(1)]},
        "POST /v1/caller-ids": {"phone": "+14155550123"},
        "POST /v1/webhooks": {"url": "https://93.184.216.34/hostile", "event_types": ["batch.completed"],
                              "description": "hostile", "enabled": True},
        "PATCH /v1/webhooks/{}": {"description": "hostile"},
    }
    op = spec_op(route)
    out = []
    for ct in op.bodies:
        if ct == "application/json":
            assert str(route) in json_bases, f"{route}: no valid JSON body to start from"
            out.append(r(kind="json", obj=copy.deepcopy(json_bases[str(route)])))
        elif ct == "text/csv":
            q = [("scenario", SCENARIO.encode()), ("start_at", pct(later.encode()))] \
                if route.pattern == "/v1/batches" else []
            out.append(r(kind="csv", data=csv_of(phone(0)), query=q))
        elif ct == "multipart/form-data":
            out.append(r(kind="multipart", parts=[
                Part("file", csv_of(phone(0)), b"calls.csv"), Part("scenario", SCENARIO.encode()),
                Part("start_at", later.encode())]))
        else:
            raise AssertionError(f"{route}: no base request for {ct}")
    return out or [r()]


# ---------------------------------------------------------------- mutations


def mutations(route: Route, objs: Objects):
    """(what, request) for every hostile value of every input of the route."""
    op = spec_op(route)
    all_bases = bases(route, objs)
    base = all_bases[0]

    # Authorization, on every route
    for lbl, v in header_values() + [("no-scheme", BAD_UTF8)]:
        q = copy.deepcopy(base)
        q.headers["authorization"] = v if lbl == "no-scheme" else b"Bearer " + v
        yield f"Authorization {lbl}", q

    # path segments
    for i, kind in enumerate(kinds_of(route.pattern)):
        for lbl, v in url_values():
            q = copy.deepcopy(base)
            q.segs[i] = v
            yield f"path {{{kind}}} {lbl}", q

    for b in all_bases:
        ctname = {"json": "application/json", "multipart": "multipart", "csv": "text/csv"}.get(b.kind, "")
        # query parameters (with the base's body: the csv upload's settings live here)
        if b.kind in ("none", "csv") or route.method == "PATCH":
            for p in op.query():
                values = url_values(p.get("schema", {}))
                if p.get("schema", {}).get("format") == "date-time":
                    if route.method == "GET":
                        values += [(f"edge {v}", pct(v.encode())) for v in EDGE_TIMES + NEAR_EDGE_TIMES]
                    else:
                        values += [(f"far {v}", pct(v.encode())) for v in EDGE_TIMES]
                for lbl, v in values:
                    q = copy.deepcopy(b)
                    q.query = [kv for kv in q.query if kv[0] != p["name"]] + [(p["name"], v)]
                    yield f"query {p['name']} {lbl} ({ctname or 'no body'})", q
        # headers the document lists
        for name in ("Idempotency-Key", "Last-Event-ID"):
            if op.header(name) is not None:
                values = header_values()
                if name == "Last-Event-ID":  # "<xid>-<id>": an xid8 (unsigned) and a bigint, each out of range
                    values += [(f"{lbl}-1", f"{n}-1".encode()) for lbl, n in NUMBERS if lbl in ("minus-one", "2^64")]
                    values += [(f"1-{lbl}", f"1-{n}".encode()) for lbl, n in NUMBERS[1:]]
                for lbl, v in values:
                    q = copy.deepcopy(b)
                    q.headers[name.lower()] = v
                    yield f"{name} {lbl}", q
        if b.kind != "none":
            cts = header_values() + [("wrong-type", b"application/xml")]
            if b.kind == "multipart":
                cts += [("no-boundary", b"multipart/form-data"),
                        ("bad-utf8-boundary", b"multipart/form-data; boundary=" + BAD_UTF8)]
            for lbl, v in cts:
                q = copy.deepcopy(b)
                q.headers["content-type"] = v
                yield f"Content-Type {lbl} ({ctname})", q
        if b.kind == "json":
            yield from json_mutations(route, op, b)
        elif b.kind == "multipart":
            yield from multipart_mutations(op, b)
        elif b.kind == "csv":
            for lbl, v in [("bad-utf8", b"phone\n" + BAD_UTF8 + b"\n"), ("nul", b"phone\n+3461\x002345670\n"),
                           ("overlong-line", b"A" * HUGE)]:
                q = copy.deepcopy(b)
                q.data = v
                yield f"text/csv body {lbl}", q


def json_mutations(route: Route, op, b: Req):
    schema = op.bodies["application/json"]
    for lbl, data in [("bad-utf8", BAD_UTF8), ("empty", b""), ("array", b"[]"), ("number", b"1"),
                      ("null", b"null"), ("string", b'"x"'), ("truncated", b'{"a":'),
                      ("nul-raw", b'{"a\x00":1}'), ("deep-100k", b"[" * 100_000 + b"]" * 100_000),
                      ("deep-object-100k", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)]:
        q = copy.deepcopy(b)
        q.kind, q.data, q.ctype = "raw", data, b"application/json"
        yield f"body {lbl}", q
    whole = encode_json(b.obj)
    for lbl, key in [("bad-utf8", BAD_UTF8), ("nul-escaped", b"\\u0000"), ("overlong-100k", b"A" * OVERLONG),
                     ("duplicate", next(iter(b.obj)).encode())]:
        q = copy.deepcopy(b)
        q.kind, q.data, q.ctype = "raw", whole[:-1] + b', "' + key + b'": 1}', b"application/json"
        yield f"json key {lbl}", q
    for name, ps in deref(schema).get("properties", {}).items():
        ps = deref(ps)
        num = is_numeric(ps)
        values = []
        for lbl, v in STRINGS:
            values.append((lbl, Raw(v)))
        values.append(("nul-escaped", "a\u0000b"))
        values.append(("empty", ""))
        values.append(("lone-surrogate", Raw(b"\\ud800")))
        values.append(("overlong-1MiB", "A" * HUGE))
        if ps.get("format") == "date-time":
            values += [(f"far {v}", v) for v in EDGE_TIMES]
        values += [(lbl, v) for lbl, v in NUMBERS + WRONG_TYPES + [("string", "12")]]
        for lbl, v in values:
            if not isinstance(v, Raw) and not lbl.startswith("far ") and (
                    number_valid(ps, v) if lbl in dict(NUMBERS) else schema_accepts(ps, v)):
                continue
            if not num and lbl in ("zero", "minus-one", "2^63", "2^64") and "number" in dict(values):
                continue  # a string field's wrong type "number" is enough
            q = copy.deepcopy(b)
            q.obj[name] = v
            yield f"json {name} {lbl}", q
        items = deref(ps.get("items", {})) if "array" in str(ps.get("type")) else None
        if items is not None:
            for lbl, v in [(l, Raw(x)) for l, x in STRINGS] + [("nul-escaped", "a\u0000b")] + WRONG_TYPES:
                if not isinstance(v, Raw) and schema_accepts(items, v):
                    continue
                q = copy.deepcopy(b)
                q.obj[name] = [v]
                yield f"json {name}[] {lbl}", q
        if ps.get("additionalProperties") is True:
            # free-form (metadata): a long value is fine, one over its 16 KiB is not
            for lbl, v in [(l, Raw(x)) for l, x in STRINGS if l != "long-4k"] + [("nul-escaped", "a\u0000b")]:
                q = copy.deepcopy(b)
                q.obj[name] = {"k": v}
                yield f"json {name}.k {lbl}", q
            q = copy.deepcopy(b)
            q.obj[name] = {"A" * OVERLONG: 1}
            yield f"json {name} key overlong", q
            deep: dict = {}
            for _ in range(64):
                deep = {"a": deep}
            q = copy.deepcopy(b)
            q.obj[name] = deep
            yield f"json {name} 64 levels deep", q


def multipart_mutations(op, b: Req):
    schema = op.bodies["multipart/form-data"]
    for name, ps in deref(schema).get("properties", {}).items():
        ps = deref(ps)
        num = is_numeric(ps)
        values = [(lbl, v) for lbl, v in STRINGS] + [("overlong-1MiB", b"A" * HUGE)]
        if num:
            values += [(lbl, str(n).encode()) for lbl, n in NUMBERS if not number_valid(ps, n)]
            values.append(("not-a-number", b"12abc"))
        if name == "file":
            values = [("bad-utf8", b"phone\n" + BAD_UTF8 + b"\n"), ("nul", b"phone\n+3461\x002345670\n"),
                      ("overlong-line", b"A" * HUGE), ("empty", b"")]
        for lbl, v in values:
            q = copy.deepcopy(b)
            q.parts = [p for p in q.parts if p.name != name] + [Part(name, v, b"x.csv" if name == "file" else None)]
            yield f"multipart {name} {lbl}", q
    for lbl, v in STRINGS + [("overlong-1MiB", b"A" * HUGE), ("quote", b'a"b')]:
        q = copy.deepcopy(b)
        q.parts[0].filename = v
        yield f"multipart file filename {lbl}", q
    # the framing itself
    _, headers, body = b.render()
    ct = dict(headers)[b"content-type"]
    first = body.index(b"\r\n\r\n")
    for lbl, data in [("no closing boundary", body[:body.rindex(b"--", 0, len(body) - 4)]),
                      ("part headers not ended", body[:first] + b"\r\n" + body[first + 4:]),
                      ("header without colon", body[:first] + b"\r\nJunk" + body[first:]),
                      ("file part without name", body.replace(b'name="file"; ', b"", 1)),
                      ("only boundaries", body.split(b"\r\n")[0] * 10_000)]:
        q = copy.deepcopy(b)
        q.kind, q.data, q.ctype = "raw", data, ct
        yield f"multipart framing {lbl}", q


# ------------------------------------------------------------------ checking


# h2o 2.2.5's HTTP/1 parser refuses a request that is not HTTP (a NUL or another
# control byte in a header) with this answer, written straight to the socket
# (http1.c send_bad_request) before any handler or output filter could make it
# a problem; nothing of ours runs.
H2O_PARSER_400 = (400, "text/plain", b"Bad Request")


def problem_failure(r: Resp, edge: bool = False, item: bool = False) -> str | None:
    """Why r is not a 4xx problem with a stable code (None when it is).

    edge: a valid value at the end of its range, where a 2xx is right too.
    item: one entry of a DNC import, which refuses entries one by one: a 200
    that added nothing and lists the entry as invalid is right too."""
    if r.status is None:
        return str(r)
    if (r.status, r.ctype, r.body) == H2O_PARSER_400:
        return None
    if edge and 200 <= r.status < 300:
        return None
    if item and r.status == 200:
        out = json.loads(r.body)
        return None if out.get("added") == 0 and out.get("invalid_count") == 1 else f"200 {out}"
    if not 400 <= r.status < 500:
        return str(r)
    if r.ctype != "application/problem+json":
        return f"{r.status} is {r.ctype!r}, not problem+json: {r.body[:200]!r}"
    try:
        p = r.json()
    except ValueError:
        return f"{r.status} problem is not JSON: {r.body[:200]!r}"
    if not isinstance(p, dict) or p.get("status") != r.status:
        return f"{r.status} problem's status is {p.get('status') if isinstance(p, dict) else p!r}"
    if p.get("code") not in CODES:
        return f"{r.status} code {p.get('code')!r} is not in the document's code enum"
    return None


def table_counts(system) -> dict[str, int]:
    tables = system.psql("select string_agg(format('select %L, count(*) from %I', tablename, tablename), "
                         "' union all ') from pg_tables where schemaname = 'public'")
    return {t: int(n) for t, n in system.rows(tables)}


# Rows the traffic itself keeps (a key's first request makes its rate-limit row)
VOLATILE = {"rate_limits"}


# ----------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def objs(system):
    p = system.new_project(scopes=("outbound:trigger", "sessions:read"), **NO_LIMITS)
    admin = p.admin
    call = admin.create_call(phone(0), scheduled_for=in_seconds(3600))
    assert call.status_code == 202, call.text
    r = admin.post("/v1/batches", params={"scenario": SCENARIO, "start_at": in_seconds(3600)},
                   data=csv_of(phone(0)), headers={"Content-Type": "text/csv"})
    assert r.status_code == 201, r.text
    hook = admin.post("/v1/webhooks", json={"url": "https://93.184.216.34/h", "event_types": ["batch.completed"]})
    assert hook.status_code == 201, hook.text
    hook_id = hook.json()["id"]
    delivery = system.scalar(
        "insert into webhook_deliveries (endpoint_id, event_id, event_type, payload, status) "
        f"values ('{hook_id}', 'evt_hostile', 'batch.completed', '{{}}', 'failed') returning id")
    spare = system.ctl("key", "create", p.id, "--scopes", "sessions:read", "--name", "spare")
    dnc = phone(3)
    assert admin.post("/v1/dnc", json={"phones": [dnc]}).status_code == 200
    # every key's rate-limit rows exist before the counting starts
    assert admin.get("/v1/project").status_code == 200
    return Objects(p.admin_key, {"call": call.json()["id"], "batch": r.json()["id"], "webhook": hook_id,
                                 "delivery": delivery, "api_key": str(spare["id"]), "dnc": pct(dnc.encode()).decode(),
                                 "scenario": SCENARIO, "caller_id": p.caller_id})


def test_every_route_is_in_the_document():
    """The generation below covers what the document says of each route: each needs one."""
    for route in ROUTES:
        spec_op(route)
    assert len({str(r) for r in ROUTES}) == len(ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_hostile_input(system, objs, route):
    port = system.ingress.http_port
    counts = table_counts(system) if route.method != "GET" else None
    bad, n, t0 = [], 0, time.monotonic()
    for what, q in mutations(route, objs):
        target, headers, body = q.render()
        r = raw_request(port, route.method, target, headers, body, timeout=10)
        n += 1
        why = problem_failure(r, edge=what.split(" ")[2:3] == ["edge"],
                              item=route.pattern == "/v1/dnc" and ("[]" in what or "text/csv body" in what))
        if why is not None:
            bad.append(f"{what}: {why}")
        if r.status is None:
            try:
                system.ingress.proc.wait(timeout=1)
            except Exception:  # noqa: BLE001 - still running
                pass
        if not system.ingress.running():
            bad.append(f"ingress died after {what!r} (exit {system.ingress.proc.returncode})")
            system.ingress.start()
    alive = system.ingress.running()
    health = raw_request(port, "GET", b"/healthz", timeout=5) if alive else None
    assert alive and health.status == 200, f"ingress not alive after {route}: {health}"
    if counts is not None:
        after = table_counts(system)
        changed = {t: (counts.get(t), after.get(t)) for t in set(counts) | set(after)
                   if counts.get(t) != after.get(t) and t not in VOLATILE}
        if changed:
            bad.append(f"rows written (table: before, after): {changed}")
    assert not bad, f"{route}: {len(bad)} of {n} hostile requests answered wrongly " \
                    f"({time.monotonic() - t0:.1f} s):\n" + "\n".join(bad[:60])
    assert n > 0


# What HTTP/1's parser refuses but HTTP/2 carries (HPACK counts bytes): each reaches the handlers
H2_VALUES = [("nul", b"a\x00b"), ("control", b"a\x01\x7fb"), ("crlf", b"a\r\nx-injected: 1"), ("bad-utf8", BAD_UTF8)]


def h2_mutations(route: Route, objs: Objects):
    """(what, target, headers, body) of the header and query values HTTP/2 alone can carry."""
    op = spec_op(route)
    base = bases(route, objs)[0]
    names = ["authorization"] + [n.lower() for n in ("Idempotency-Key", "Last-Event-ID") if op.header(n)]
    if base.kind != "none":
        names.append("content-type")
    target, headers, body = base.render()
    for name in names:
        for lbl, v in H2_VALUES:
            hv = b"Bearer " + v if name == "authorization" else v
            yield f"h2 {name} {lbl}", target, [(k, hv if k.lower() == name.encode() else x)
                                                  for k, x in headers] + \
                ([(name.encode(), hv)] if name.encode() not in [k.lower() for k, _ in headers] else []), body
    for p in op.query():
        for lbl, v in H2_VALUES[:2]:  # raw in :path
            sep = b"&" if b"?" in target else b"?"
            yield f"h2 query {p['name']} {lbl} (raw)", target + sep + p["name"].encode() + b"=" + v, headers, body


def test_hostile_headers_over_http2(system, objs):
    """NUL, control bytes and CR LF in the headers and in :path, which HTTP/1's
    parser refuses but HTTP/2 frames carry: a 4xx problem with a documented
    code (h2o's own refusal comes through the problem filter as bad_request),
    or h2o's 400 and a reset stream when a body was on its way; the ingress
    alive and nothing written."""
    port = system.ingress.http_port
    counts = table_counts(system)
    bad, n = [], 0
    for route in ROUTES:
        for what, target, headers, body in h2_mutations(route, objs):
            r = raw_h2_request(port, route.method, target, headers, body, timeout=10)
            n += 1
            if r.status in (None, 400) and r.error.startswith(("RST_STREAM", "GOAWAY")):
                continue  # h2o refused the header before the body was read (its 400, then the stream reset)
            why = None
            if r.status is None or not 400 <= r.status < 500:
                why = str(r)
            else:
                try:
                    p = json.loads(r.body)
                    if p.get("status") != r.status or p.get("code") not in CODES:
                        why = f"{r.status} {r.body[:200]!r}"
                except ValueError:
                    why = f"{r.status} not a problem: {r.body[:200]!r}"
            if why:
                bad.append(f"{route} {what}: {why}")
            if not system.ingress.running():
                bad.append(f"ingress died after {route} {what!r}")
                system.ingress.start()
    assert system.ingress.running() and raw_request(port, "GET", b"/healthz").status == 200
    after = table_counts(system)
    changed = {t: (counts.get(t), after.get(t)) for t in set(counts) | set(after)
               if counts.get(t) != after.get(t) and t not in VOLATILE}
    if changed:
        bad.append(f"rows written (table: before, after): {changed}")
    assert not bad, f"{len(bad)} of {n} HTTP/2 requests answered wrongly:\n" + "\n".join(bad[:60])


def test_no_sanitizer_report(system):
    """A sanitizer build's services are what ran (when make test built one), and
    ASan, LeakSanitizer (at exit) and UBSan reported nothing in their logs."""
    if harness.SANITIZER_BIN_DIR is not None:
        assert system.bin_dir == harness.SANITIZER_BIN_DIR
        syms = run(["nm", "-D", "--undefined-only", str(system.bin_dir / "outdial-ingress")]).stdout
        assert "__asan_report" in syms and "__ubsan_handle" in syms, "the ingress is not an ASan + UBSan build"
    assert system.ingress.term(timeout=30) == 0
    assert not system.sanitizer_reports(), "\n".join(system.sanitizer_reports())
    system.ingress.start()
