"""Loopback servers that count what reaches them: proof that a refused statement fetched nothing."""

from __future__ import annotations

import http.server
import socket
import threading

SECRET = "TOPSECRET-do-not-leak"


class CountingHttp:
    """An HTTP server on 127.0.0.1 that answers SECRET to anything and counts the requests."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                hits.append(f"{self.command} {self.path}")
                self.send_response(200)
                self.send_header("Content-Length", str(len(SECRET) + 1))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(SECRET.encode() + b"\n")

            do_GET = do_HEAD = do_POST = do_PUT = _answer  # http.server dispatches on these names

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class CountingTcp:
    """A TCP listener on 127.0.0.1 that counts connections (remote() would dial ClickHouse's port)."""

    def __init__(self) -> None:
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
