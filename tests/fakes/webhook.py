"""A webhook receiver for the tests: a real HTTP server on 127.0.0.1 that checks Persona's signature."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = "test-webhook-secret"


class Receiver:
    """A webhook receiver: checks each call's signature; answers 503 to the first `fail_first` calls,
    and `reject` (a status) to calls whose customer is in `reject_customers`."""

    def __init__(self, fail_first: int = 0, reject_customers: frozenset[str] = frozenset()) -> None:
        self.reject_customers = set(reject_customers)
        self.calls: list[dict] = []
        self.bad_signatures = 0
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                from serving.triggers import verify

                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(
                    SECRET,
                    timestamp=self.headers["X-Persona-Timestamp"],
                    body=body,
                    signature=self.headers["X-Persona-Signature"],
                )
                if not ok:
                    receiver.bad_signatures += 1
                    self.send_response(401)
                elif json.loads(body)["customer_id"] in receiver.reject_customers:
                    self.send_response(422)
                elif receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                else:
                    receiver.calls.append(json.loads(body))
                    self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
