"""A real HTTP receiver for webhook deliveries, on loopback, that fails on command.

It runs a `ThreadingHTTPServer` on its own thread, so a server under test in another process, or a deliverer on
the test's event loop, reaches it over real sockets. Behaviours are taken from the script in order, then
`default`:
    200, 204        accept
    500, 503, 404   answer with that status
    301             a redirect (to itself), which a deliverer must not follow
    hang:S          answer 200 only after S seconds (a deliverer with a shorter timeout gives up first)
    reset           close the connection without an answer
Every request is kept with the time it arrived (monotonic), its headers, its raw body and the behaviour served.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes
    behaviour: str = field(compare=False)

    @property
    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class WebhookReceiver:
    def __init__(self, default: str = "200") -> None:
        self.default = default
        self.script: deque[str] = deque()
        self.received: list[Received] = []
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                behaviour = receiver._next()
                with receiver._lock:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.received.append(Received(time.monotonic(), self.path, headers, body, behaviour))
                    receiver._lock.notify_all()
                name, _, arg = behaviour.partition(":")
                if name == "reset":
                    # RST rather than FIN: the client sees the connection torn down, with no answer.
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.close_connection = True
                    return
                if name == "hang":
                    if receiver._stopping.wait(float(arg or 30)):
                        return
                    name = "200"
                status = int(name)
                self.send_response(status)
                if status == 301:
                    self.send_header("Location", self.path)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="webhook-receiver")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks/livebatch"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def queue(self, *behaviours: str) -> None:
        with self._lock:
            self.script.extend(behaviours)

    def _next(self) -> str:
        with self._lock:
            return self.script.popleft() if self.script else self.default

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def count(self) -> int:
        with self._lock:
            return len(self.received)
