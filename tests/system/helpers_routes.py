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


def _recv(s: socket.socket, deadline: float, timeout: float) -> tuple[bytes, str]:
    """The next bytes before the deadline: (data, "") or (b"", why not); b"" and "" at the close."""
    left = deadline - time.monotonic()
    if left <= 0:
        return b"", f"timed out after {timeout} s"
    s.settimeout(left)
    try:
        return s.recv(65536), ""
    except socket.timeout:
        return b"", f"timed out after {timeout} s"
    except OSError as e:
        return b"", f"recv: {e}"


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
            chunk, why = _recv(s, deadline, timeout)
            if why:
                err = why
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


# ------------------------------------------------------------- raw HTTP/2
# HTTP/2 carries header values as counted bytes (HPACK), so a NUL or a CR
# reaches the server where HTTP/1's parser would have refused the request.

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# HPACK's Huffman codes of the ten digits (RFC 7541 appendix B): enough for a :status
_H2_DIGITS = {"00000": "0", "00001": "1", "00010": "2", "011001": "3", "011010": "4", "011011": "5",
              "011100": "6", "011101": "7", "011110": "8", "011111": "9"}
_H2_STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def _hpack_int(n: int, prefix: int, flags: int = 0) -> bytes:
    top = (1 << prefix) - 1
    if n < top:
        return bytes([flags | n])
    out, n = [flags | top], n - top
    while n >= 128:
        out.append(n % 128 | 128)
        n //= 128
    return bytes(out + [n])


def _hpack_literal(name: bytes, value: bytes) -> bytes:
    """A literal header field without indexing, new name, no Huffman."""
    return b"\x00" + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value


def _frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def _h2_status(block: bytes) -> int | None:
    """The :status of a response's first header block (its first field)."""
    b = block[0]
    if b & 0x80:
        return _H2_STATIC_STATUS.get(b & 0x7F)
    i, idx = 1, b & (0x3F if b & 0x40 else 0x0F)
    if idx not in _H2_STATIC_STATUS:
        return None
    huff, n = block[i] & 0x80, block[i] & 0x7F
    raw = block[i + 1:i + 1 + n]
    if not huff:
        return int(raw)
    bits, out, cur = "".join(f"{x:08b}" for x in raw), "", ""
    for c in bits:
        cur += c
        if cur in _H2_DIGITS:
            out, cur = out + _H2_DIGITS[cur], ""
    return int(out)


def raw_h2_request(port: int, method: str, path: bytes, headers: list[tuple[bytes, bytes]] = (),
                   body: bytes | None = None, timeout: float = 10.0) -> Resp:
    """One request over HTTP/2 with prior knowledge on a new connection, header
    values as given. Resp.headers is empty (HPACK is not decoded but for the
    :status); Resp.body is the DATA of stream 1. RST_STREAM or GOAWAY without
    an answer is status None with the error code."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    fields = _hpack_literal(b":method", method.encode()) + _hpack_literal(b":scheme", b"http") + \
        _hpack_literal(b":path", path) + _hpack_literal(b":authority", b"127.0.0.1")
    for k, v in headers:
        fields += _hpack_literal(k.lower(), v)
    out = H2_PREFACE + _frame(4, 0, 0, b"")
    out += _frame(1, 0x4 | (0 if body else 0x1), 1, fields)
    if body:
        for i in range(0, len(body), 16384):
            out += _frame(0, 0x1 if i + 16384 >= len(body) else 0, 1, body[i:i + 16384])
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as e:
        return Resp(None, {}, b"", f"connect: {e}", time.monotonic() - t0)
    status, data, buf, err = None, b"", b"", ""
    with s:
        try:
            s.sendall(out)
        except OSError as e:
            err = f"send: {e}"
        while True:
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                n = int.from_bytes(buf[:3], "big")
                ftype, flags, stream = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                payload, buf = buf[9:9 + n], buf[9 + n:]
                if ftype == 4 and not flags & 0x1:
                    s.sendall(_frame(4, 0x1, 0, b""))
                elif ftype == 1 and stream == 1 and status is None:
                    if flags & 0x8:  # padded
                        payload = payload[1:len(payload) - payload[0]]
                    if flags & 0x20:  # priority
                        payload = payload[5:]
                    status = _h2_status(payload)
                    if flags & 0x1:
                        return Resp(status, {}, data, "", time.monotonic() - t0)
                elif ftype == 0 and stream == 1:
                    data += payload
                    if flags & 0x1:
                        return Resp(status, {}, data, "", time.monotonic() - t0)
                elif ftype == 3 and stream == 1:
                    return Resp(status, {}, data, f"RST_STREAM {int.from_bytes(payload[:4], 'big')}",
                                time.monotonic() - t0)
                elif ftype == 7:
                    return Resp(status, {}, data, f"GOAWAY {int.from_bytes(payload[4:8], 'big')}",
                                time.monotonic() - t0)
            chunk, why = _recv(s, deadline, timeout)
            if not chunk:
                err = why or err or "closed"
                break
            buf += chunk
    return Resp(status, {}, data, err, time.monotonic() - t0)
