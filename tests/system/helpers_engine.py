"""A conversation engine (proto/engine.md) for the system tests: a threaded
HTTP server on 127.0.0.1 that hands each request to the test's callbacks.

  POST /v1/sessions              -> on_session(h, body)
  POST /v1/sessions/{id}/end     -> on_end(h, body)
  anything else                  -> 404

`h.answer(code, obj)` answers (obj None: no body); `on_request(headers)`,
if given, sees every request's headers first."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


class EngineServer:
    def __init__(self, port: int, on_session: Callable[[Any, dict], None], on_end: Callable[[Any, dict], None],
                 on_request: Callable[[Any], None] | None = None):
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if on_request is not None:
                    on_request(self.headers)
                if self.path == "/v1/sessions":
                    on_session(self, body)
                elif self.path.startswith("/v1/sessions/") and self.path.endswith("/end"):
                    on_end(self, body)
                else:
                    self.answer(404, {})

            def answer(self, code: int, obj: dict | None):
                data = json.dumps(obj).encode() if obj is not None else b""
                self.send_response(code)
                if data:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
