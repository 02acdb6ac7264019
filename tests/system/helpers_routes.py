"""The ingress's routes as data, for the tests generated from them
(test_hostile_input.py, test_authz_matrix.py).

- ROUTES: `routes[]` of services/ingress/ingress.c, parsed from the source:
  (method, pattern with "{}" for each path segment, scope name).
- spec_op(route): the OpenAPI operation (proto/openapi.yaml) of a route, with
  its parameters and request bodies resolved.
- OBJECT_KINDS: what each "{}" of a pattern names (call, batch, webhook, ...).
- raw_request(): one HTTP/1.1 exchange over a fresh socket with every byte
  under the caller's control (bad UTF-8 and NUL in headers, targets and
  bodies), bounded in time, never raising for what the server does.
"""

from __future__ import annotations

import json
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
INGRESS_C = REPO / "services" / "ingress" / "ingress.c"
OPENAPI = REPO / "proto" / "openapi.yaml"

SCOPE_NAMES = {
    "OD_SCOPE_TRIGGER": "outbound:trigger",
    "OD_SCOPE_READ": "sessions:read",
    "OD_SCOPE_WEBHOOKS": "webhooks:manage",
    "OD_SCOPE_DNC": "dnc:manage",
    "OD_SCOPE_ADMIN": "admin",
}
SCOPES = list(SCOPE_NAMES.values())


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # "/v1/calls/{}/cancel"
    scope: str    # "outbound:trigger"

    def __str__(self) -> str:
        return f"{self.method} {self.pattern}"


def parse_routes() -> list[Route]:
    """`routes[]` of ingress.c: {"METHOD", "/path", OD_SCOPE_X, fn}."""
    src = INGRESS_C.read_text()
    body = re.search(r"static const route_t routes\[\] = \{(.*?)\n\};", src, re.S)
    assert body, "routes[] not found in ingress.c"
    out = [Route(m, p, SCOPE_NAMES[s]) for m, p, s in
           re.findall(r'\{"([A-Z]+)",\s*"([^"]+)",\s*(OD_SCOPE_[A-Z]+),', body.group(1))]
    assert len(out) > 30, f"only {len(out)} routes parsed from ingress.c"
    return out


ROUTES = parse_routes()
SPEC = yaml.safe_load(OPENAPI.read_text())


def deref(s):
    """A schema or parameter with its $ref followed (recursively at the top)."""
    while isinstance(s, dict) and "$ref" in s:
        t = SPEC
        for k in s["$ref"].split("/")[1:]:
            t = t[k]
        s = t
    return s


@dataclass
class Op:
    """What the OpenAPI document says about one route."""
    route: Route
    path: str                                   # the document's path, "/v1/calls/{id}/cancel"
    params: list[dict] = field(default_factory=list)   # resolved, path-level and operation-level
    bodies: dict[str, dict] = field(default_factory=dict)  # media type -> resolved schema

    def query(self) -> list[dict]:
        return [p for p in self.params if p["in"] == "query"]

    def header(self, name: str) -> dict | None:
        for p in self.params:
            if p["in"] == "header" and p["name"].lower() == name.lower():
                return p
        return None


def spec_op(route: Route) -> Op:
    """The operation of the document whose path, with its {names} as {}, is the route's."""
    for path, item in SPEC["paths"].items():
        if re.sub(r"\{[^}]+\}", "{}", path) != route.pattern:
            continue
        op = item.get(route.method.lower())
        if op is None:
            break
        params = [deref(p) for p in item.get("parameters", []) + op.get("parameters", [])]
        bodies = {ct: deref(v.get("schema", {}))
                  for ct, v in op.get("requestBody", {}).get("content", {}).items()}
        return Op(route, path, params, bodies)
    raise AssertionError(f"{route} has no operation in proto/openapi.yaml")


