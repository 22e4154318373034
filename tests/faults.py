"""A fault-injecting HTTP proxy in front of the moto server.

Requests pass through unchanged until the rule says otherwise; then the proxy
answers itself: 500 InternalError by default, the way an S3 outage looks to a
client, or any other S3 error (403 AccessDenied: a role without the permission).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

Rule = Callable[[str, str], bool]  # (method, path with query) -> fail this request?


def _error_body(code: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
        "<Message>injected fault</Message></Error>"
    ).encode()


def writes(method: str, path: str) -> bool:
    """Every object write: PutObject and the multipart upload calls."""
    return method in ("PUT", "POST") and path.count("/") >= 2


def fail_upload_parts_after(count: int) -> Rule:
    """Let ``count`` UploadPart requests through, fail every later one."""
    seen = {"parts": 0}
    lock = threading.Lock()

    def rule(method: str, path: str) -> bool:
        if method != "PUT" or "partNumber=" not in path:
            return False
        with lock:
            seen["parts"] += 1
            return seen["parts"] > count

    return rule


class FirstUploadParts:
    """The first ``count`` UploadPart requests (of any upload), and no later one;
    ``fired`` says how many it picked (a test proves its fault happened)."""

    def __init__(self, count: int) -> None:
        self.count, self.fired, self._lock = count, 0, threading.Lock()

    def __call__(self, method: str, path: str) -> bool:
        if method != "PUT" or "partNumber=" not in path:
            return False
        with self._lock:
            if self.fired >= self.count:
                return False
            self.fired += 1
            return True


def first_reads_of_each_key(times: int = 1) -> Rule:
    """The first ``times`` GETs of every object key (not ranged resumes, not listings)."""
    seen: dict[str, int] = {}
    lock = threading.Lock()

    def rule(method: str, path: str) -> bool:
        if method != "GET" or "?" in path or path.count("/") < 2:
            return False
        with lock:
            seen[path] = seen.get(path, 0) + 1
            return seen[path] <= times

    return rule


@contextmanager
def faulty_proxy(
    upstream: str,
    rule: Rule = lambda *_: False,
    part_delay: float = 0.0,
    error: tuple[int, str] = (500, "InternalError"),
    cut: Rule = lambda *_: False,
    drop: Rule = lambda *_: False,
) -> Iterator[str]:
    """Proxy to ``upstream``; ``rule`` picks requests to answer with ``error`` (status,
    S3 code), ``part_delay`` slows every UploadPart (a throttled link), so a test can
    act mid-stream; ``cut`` picks responses whose body breaks off half-way (the
    connection closes after the headers promised more: a reset link); ``drop`` picks
    requests whose connection closes with no answer at all."""
    status, code = error
    answer = _error_body(code)
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if part_delay and "partNumber=" in self.path:
                time.sleep(part_delay)
            if drop(self.command, self.path):
                self.close_connection = True
                return
            if rule(self.command, self.path):
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)
                return
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            self.send_response(response.status)
            head = self.command == "HEAD"
            for key, value in response.getheaders():
                dropped = ("transfer-encoding", "connection") + (
                    () if head else ("content-length",)
                )
                if key.lower() not in dropped:
                    self.send_header(key, value)
            if not head:
                self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if cut(self.command, self.path) and len(payload) > 1:
                self.wfile.write(payload[: len(payload) // 2])
                self.close_connection = True
            else:
                self.wfile.write(payload)
            conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _relay

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def breaking_link(
    port: int, after_bytes: int, cuts: int = 1, *, to_server: bool = False
) -> Iterator[int]:
    """A TCP relay to ``127.0.0.1:port`` that resets the first ``cuts`` connections to
    carry more than ``after_bytes`` from the server (the COPY streams of a backup, not
    its small sessions), or to it with ``to_server`` (a restore's): a network
    interruption, with the server itself still up. Yields the relay's port."""
    listener = socket.create_server(("127.0.0.1", 0))
    state = {"cuts": cuts}
    lock = threading.Lock()

    def reset(*sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: the close sends RST, as a dropped link or a NAT timeout does;
                # shutdown first, or the other pump's recv() would keep the socket open.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def pump(source: socket.socket, sink: socket.socket, counted: bool):
        carried = 0
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                carried += len(data) if counted else 0
                if carried > after_bytes:
                    with lock:
                        cut, state["cuts"] = state["cuts"] > 0, state["cuts"] - 1
                    if cut:
                        reset(source, sink)
                        return
                    counted = False
        except OSError:
            return
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)  # an orderly end passes on as one

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", port))
            for source, sink, counted in (
                (client, server, to_server),
                (server, client, not to_server),
            ):
                threading.Thread(target=pump, args=(source, sink, counted), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
