"""A real Google Cloud Storage JSON API on loopback, for testing the DVC remote.

``GcsEmulator`` runs gcp-storage-emulator (PyPI) as a subprocess on 127.0.0.1 at a
free port, keeping its objects on disk in ``data_dir`` so that a restart on the same
port and directory serves the same bucket again (the fault test relies on that).

The port it answers on is a proxy's, in the same subprocess (this file run as a script),
that passes every request to the emulator with one fix: gcsfs sends uploads under 50 MiB as
multipart/related bodies with bare-LF line breaks, and the emulator parses them with the
email package, which reads a payload ending in CR + the LF before the closing boundary as a
CRLF and stores the object one byte short. ``split_lf_multipart`` splits such bodies on their
exact ``LF--boundary`` delimiter, and the proxy sends them on framed with CRLFs
(``crlf_framed``), which the emulator reads right. Only the emulator's documented interface
(``create_server``) and HTTP are used. Whether real GCS reads LF framing the same way is not
known here; ``verify = true`` on the remote makes ``dvc pull`` reject any object whose
content does not match its hash.

``dvc`` runs a DVC command in a repository with the environment the remote needs;
``point_remote_at`` overrides the ``gcs`` remote of one clone in its git-ignored
``.dvc/config.local``, so nothing about the emulator is ever committed.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import hashlib
import http.client
import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
REMOTE_NAME = "gcs"
# What DVC prints when all is well.
UP_TO_DATE = "Data and pipelines are up to date."
IN_SYNC = f"Cache and remote '{REMOTE_NAME}' are in sync."
FILES_PUSHED = re.compile(r"(\d+) files? pushed")
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
# The directory inside data_dir where the emulator keeps the objects (its STORAGE_DIR default).
EMULATOR_STORAGE_DIR = ".cloudstorage"


def dvc_env() -> dict[str, str]:
    """The environment of every dvc call: gcsfs otherwise waits 60 s on a gRPC probe per call."""
    env = dict(os.environ)
    env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def dvc(
    repo: Path, *args: str, timeout: float = 120.0, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run ``dvc ARGS`` in ``repo`` (stdout and stderr captured as text), bounded by ``timeout``.

    With ``check`` a non-zero exit raises AssertionError showing DVC's output.
    """
    from tests.support.helpers import run_command  # here, not at the top: this file also runs as the emulator's script

    return run_command([sys.executable, "-m", "dvc", *args], repo, env=env or dvc_env(), timeout=timeout, check=check)


def git_clone(source: Path, dest: Path) -> Path:
    """``git clone`` a local repository (its commits only: no DVC cache, no config.local)."""
    subprocess.run(["git", "clone", "-q", str(source), str(dest)], check=True, capture_output=True)
    return dest


def file_digests(root: Path, paths: list[str] | None = None) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (or under each of ``paths`` inside it), by relative path."""
    digests = {}
    for top in [root / p for p in paths] if paths is not None else [root]:
        files = [top] if top.is_file() else sorted(f for f in top.rglob("*") if f.is_file())
        for file in files:
            digests[file.relative_to(root).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def fresh_clone(project: Path, dest: Path, endpoint: str, url: str) -> Path:
    """A new git clone (no DVC cache) with the gcs remote pointed at ``url`` on ``endpoint``."""
    git_clone(project, dest)
    point_remote_at(dest, url, endpoint)
    return dest


def cache_dir(repo: Path) -> Path:
    """The DVC cache the repository uses (its own, or the one config.local points it at)."""
    return Path(dvc(repo, "cache", "dir").stdout.strip())


def start_dvc(repo: Path, *args: str) -> subprocess.Popen:
    """Start ``dvc ARGS`` in ``repo`` in the background (stdout and stderr piped)."""
    return subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=repo,
        env=dvc_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Wait at most ``timeout`` seconds for a process from start_dvc; kill it and fail if it hangs."""
    import pytest

    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"{' '.join(process.args[2:])} still running after {timeout:.0f} s")


def count_pushed(dvc_output: str) -> int:
    """N from DVC's 'N files pushed' (0 when it pushed nothing)."""
    match = FILES_PUSHED.search(dvc_output)
    return int(match.group(1)) if match else 0


def error_lines(dvc_stderr: str) -> list[str]:
    return [line for line in dvc_stderr.splitlines() if line.startswith("ERROR:")]


def point_remote_at(repo: Path, url: str, endpoint: str, remote: str = REMOTE_NAME) -> None:
    """Point ``remote`` of this clone at ``url`` served by ``endpoint``, in .dvc/config.local only."""
    dvc(repo, "remote", "modify", "--local", remote, "url", url)
    dvc(repo, "remote", "modify", "--local", remote, "endpointurl", endpoint)
    dvc(repo, "remote", "modify", "--local", remote, "allow_anonymous_login", "true")


