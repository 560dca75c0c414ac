"""A real HTTP server on loopback that records the JSON POSTs it gets (a stand-in for Slack/Discord webhooks)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HookServer:
    """Answers every POST with ``status`` (changeable while it runs) and keeps the bodies it got."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        #: While set, every request is held unanswered until it is cleared (a hung webhook).
        self.hold = threading.Event()
        self._released = threading.Event()
        #: How many requests are being held right now.
        self.held = 0
        self.bodies: list[dict[str, Any]] = []
        #: Every POST, including the refused ones: (status answered, body).
        self.attempts: list[tuple[int, dict[str, Any]]] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if server.hold.is_set():
                    with server._lock:
                        server.held += 1
                    server._released.wait(60)
                    with server._lock:
                        server.held -= 1
                    return  # the client gave up long ago: no answer
                with server._lock:
                    status = server.status
                    server.attempts.append((status, body))
                    if status < 300:
                        server.bodies.append(body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the test output is for the tests

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/T000/secret"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def release(self) -> None:
        """Stop holding requests (those held are dropped unanswered)."""
        self.hold.clear()
        self._released.set()

    def events(self) -> list[str]:
        """The ``event`` of each accepted body, in arrival order."""
        with self._lock:
            return [str(body.get("event")) for body in self.bodies]

    def __enter__(self) -> HookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def hook_server(status: int = 200) -> Iterator[HookServer]:
    """A running :class:`HookServer`."""
    with HookServer(status) as server:
        yield server


def closed_port_url() -> str:
    """A loopback URL nothing listens on (the port was just released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"
