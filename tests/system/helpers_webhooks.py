"""Helpers for the webhook system tests (test_webhooks.py), after the contract
in docs/webhooks.md:

  * a Standard Webhooks signature verifier written here from the spec
    (hmac + hashlib + base64, no library), checked against the spec's
    published test vector by test_webhooks.py; every received request must
    also pass the reference implementation, the `standardwebhooks` package
    from PyPI (deploy/local/deps.sh installs it, test.sh puts it on
    PYTHONPATH);
  * Receiver: a real HTTP server on 127.0.0.1 (a threaded http.server on a
    free port) that records every request (headers, raw body, arrival time)
    and answers each path per a programmable plan: statuses in order, a delay,
    or closing the connection without an answer. It measures how many
    requests are in flight at once, per path and per webhook-id.

Everything that waits has a timeout.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from harness import wait_until

SECRET_PREFIX = "whsec_"

# The Standard Webhooks test vector (standard-webhooks spec and its libraries).
SPEC_VECTOR = dict(
    secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    msg_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
    timestamp="1614265330",
    body=b'{"test": 2432232314}',
    signature="v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
)


# ------------------------------------------------------------------ signatures


def secret_key(secret: str) -> bytes:
    """The HMAC key: the base64-decoded part of the secret after `whsec_`."""
    if secret.startswith(SECRET_PREFIX):
        secret = secret[len(SECRET_PREFIX):]
    return base64.b64decode(secret, validate=True)


def sign(secret: str, msg_id: str, timestamp: str | int, body: bytes | str) -> str:
    """'v1,<base64 HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")>'."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    content = f"{msg_id}.{timestamp}.".encode("utf-8") + body
    mac = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode("ascii")


def signature_entries(header: str | None) -> list[str]:
    """The space-separated entries of a webhook-signature header."""
    return (header or "").split()


def v1_signatures(header: str | None) -> list[bytes]:
    """The decoded MACs of the header's `v1,<base64>` entries (others ignored)."""
    out = []
    for entry in signature_entries(header):
        version, sep, sig = entry.partition(",")
        if version != "v1" or not sep:
            continue
        try:
            out.append(base64.b64decode(sig, validate=True))
        except (binascii.Error, ValueError):
            continue
    return out


def entry_valid(secret: str, msg_id: str, timestamp: str, body: bytes, entry: str) -> bool:
    """One `v1,<base64>` entry is the signature of this message with this secret."""
    version, sep, sig = entry.partition(",")
    if version != "v1" or not sep:
        return False
    try:
        got = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        return False
    want = base64.b64decode(sign(secret, msg_id, timestamp, body)[3:])
    return hmac.compare_digest(got, want)


def verify(secret: str, msg_id: str | None, timestamp: str | None, body: bytes,
           header: str | None) -> bool:
    """Standard Webhooks verification: valid if any v1 entry matches."""
    if not msg_id or not timestamp or not header:
        return False
    return any(entry_valid(secret, msg_id, timestamp, body, e) for e in signature_entries(header))


# ------------------------------------------------------------------- receiver


@dataclass
class Reply:
    """How the receiver answers one request."""
    status: int = 200
    delay: float = 0.0       # seconds to wait before answering (or closing)
    close: bool = False      # close the connection without any answer
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)


def reply(status: int = 200, delay: float = 0.0, close: bool = False, body: bytes = b"ok",
          headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, delay, close, body, dict(headers or {}))


CLOSE = Reply(close=True)


def _as_reply(x: Any) -> Reply:
    if isinstance(x, Reply):
        return x
    if isinstance(x, int):
        return Reply(status=x)
    if isinstance(x, dict):
        return Reply(**x)
    raise TypeError(f"not a reply: {x!r}")


@dataclass
class Hit:
    """One request as the receiver saw it."""
    path: str
    method: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float                # time.time() when it arrived (wall clock)
    t: float                 # time.monotonic() when it arrived
    seq: int                 # order of arrival over the receiver
    done: float | None = None  # time.monotonic() when answered / closed
    answer: Any = None       # the status sent, "close", or "aborted"

    @property
    def id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def timestamp(self) -> str | None:
        return self.headers.get("webhook-timestamp")

    @property
    def signature(self) -> str | None:
        return self.headers.get("webhook-signature")

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def type(self) -> str | None:
        try:
            return self.json().get("type")
        except ValueError:
            return None

    def valid_for(self, secret: str) -> bool:
        """Both verifiers agree that one of the signatures is this secret's."""
        mine = verify(secret, self.id, self.timestamp, self.body, self.signature)
        wh = Webhook(secret)
        if time.time() - self.at < 240:
            # the library's whole check, its 5-minute tolerance on webhook-timestamp included
            try:
                wh.verify(self.body, {"webhook-id": self.id or "", "webhook-timestamp": self.timestamp or "",
                                      "webhook-signature": self.signature or ""})
                reference = True
            except WebhookVerificationError:
                reference = False
        else:  # checked long after it came: the library's signature, without its clock check
            try:
                want = wh.sign(self.id or "", datetime.fromtimestamp(int(self.timestamp or "x"), tz=timezone.utc),
                               self.body.decode())
                reference = want in signature_entries(self.signature)
            except ValueError:
                reference = False
        assert mine == reference, f"the verifiers disagree: ours {mine}, standardwebhooks {reference}"
        return mine