def split_lf_multipart(body: bytes, boundary: str) -> dict | None:
    """Split a two-part multipart/related upload framed with bare LF line breaks.

    Returns the emulator's upload fields (meta, content, content-type), or None when the
    body is not framed that way (CRLF framing is unambiguous, and the emulator reads it right).
    """
    delimiter = b"--" + boundary.encode()
    media_start = body.find(b"\n" + delimiter + b"\n")
    media_end = body.rfind(b"\n" + delimiter + b"--")
    if not body.startswith(delimiter + b"\n") or not 0 < media_start < media_end:
        return None
    meta_part = body[len(delimiter) + 1 : media_start]
    media_part = body[media_start + len(delimiter) + 2 : media_end]
    _, _, meta = meta_part.partition(b"\n\n")
    media_headers, _, content = media_part.partition(b"\n\n")
    return {
        "meta": json.loads(meta),
        "content": content,
        "content-type": email.message_from_bytes(media_headers + b"\n\n").get_content_type(),
    }


UPLOAD_DELAY_VARIABLE = "GENRECLF_TEST_EMULATOR_UPLOAD_DELAY_S"  # GcsEmulator.upload_delay_s


def crlf_framed(body: bytes, content_type: str) -> tuple[bytes, str]:
    """An LF-framed multipart/related upload framed again with CRLF line breaks, under a boundary
    that its parts do not contain, and its new Content-Type; any other body unchanged."""
    header = email.message.Message()
    header["Content-Type"] = content_type
    old = header.get_param("boundary") if content_type.startswith("multipart/related") else None
    upload = split_lf_multipart(body, old) if old else None
    if upload is None:
        return body, content_type
    new = "crlf-" + hashlib.sha256(body).hexdigest()  # a body holding its own SHA-256: not a worry
    delimiter = b"--" + new.encode()
    framed = b"".join(
        (
            delimiter + b"\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
            json.dumps(upload["meta"]).encode() + b"\r\n",
            delimiter + b"\r\nContent-Type: " + upload["content-type"].encode() + b"\r\n\r\n",
            upload["content"] + b"\r\n" + delimiter + b"--\r\n",
        )
    )
    return framed, f'multipart/related; boundary="{new}"'


# Not passed on between the client, the proxy and the emulator: each connection's own.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


