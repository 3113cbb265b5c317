"""Postmark and Twilio at the far end of a real HTTP connection, for pipeline tests.

``StubProvider`` is a tiny HTTP server (in a thread) that speaks the parts of the
providers' wire APIs our real transports use, so that everything of ours, from the API
to the task, the state machine and the provider SDKs, runs for real. Tests point the
SDKs at it through settings, as production would point them at a regional endpoint:

- Postmark (through anymail): ``POST /email`` and ``/email/batch``, and the outbound
  message search ``GET /messages/outbound?metadata_intervention_id=…`` that
  ``AnymailEmailTransport.find_sent`` asks after a worker died mid-send;
  ``ANYMAIL["POSTMARK_API_URL"]`` (env ``POSTMARK_API_URL``).
- Twilio: ``POST /2010-04-01/Accounts/{sid}/Messages.json``; ``TWILIO_API_BASE_URL``.

Push is not here: firebase-admin has no endpoint setting (its FCM URL is a class
constant), so push stays on ``responses`` in tests/notifications.

Every send request is recorded as ``{"id": intervention id, "to", "channel", "payload"}``
and answered with the next scripted answer (200/201 when none is left): an HTTP status
(with the provider's usual error body), or ``REJECTED`` / ``DEAD_ADDRESS`` for the
provider's own "bad message" and "this address is dead" errors.
"""

import contextlib
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# The message is refused for itself (Postmark 422 code 300, Twilio 21606): permanent.
REJECTED = "rejected"
# The address is dead (Postmark 422 code 406 inactive recipient, Twilio 21211): suppress it.
DEAD_ADDRESS = "dead_address"

Answer = int | str


def postmark_answer(answer: Answer, message: dict[str, Any], message_id: str) -> tuple[int, Any]:
    if answer == REJECTED:
        return 422, {"ErrorCode": 300, "Message": "Invalid 'From' address: 'nobody'."}
    if answer == DEAD_ADDRESS:
        return 422, {
            "ErrorCode": 406,
            "Message": "You tried to send to recipient(s) that have been marked as inactive. "
            f"Found inactive addresses: {message.get('To', '')}. Inactive recipients are ones "
            "that have generated a hard bounce, a spam complaint, or a manual suppression.",
        }
    assert isinstance(answer, int)
    if answer >= 300:
        return answer, {"ErrorCode": 100, "Message": f"Stub provider answered {answer}."}
    return 200, {
        "To": message.get("To", ""),
        "SubmittedAt": "2026-01-15T10:00:00.0000000-05:00",
        "MessageID": message_id,
        "ErrorCode": 0,
        "Message": "OK",
    }


def twilio_answer(answer: Answer, fields: dict[str, str], sid: str) -> tuple[int, Any]:
    if answer in (REJECTED, DEAD_ADDRESS):
        code = 21606 if answer == REJECTED else 21211
        return 400, {"code": code, "message": f"Stub error {code}", "status": 400}
    assert isinstance(answer, int)
    if answer >= 300:
        return answer, {"code": 20500 if answer >= 500 else answer, "message": "Stub error",
                        "status": answer}  # fmt: skip
    return 201, {
        "sid": sid,
        "status": "queued",
        "to": fields.get("To", ""),
        "from": fields.get("From"),
        "body": fields.get("Body", ""),
        "num_segments": "1",
    }


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        provider = self.server.provider
        if path == "/email":
            message = json.loads(raw)
            self.answer(*provider.postmark_send(message))
        elif path == "/email/batch":
            answers = [provider.postmark_send(message) for message in json.loads(raw)]
            # Postmark answers a batch 200 with one result per message.
            self.answer(200, [body for _, body in answers])
        elif path.startswith("/2010-04-01/Accounts/") and path.endswith("/Messages.json"):
            fields = {key: values[0] for key, values in parse_qs(raw.decode()).items()}
            self.answer(*provider.twilio_send(fields))
        else:
            self.answer(404, {"message": f"the stub provider has no {path}"})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/messages/outbound":
            self.answer(404, {"message": f"the stub provider has no {url.path}"})
            return
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        found = self.server.provider.postmark_search(query.get("metadata_intervention_id", ""))
        self.answer(200, {"TotalCount": len(found), "Messages": found[: int(query["count"])]})

    def answer(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        # A sender killed mid-call (the worker fault tests) has closed its end.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
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
    """Records received messages; ``scripted`` answers the next sends, ``delay`` slows them."""

    def __init__(self, port: int = 0, delay: float = 0.0):
        self.received: list[dict[str, Any]] = []
        self.scripted: list[Answer] = []
        self.delay = delay
        # Postmark's search finds what it accepted: {intervention id: message id}.
        self.accepted: dict[str, str] = {}
        self.server = _Server(("127.0.0.1", port), _Handler)
        self.server.provider = self
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._lock = threading.Lock()

    def environment(self) -> dict[str, str]:
        """Environment for a real engine process to send email and SMS here."""
        return {
            "EMAIL_TRANSPORT": "anymail",
            "EMAIL_ESP": "postmark",
            "POSTMARK_API_URL": f"{self.url}/",
            "POSTMARK_SERVER_TOKEN": "stub-postmark-token",
            "SMS_TRANSPORT": "twilio",
            "TWILIO_API_BASE_URL": self.url,
            "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
            "TWILIO_AUTH_TOKEN": "stub-twilio-token",
            "TWILIO_FROM_NUMBER": "+15005550006",
            "TWILIO_MESSAGING_SERVICE_SID": "",
        }

    def postmark_send(self, message: dict[str, Any]) -> tuple[int, Any]:
        intervention_id = str((message.get("Metadata") or {}).get("intervention_id", ""))
        answer = self._receive(intervention_id, message.get("To", ""), "email", message)
        message_id = f"stub-{intervention_id}"
        status, body = postmark_answer(answer, message, message_id)
        if status == 200:
            with self._lock:
                self.accepted[intervention_id] = message_id
        return status, body

    def postmark_search(self, intervention_id: str) -> list[dict[str, Any]]:
        with self._lock:
            message_id = self.accepted.get(intervention_id)
        if message_id is None:
            return []
        return [{"MessageID": message_id, "Metadata": {"intervention_id": intervention_id},
                 "Status": "Sent"}]  # fmt: skip

    def twilio_send(self, fields: dict[str, str]) -> tuple[int, Any]:
        # Our id rides in the status callback URL (notifications.transports.sms).
        callback = parse_qs(urlsplit(fields.get("StatusCallback", "")).query)
        intervention_id = callback.get("intervention", [""])[0]
        answer = self._receive(intervention_id, fields.get("To", ""), "sms", fields)
        return twilio_answer(answer, fields, "SM" + uuid.uuid4().hex)

    def _receive(self, intervention_id: str, to: str, channel: str, payload: Any) -> Answer:
        """Record the request, then take the next scripted answer (after ``delay``): what
        the provider received is counted even if the sender dies before the answer."""
        with self._lock:
            self.received.append(
                {"id": intervention_id, "to": to, "channel": channel, "payload": payload}
            )
            answer = self.scripted.pop(0) if self.scripted else 200
        if self.delay:
            time.sleep(self.delay)
        return answer

    def start(self) -> "StubProvider":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
