"""A subscriber at the far end of a real HTTP connection, for outbound webhook tests.

``Receiver`` is a threaded HTTP server on 127.0.0.1 that records every request (headers,
raw body, the status it answered, in arrival order) and answers with scripted statuses
or delays per webhook-id, so tests can fail, slow down or hang a chosen event.
"""

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: str
    status: int


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver = self.server.receiver
        status, delay = receiver.answer_for(headers.get("webhook-id", ""))
        receiver.record(Received(headers.get("webhook-id", ""), headers, body, status))
        if delay:
            time.sleep(delay)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: "Receiver"


class Receiver:
    def __init__(self) -> None:
        self.received: list[Received] = []
        # webhook-id → statuses to answer, one per request, then 200
        self.statuses: dict[str, list[int]] = {}
        # webhook-id → seconds to wait before answering, for the first request only
        self.delays: dict[str, float] = {}
        # Answer every request with this status (an endpoint that is down).
        self.always: int | None = None
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.receiver = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self._lock = threading.Lock()

    def answer_for(self, webhook_id: str) -> tuple[int, float]:
        with self._lock:
            delay = self.delays.pop(webhook_id, 0.0)
            if self.always is not None:
                return self.always, delay
            scripted = self.statuses.get(webhook_id)
            return (scripted.pop(0) if scripted else 200), delay

    def record(self, request: Received) -> None:
        with self._lock:
            self.received.append(request)

    def ids(self) -> list[str]:
        with self._lock:
            return [r.webhook_id for r in self.received]

    def start(self) -> "Receiver":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