class ReframingHandler(http.server.BaseHTTPRequestHandler):
    """Passes each request to the emulator (``server.upstream``) and its answer back, an upload
    framed with bare LFs framed again with CRLFs (``crlf_framed``), after ``server.upload_delay_s``
    for each request with a body. One request at a time and one request a connection (HTTP/1.0),
    as the emulator serves them."""

    def log_message(self, format, *args):  # keep the log quiet
        pass

    def do_GET(self):
        body = self._read_body()
        if body:
            time.sleep(self.server.upload_delay_s)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP | {"content-length"}}
        if body and not self.headers.get("Content-Encoding"):
            body, headers["Content-Type"] = crlf_framed(body, self.headers.get("Content-Type") or "")
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=120)
        try:
            sent = body if body or self.command in ("POST", "PUT", "PATCH") else None
            upstream.request(self.command, self.path, body=sent, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response_only(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in HOP_BY_HOP and (name.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(name, value)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def _read_body(self) -> bytes:
        if length := self.headers.get("Content-Length"):
            return self.rfile.read(int(length))
        if (self.headers.get("Transfer-Encoding") or "").lower() != "chunked":
            return b""
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # the trailer, up to its empty line
            pass
        return b"".join(chunks)


def serve_behind_proxy(argv: list[str]) -> None:
    """gcp-storage-emulator (its documented ``create_server``) on a port of its own, behind a
    ``ReframingHandler`` proxy on ``--port``; until SIGINT, then the emulator finishes the request
    it is serving before it stops. ``argv``: --data-dir DIR --port PORT --default-bucket NAME."""
    import argparse
    import logging

    from gcp_storage_emulator.server import create_server

    parser = argparse.ArgumentParser()
    for option in ("--data-dir", "--port", "--default-bucket"):
        parser.add_argument(option, required=True)
    args = parser.parse_args(argv)
    # A command started in the background by a shell without job control (`.ci/run &`) ignores
    # SIGINT, and so does every process it starts: without this, stop() would wait out its
    # timeout and then kill the emulator (SIGKILL), which may be writing its index.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    logging.getLogger().setLevel(logging.CRITICAL)  # the emulator logs every request otherwise
    port = free_port()
    emulator = create_server(HOST, port, in_memory=False, default_bucket=args.default_bucket, data_dir=args.data_dir)
    emulator.start()
    proxy = http.server.HTTPServer((HOST, int(args.port)), ReframingHandler)
    proxy.upstream = (HOST, port)
    proxy.upload_delay_s = float(os.environ.get(UPLOAD_DELAY_VARIABLE) or 0)
    try:
        proxy.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        proxy.server_close()
        emulator.stop()


@dataclass
class GcsEmulator:
    """gcp-storage-emulator on ``HOST:port`` with ``bucket`` created, objects kept in ``data_dir``."""

    data_dir: Path
    bucket: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    upload_delay_s: float = 0.0  # seconds each request with a body waits before it is read

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        """Start the emulator (on the same port and storage as before) and wait until it answers."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"the emulator on port {self.port} is already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir.parent / f"emulator-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--default-bucket",
                self.bucket,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, UPLOAD_DELAY_VARIABLE: str(self.upload_delay_s)},
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the emulator exited with {self.process.returncode} on start; see {log.name}")
            try:
                self._get(f"/storage/v1/b/{self.bucket}")
                return
            except OSError as error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"the emulator did not answer on {self.endpoint} within {START_TIMEOUT_S:.0f} s; see {log.name}"
                    ) from error
                time.sleep(0.1)

    def stop(self) -> None:
        """Take the server down: it finishes the request it is serving, closes its port and exits.

        SIGINT, not SIGKILL: the emulator rewrites its on-disk index (``.meta``) in place after
        every upload, so a SIGKILL landing in that write leaves an empty index and a restart
        would lose the bucket. To DVC it is the same: the port is closed mid-push.
        """
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT_S)
        self.process = None

    def object_names(self, prefix: str = "") -> list[str]:
        """Names of the objects in the bucket under ``prefix``, asked through the JSON API."""
        names: list[str] = []
        token = None
        while True:
            query = f"prefix={prefix}" + (f"&pageToken={token}" if token else "")
            page = self._get(f"/storage/v1/b/{self.bucket}/o?{query}")
            names += [item["name"] for item in page.get("items", [])]
            token = page.get("nextPageToken")
            if not token:
                return sorted(names)

    def stored_object_count(self, prefix: str = "") -> int:
        """How many object files lie on disk under ``prefix`` (read without asking the server,
        so that watching uploads land does not compete with them)."""
        root = self.data_dir / EMULATOR_STORAGE_DIR / self.bucket / prefix
        if not root.is_dir():
            return 0
        return sum(len(files) for _, _, files in os.walk(root))

    def _get(self, path: str) -> dict:
        with urllib.request.urlopen(self.endpoint + path, timeout=5) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def emulated_bucket(folder: Path, bucket: str, tensorflow: bool = False) -> Iterator[GcsEmulator]:
    """An emulator serving ``bucket`` (kept under ``folder``), and this process's environment (so
    the stages' it starts) pointed at it: gcsfs through STORAGE_EMULATOR_HOST; with ``tensorflow``,
    TensorFlow's own GCS filesystem too, through tests/support/gcs_tls_proxy.py."""
    import pytest

    from genreclf.data import gcs
    from tests.support.gcs_tls_proxy import TlsProxy

    emulator = GcsEmulator(folder / "emulator", bucket)
    emulator.start()
    proxy = TlsProxy(folder / "certificates", emulator.port) if tensorflow else None
    if proxy is not None:
        proxy.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(gcs.EMULATOR_VARIABLE, emulator.endpoint)
            patch.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            patch.setenv("NO_PROXY", "127.0.0.1,localhost")  # gcsfs goes straight to the emulator
            patch.setenv("no_proxy", "127.0.0.1,localhost")
            for name, value in (proxy.environment() if proxy is not None else {}).items():
                patch.setenv(name, value)
            yield emulator
    finally:
        if proxy is not None:
            proxy.stop()
        emulator.stop()


def rewrite_on_beam(project: Path, stage: str, manifest: Path, urls: list[str]) -> str:
    """Delete the objects at ``urls``, run ``stage`` in ``project`` on the beam engine (FnApiRunner,
    2 worker processes) and check that its workers wrote the same objects again and the stage the
    same ``manifest`` bytes; the stage's log."""
    import pytest

    from genreclf.data import gcs
    from tests.support.helpers import run_stage

    before = manifest.read_bytes()
    fs = gcs.filesystem()
    contents = {url: fs.cat_file(url) for url in urls}
    fs.rm(list(urls))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GENRECLF_ENGINE", "beam")
        patch.setenv("GENRECLF_BEAM_OPTIONS", "--direct_num_workers=2")
        log = run_stage(project, stage).stderr
    assert "engine beam" in log
    assert manifest.read_bytes() == before
    assert {url: fs.cat_file(url) for url in contents} == contents
    return log


if __name__ == "__main__":
    serve_behind_proxy(sys.argv[1:])
