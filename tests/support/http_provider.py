"""A provider at the far end of a real HTTP connection, for pipeline tests.

``StubProvider`` is a tiny HTTP server (in a thread, or its own process for tests that
kill workers) that records every message it receives and answers with a scripted
status. ``HttpProviderTransport`` is a transport that talks to it the way a real
provider adapter talks to its API: 2xx is sent, 429/5xx transient, other 4xx permanent.
Pipeline tests plug it in through ``NOTIFICATION_TRANSPORTS`` so that everything of
ours, from the API to the task and the state machine, runs for real.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import requests

from notifications.transports.base import OutboundMessage, Transport, TransportError


class HttpProviderTransport(Transport):
    channel = "email"
    name = "http-stub"

    def send(self, message: OutboundMessage) -> str:
        url = os.environ["STUB_PROVIDER_URL"]
        try:
            response = requests.post(
                url,
                json={
                    "id": message.intervention_id,
                    "to": message.recipient,
                    "channel": message.channel,
                },
                timeout=30,
            )
        except requests.RequestException as exc:
            raise TransportError(str(exc), reason="connection") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise TransportError(
                f"HTTP {response.status_code}", reason=f"http_{response.status_code}"
            )
        if response.status_code >= 400:
            raise TransportError(
                f"HTTP {response.status_code}",
                permanent=True,
                reason=f"http_{response.status_code}",
                suppress_address=response.status_code == 410,
            )
        return str(response.json()["message_id"])


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.provider.record(body)
        if self.server.provider.delay:
            time.sleep(self.server.provider.delay)
        status = self.server.provider.next_status()
        payload = json.dumps({"message_id": f"stub-{body['id']}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    provider: "StubProvider"


class StubProvider:
    """Records received messages (in memory, and to ``log_path`` if given)."""

    statuses: ClassVar[list[int]]

    def __init__(self, port: int = 0, delay: float = 0.0, log_path: Path | None = None):
        self.received: list[dict[str, Any]] = []
        self.scripted: list[int] = []
        self.delay = delay
        self.log_path = log_path
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.provider = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self._lock = threading.Lock()

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.received.append(body)
            if self.log_path:
                with self.log_path.open("a") as log:
                    log.write(json.dumps(body) + "\n")

    def next_status(self) -> int:
        with self._lock:
            return self.scripted.pop(0) if self.scripted else 200

    def start(self) -> "StubProvider":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    # Its own process: `python -m tests.support.http_provider PORT DELAY LOG_PATH`
    import sys

    StubProvider(int(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])).server.serve_forever()
