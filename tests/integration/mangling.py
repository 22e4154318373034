"""An HTTP proxy in front of the moto server that damages GET response bodies:
bytes corrupted in transport, after S3 stored them intact."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def flip_middle_byte(body: bytes) -> bytes:
    """Same length, one bit different: only a checksum can tell."""
    if not body:
        return body
    damaged = bytearray(body)
    damaged[len(damaged) // 2] ^= 0x01
    return bytes(damaged)


@contextmanager
def mangling_proxy(
    upstream: str, mangle: Callable[[bytes], bytes], *, min_size: int = 4096
) -> Iterator[str]:
    """Proxy to ``upstream``; GET bodies of at least ``min_size`` bytes pass ``mangle``."""
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            if self.command == "GET" and response.status == 200 and len(payload) >= min_size:
                payload = mangle(payload)
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