class _Plan:
    def __init__(self, replies: Iterable[Any] | Callable[[Hit, int], Any], then: Any = 200):
        self.fn = replies if callable(replies) else None
        self.queue = [] if callable(replies) else [_as_reply(r) for r in replies]
        self.then = _as_reply(then)

    def next(self, hit: Hit, n: int) -> Reply:
        if self.fn is not None:
            return _as_reply(self.fn(hit, n))
        if self.queue:
            return self.queue.pop(0)
        return self.then


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive, and `Expect: 100-continue` answered
    server_version = "webhook-receiver/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_POST(self):
        self.server.receiver._handle(self)  # type: ignore[attr-defined]

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class Receiver:
    """A webhook receiver on 127.0.0.1:<free port>.

        rx = Receiver()
        rx.plan("/a", [500, 503], then=200)          # statuses in order, then 200
        rx.plan("/slow", [], then=reply(200, delay=5))
        rx.plan("/b", lambda hit, n: 500 if hit.type == "call.completed" else 200)
        url = rx.url("/a")
        ...
        rx.hits("/a"), rx.wait_hits(3, "/a"), rx.max_in_flight("/slow")
        rx.close()

    Paths without a plan answer 200 at once.
    """

    def __init__(self, port: int = 0):
        """On `port` (0: a free one)."""
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self._hits: list[Hit] = []
        self._plans: dict[str, _Plan] = {}
        self._count: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        self._id_in_flight: dict[str, int] = {}
        self.concurrent_dupes: list[str] = []  # webhook-ids that arrived while one was in flight
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.receiver = self  # type: ignore[attr-defined]
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       name=f"receiver-{self.port}", daemon=True)
        self.thread.start()

    def __enter__(self) -> "Receiver":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path: str, replies: Iterable[Any] | Callable[[Hit, int], Any] = (),
             then: Any = 200) -> None:
        with self.lock:
            self._plans[path] = _Plan(replies, then)

    def close(self) -> None:
        """Stop answering: requests still waiting are closed unanswered."""
        if self.stop_ev.is_set():
            return
        self.stop_ev.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- serving
    def _read_body(self, h: BaseHTTPRequestHandler) -> bytes:
        if "chunked" in (h.headers.get("transfer-encoding") or "").lower():
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
            return b"".join(chunks)
        n = int(h.headers.get("content-length") or 0)
        return h.rfile.read(n) if n > 0 else b""

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        t, at = time.monotonic(), time.time()
        path = h.path
        body = self._read_body(h)
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self.lock:
            hit = Hit(path, h.command, headers, body, at, t, len(self._hits))
            self._hits.append(hit)
            n = self._count.get(path, 0)
            self._count[path] = n + 1
            cur = self._in_flight.get(path, 0) + 1
            self._in_flight[path] = cur
            self._max_in_flight[path] = max(self._max_in_flight.get(path, 0), cur)
            wid = hit.id
            if wid:
                if self._id_in_flight.get(wid, 0) > 0:
                    self.concurrent_dupes.append(wid)
                self._id_in_flight[wid] = self._id_in_flight.get(wid, 0) + 1
            plan = self._plans.get(path)
            try:
                r = plan.next(hit, n) if plan else Reply()
            except Exception:  # noqa: BLE001 - a broken plan answers 599, visibly
                r = Reply(599)
        try:
            stopped = self.stop_ev.wait(r.delay) if r.delay > 0 else self.stop_ev.is_set()
            if r.close or stopped:
                hit.answer = "close"
                h.close_connection = True
                try:
                    h.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            h.send_response(r.status)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(r.body)))
            for k, v in r.headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(r.body)
            h.wfile.flush()
            hit.answer = r.status
        except OSError:
            hit.answer = "aborted"
            h.close_connection = True
        finally:
            with self.lock:
                hit.done = time.monotonic()
                self._in_flight[path] -= 1
                if hit.id:
                    self._id_in_flight[hit.id] -= 1

    # -- reading what arrived
    def hits(self, path: str | None = None) -> list[Hit]:
        with self.lock:
            return [x for x in self._hits if path is None or x.path == path]

    def count(self, path: str | None = None) -> int:
        return len(self.hits(path))

    def ids(self, path: str | None = None) -> list[str]:
        return [x.id for x in self.hits(path) if x.id]

    def in_flight(self, path: str | None = None) -> int:
        with self.lock:
            if path is None:
                return sum(self._in_flight.values())
            return self._in_flight.get(path, 0)

    def in_flight_hits(self, path: str | None = None) -> list[Hit]:
        with self.lock:
            return [x for x in self._hits if x.done is None and (path is None or x.path == path)]

    def max_in_flight(self, path: str | None = None) -> int:
        with self.lock:
            if path is None:
                return max(self._max_in_flight.values(), default=0)
            return self._max_in_flight.get(path, 0)

    def wait_hits(self, n: int, path: str | None = None, timeout: float = 20,
                  what: str | None = None) -> list[Hit]:
        """Wait until at least n requests arrived (on path); returns them all."""
        wait_until(lambda: self.count(path) >= n, timeout, 0.05,
                   what=what or f"{n} webhook request(s) on {path or 'any path'} "
                                f"(got {self.count(path)})")
        return self.hits(path)

    def wait_for(self, pred: Callable[[list[Hit]], Any], path: str | None = None, timeout: float = 20,
                 what: str = "webhook requests") -> Any:
        last: list[Hit] = []

        def check():
            nonlocal last
            last = self.hits(path)
            return pred(last)

        try:
            return wait_until(check, timeout, 0.05, what=what)
        except TimeoutError as e:
            seen = [(x.path, x.type, x.id, x.answer) for x in last][-30:]
            raise TimeoutError(f"{e}; received so far: {seen}") from None
