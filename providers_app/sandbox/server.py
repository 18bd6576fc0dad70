"""The sandbox's HTTP server: one threaded HTTP/1.1 server with keep-alive, stdlib only.

Each response is written with a single ``write`` (status line, headers and body together) on a
socket with TCP_NODELAY, so small JSON answers never wait on Nagle and delayed ACKs.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import socket
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from providers_app.sandbox.core import Request, Response
from providers_app.sandbox.engine import Sandbox

logger = logging.getLogger("providers_app.sandbox")

PREFIXES = {"clickup": "/clickup/api/v2", "trello": "/trello/1", "todoist": "/todoist/api/v1"}
MAX_BODY = 1 << 20  # Todoist documents 1 MiB request bodies (provider-apis §3.6); the same cap everywhere

_date_cache: list[Any] = [0, ""]


def _http_date() -> str:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, email.utils.formatdate(now, usegmt=True)
    return _date_cache[1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients pool connections as the adapters' Session does
    server_version = "archangel-sandbox"
    sys_version = ""
    server: _HTTPServer

    def _serve(self) -> None:
        server = self.server
        try:
            body = self._read_body()
        except ValueError as exc:
            self.close_connection = True
            self._write(Response.text(400, str(exc)))
            return
        if body is None:
            self.close_connection = True
            self._write(Response.text(413, "Request Entity Too Large"))
            return
        request = Request(self.command, self.path, self.headers, body)
        try:
            response = server.sandbox.handle(request, server.stopping)
        except Exception:  # the sandbox must answer even when a handler has a bug
            logger.exception("sandbox handler failed for %s %s", self.command, self.path)
            response = Response.text(500, "sandbox error")
        if response.reset:
            # A TCP RST instead of an answer (SO_LINGER with a zero timeout, then close).
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            return
        if response.drop:
            # "Drop the connection after the effect": the effect has happened, no answer is sent.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if response.hold:
            # A timeout: hold the answer longer than the client waits (ends early on stop()).
            server.stopping.wait(response.hold)
        self._write(response)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        raw = self.headers.get("Content-Length")
        length = int(raw) if raw and raw.strip().isdigit() else 0
        if length > MAX_BODY:
            return None
        return self.rfile.read(length) if length else b""

    def _write(self, response: Response) -> None:
        status = response.status
        reason = self.responses.get(status, ("",))[0]
        body = b"" if status in (204, 304) else response.body
        lines = [
            f"HTTP/1.1 {status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
        ]
        if status not in (204, 304):
            lines.append(f"Content-Type: {response.content_type}")
            lines.append(f"Content-Length: {len(body)}")
        lines.extend(f"{k}: {v}" for k, v in response.headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head if self.command == "HEAD" else head + body)
        except OSError:
            self.close_connection = True  # the client left (e.g. it timed out during a hold)
        if self.server.access_log:
            logger.info('%s "%s %s" %s', self.client_address[0], self.command, self.path, status)

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.access_log:
            logger.info("%s " + format, self.client_address[0], *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], sandbox: Sandbox, access_log: bool) -> None:
        self.sandbox = sandbox
        self.access_log = access_log
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    def process_request_thread(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def handle_error(self, request, client_address) -> None:
        # A client that went away (killed, timed out, reset) is not the sandbox's error.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Stop serving kept-alive connections too, so a stopped sandbox answers nothing."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class SandboxServer:
    """The provider sandbox on a real port. Tests embed it::

        server = SandboxServer().start()          # a free port on 127.0.0.1
        base = server.base_url("clickup")         # http://127.0.0.1:PORT/clickup/api/v2
        server.sandbox.set_faults({"trello": {"drop_next": 1}})
        ...
        server.stop()

    Keyword arguments other than host, port and access_log go to :class:`Sandbox`
    (credentials, limits, rate_limits, faults, seed, marker_pattern, idempotency_window,
    request_id_max, containers).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        sandbox: Sandbox | None = None,
        access_log: bool = False,
        **options: Any,
    ) -> None:
        self.sandbox = sandbox or Sandbox(**options)
        self._httpd = _HTTPServer((host, port), self.sandbox, access_log)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in str(self.host) else self.host
        return f"http://{host}:{self.port}"

    def base_url(self, provider: str) -> str:
        """The ``base_url`` a provider config needs to talk to this sandbox."""
        return self.url + PREFIXES[provider]

    def start(self) -> SandboxServer:
        """Serve in a background (daemon) thread; returns self."""
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.close_connections()
        self._httpd.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