def problem_codes() -> set[str]:
    """Every problem `code` the document names: the Problem schema's enum and
    the enums of the operations' own problem responses."""
    codes: set[str] = set()

    def walk(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k == "code" and isinstance(v, dict) and "enum" in v:
                    codes.update(v["enum"])
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(SPEC)
    return codes


# What each "{}" of a pattern names, in order (keys of the objects a test creates).
OBJECT_KINDS = {
    "/v1/calls/{}": ["call"],
    "/v1/batches/{}": ["batch"],
    "/v1/webhooks/{}": ["webhook"],
    "/v1/webhooks/{}/deliveries/{}": ["webhook", "delivery"],
    "/v1/api-keys/{}": ["api_key"],
    "/v1/dnc/{}": ["dnc"],
    "/v1/scenarios/{}": ["scenario"],
}


def kinds_of(pattern: str) -> list[str]:
    """The object kinds of the pattern's "{}" segments ([] for none)."""
    n = pattern.count("{}")
    if n == 0:
        return []
    best = max((p for p in OBJECT_KINDS if pattern.startswith(p)), key=len, default=None)
    assert best is not None and len(OBJECT_KINDS[best]) == n, f"no object kinds for {pattern}"
    return OBJECT_KINDS[best]


def fill(pattern: str, segments: list[bytes]) -> bytes:
    """The pattern with its "{}" replaced by the given (already encoded) segments."""
    parts = pattern.encode().split(b"{}")
    assert len(parts) == len(segments) + 1, (pattern, segments)
    out = parts[0]
    for seg, rest in zip(segments, parts[1:]):
        out += seg + rest
    return out


# ------------------------------------------------------------------ raw HTTP


@dataclass
class Resp:
    status: int | None          # None: no answer (closed, reset or timed out)
    headers: dict[str, str]
    body: bytes
    error: str = ""
    seconds: float = 0.0

    @property
    def ctype(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    def json(self):
        return json.loads(self.body)

    def __str__(self) -> str:
        if self.status is None:
            return f"no answer ({self.error}, {self.seconds:.1f} s)"
        return f"{self.status} {self.ctype} {self.body[:300]!r}"


def _dechunk(data: bytes) -> bytes | None:
    """The body of a complete chunked message, or None if more is needed."""
    out, i = b"", 0
    while True:
        j = data.find(b"\r\n", i)
        if j < 0:
            return None
        size = int(data[i:j].split(b";")[0] or b"0", 16)
        if size == 0:
            return out
        if len(data) < j + 2 + size + 2:
            return None
        out += data[j + 2:j + 2 + size]
        i = j + 2 + size + 2


def raw_request(port: int, method: str, target: bytes, headers: list[tuple[bytes, bytes]] = (),
                body: bytes | None = None, timeout: float = 10.0) -> Resp:
    """One request on a new connection (Connection: close), every byte as given.

    Returns when the answer is complete (Content-Length, the last chunk, or
    the close), or after `timeout` seconds in all. An event stream is not
    read past its headers. Never raises for the server's behaviour."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    head = method.encode() + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    for k, v in headers:
        head += k + b": " + v + b"\r\n"
    if body is not None:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    msg = head + b"\r\n" + (body or b"")
    data, err = b"", ""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return Resp(None, {}, b"", f"connect: {e}", time.monotonic() - t0)
    with s:
        try:
            s.sendall(msg)
        except OSError as e:  # an early answer (413) and close: read what came
            err = f"send: {e}"
        status, hdrs, hend = None, {}, -1
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                err = f"timed out after {timeout} s"
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                err = f"timed out after {timeout} s"
                break
            except OSError as e:
                err = f"recv: {e}"
                break
            if not chunk:
                break
            data += chunk
            if hend < 0:
                hend = data.find(b"\r\n\r\n")
                if hend < 0:
                    continue
                lines = data[:hend].decode("latin-1").split("\r\n")
                try:
                    status = int(lines[0].split()[1])
                except (IndexError, ValueError):
                    return Resp(None, {}, data, f"bad status line {lines[0]!r}", time.monotonic() - t0)
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    hdrs[k.strip().lower()] = v.strip()
                if hdrs.get("content-type", "").startswith("text/event-stream"):
                    return Resp(status, hdrs, data[hend + 4:], "", time.monotonic() - t0)
            rest = data[hend + 4:]
            if "content-length" in hdrs and len(rest) >= int(hdrs["content-length"]):
                return Resp(status, hdrs, rest[:int(hdrs["content-length"])], "", time.monotonic() - t0)
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                b = _dechunk(rest)
                if b is not None:
                    return Resp(status, hdrs, b, "", time.monotonic() - t0)
    secs = time.monotonic() - t0
    if hend < 0:
        return Resp(None, {}, data, err or "closed without an answer", secs)
    rest = data[hend + 4:]
    if hdrs.get("transfer-encoding", "").lower() == "chunked":
        rest = _dechunk(rest) or rest
    return Resp(status, hdrs, rest, err, secs)
