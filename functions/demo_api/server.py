"""demo-api: the demo function of ExecGate's local instances (stdlib only).

Started FC custom-runtime style inside its instance: it listens on
``127.0.0.1:$FC_SERVER_PORT`` (what exec's ``curl`` and ``ss`` see) and on the unix
socket ``/run/fc/invoke.sock``, through which the local host forwards invocations.

Paths:
- ``/``                 a quick JSON answer (load with ``execgate invoke``);
- ``/checkout``         calls the downstream inventory service over TCP and waits for it;
                        ``?delay_ms=N`` makes it slow, ``?down=1`` unreachable (S2);
- ``/report``           CPU-heavy: ``compute_price_report`` burns CPU a profile shows (S3).

The downstream inventory service runs in this instance too, on 127.0.0.1:9100 (the
instance has its own network namespace; tcpdump on ``any`` sees the traffic to it).
"""

from __future__ import annotations

import http.client
import json
import os
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

INVOKE_SOCKET = "/run/fc/invoke.sock"
DOWNSTREAM_PORT = 9100
UNREACHABLE_PORT = 9101
DEFAULT_DELAY_MS = int(os.environ.get("DOWNSTREAM_DELAY_MS", "800"))


def compute_price_report(rounds: int) -> int:
    """Deliberately slow arithmetic: the hot function of a profile."""
    total = 0
    for i in range(rounds):
        total = (total * 31 + i * i) % 1_000_003
    return total


def call_downstream(delay_ms: int, down: bool) -> tuple[int, float]:
    port = UNREACHABLE_PORT if down else DOWNSTREAM_PORT
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", f"/inventory?delay_ms={delay_ms}")
        status = conn.getresponse().status
    finally:
        conn.close()
    return status, time.monotonic() - started


class Api(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def address_string(self) -> str:  # unix-socket peers have no address
        return "invoke"

    def log_message(self, format: str, *args: object) -> None:
        pass  # a log line per request would dominate under load

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self._handle()

    def _handle(self) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path in ("/", "/invoke"):
            self._reply(200, {"ok": True, "function": os.environ.get("FC_FUNCTION_NAME")})
        elif url.path == "/checkout":
            delay = int(query.get("delay_ms", [DEFAULT_DELAY_MS])[0])
            try:
                status, took = call_downstream(delay, query.get("down") == ["1"])
                self._reply(200, {"downstream_status": status, "seconds": round(took, 3)})
            except OSError as exc:
                self._reply(504, {"error": f"downstream failed: {exc.__class__.__name__}"})
        elif url.path == "/report":
            rounds = int(query.get("rounds", ["300000"])[0])
            self._reply(200, {"report": compute_price_report(rounds)})
        else:
            self._reply(404, {"error": "no such path"})

    def _reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Inventory(BaseHTTPRequestHandler):
    """The downstream dependency: answers after ``delay_ms``."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        delay = int(parse_qs(urlparse(self.path).query).get("delay_ms", ["0"])[0])
        time.sleep(min(delay, 30_000) / 1000)
        data = b'{"in_stock": 3}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 1024  # bursts of invocations queue instead of being refused


class TcpHTTPServer(ThreadingHTTPServer):
    request_queue_size = 1024


def main() -> None:
    port = int(os.environ.get("FC_SERVER_PORT", "9000"))
    servers: list[socketserver.BaseServer] = [
        TcpHTTPServer(("127.0.0.1", DOWNSTREAM_PORT), Inventory),
        TcpHTTPServer(("127.0.0.1", port), Api),
    ]
    if os.path.exists(os.path.dirname(INVOKE_SOCKET)):
        try:
            os.unlink(INVOKE_SOCKET)
        except FileNotFoundError:
            pass
        servers.append(UnixHTTPServer(INVOKE_SOCKET, Api))
    for server in servers[:-1]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[-1].serve_forever()


if __name__ == "__main__":
    main()
