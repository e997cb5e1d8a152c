"""A loopback HTTP server for tests: serves a directory, honours Range requests, counts bytes.

    with RangeServer(directory) as server:
        requests.get(server.url + "fma_small.zip", headers={"Range": "bytes=100-"})
        server.bytes_served["fma_small.zip"]   # body bytes sent for that file, all requests

Supports ``Range: bytes=a-b``, ``bytes=a-`` and the suffix form ``bytes=-n`` (one range
per request), answering 206 with Content-Range, or 416 with ``Content-Range: bytes */size``
when the start lies past the end. Two switches make the failures a download must survive:
``honour_ranges = False`` (answer 200 with the whole file, like a server without range
support) and ``cut_after[name] = n`` (send the headers of the full answer, then only ``n``
body bytes, then drop the connection).
"""

from __future__ import annotations

import http.server
import re
import sys
import threading
from collections import Counter
from pathlib import Path

RANGE_RE = re.compile(r"^bytes=(?P<start>\d*)-(?P<end>\d*)$")
COPY_CHUNK = 64 * 1024


class RangeRequestHandler(http.server.BaseHTTPRequestHandler):
    server: RangeServer._Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_HEAD(self):
        self._answer(send_body=False)

    def do_GET(self):
        self._answer(send_body=True)

    def _answer(self, send_body: bool) -> None:
        owner = self.server.owner
        name = self.path.split("?", 1)[0].lstrip("/")
        path = (owner.directory / name).resolve()
        if not name or owner.directory not in path.parents or not path.is_file():
            self._send_empty(404)
            return
        size = path.stat().st_size
        status, start, end = 200, 0, size - 1
        range_header = self.headers.get("Range")
        owner.record(name, range_header)
        if range_header and owner.honour_ranges:
            match = RANGE_RE.match(range_header.strip())
            if not match or (not match["start"] and not match["end"]):
                self._send_empty(400)
                return
            if not match["start"]:  # suffix range: the last n bytes
                start = max(0, size - int(match["end"]))
            else:
                start = int(match["start"])
                if match["end"]:
                    end = min(int(match["end"]), size - 1)
            if start >= size or start > end:
                self._send_empty(416, {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes" if owner.honour_ranges else "none")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if not send_body:
            return
        limit = owner.cut_after.get(name)
        to_send = length if limit is None else min(length, limit)
        with open(path, "rb") as f:
            f.seek(start)
            while to_send > 0:
                chunk = f.read(min(COPY_CHUNK, to_send))
                if not chunk:
                    break
                try:
                    self.wfile.write(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break  # the client stopped reading (e.g. remotezip closing a stream)
                to_send -= len(chunk)
                owner.count(name, len(chunk))
        if limit is not None and limit < length:
            self.close_connection = True
            self.wfile.flush()
            self.connection.shutdown(2)

    def _send_empty(self, status: int, headers: dict | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", "0")
        self.end_headers()


class RangeServer:
    """Serve ``directory`` on 127.0.0.1 at a free port, in a background thread."""

    class _Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        owner: RangeServer

        def handle_error(self, request, client_address):
            """A client that hangs up mid-transfer (tests of broken downloads) is expected: stay quiet."""
            if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
                super().handle_error(request, client_address)

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).resolve()
        self.honour_ranges = True
        self.cut_after: dict[str, int] = {}
        self.bytes_served: Counter = Counter()
        self.requests: list[tuple[str, str | None]] = []  # (file name, Range header) per request
        self._lock = threading.Lock()
        self._server = self._Server(("127.0.0.1", 0), RangeRequestHandler)
        self._server.owner = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The URL prefix of the served directory, with a trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def count(self, name: str, nbytes: int) -> None:
        with self._lock:
            self.bytes_served[name] += nbytes

    def record(self, name: str, range_header: str | None) -> None:
        with self._lock:
            self.requests.append((name, range_header))

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_served.clear()
            self.requests.clear()

    def __enter__(self) -> RangeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
