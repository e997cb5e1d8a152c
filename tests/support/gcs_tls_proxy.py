"""A loopback HTTPS proxy that hands TensorFlow's GCS requests to the emulator.

TensorFlow's GCS filesystem (``tf.io.gfile``, ``tf.data`` on gs:// paths) has its
endpoints compiled in (https://www.googleapis.com/storage/v1/ for metadata and uploads,
https://storage.googleapis.com/ for reads) and reads no emulator variable (TF 2.21: the
``GCS_*`` variables tune caches, timeouts and retries only). Its libcurl does honour
``https_proxy`` and ``CURL_CA_BUNDLE``, and ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` stands in for
credentials. So TensorFlow is pointed at the emulator by:

- ``https_proxy`` = this proxy: it answers ``CONNECT host:443`` for those two hosts only,
  ends the TLS itself with a certificate made here for them (signed by a throwaway
  certificate authority), and passes the decrypted HTTP/1.1 bytes, unchanged, to the
  emulator's plain-HTTP port (the emulator serves both URL forms);
- ``CURL_CA_BUNDLE`` = that authority's certificate, so libcurl trusts the certificate;
- ``GOOGLE_AUTH_TOKEN_FOR_TESTING`` = any text (the emulator checks no token).

``environment()`` gives those variables. Nothing leaves 127.0.0.1: any other host is refused.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GCS_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
TOKEN_VARIABLE = "GOOGLE_AUTH_TOKEN_FOR_TESTING"
BUFFER_BYTES = 1 << 16
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"
REFUSED = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"


def _certificate(subject: str, key, issuer_name, issuer_key, hosts=(), ca=False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


def write_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway authority and a certificate for GCS_HOSTS signed by it: (authority, cert, key) files."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("genreclf test authority", ca_key, None, None, ca=True)
    leaf = _certificate(GCS_HOSTS[0], key, ca.subject, ca_key, hosts=GCS_HOSTS)
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes from ``source`` to ``sink`` until either side closes."""
    try:
        while data := source.recv(BUFFER_BYTES):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _read_head(client: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        data = client.recv(BUFFER_BYTES)
        if not data:
            break
        head += data
    return head


@dataclass
class TlsProxy:
    """The proxy on 127.0.0.1 (``port`` chosen by the system), forwarding to ``emulator_port``."""

    folder: Path
    emulator_port: int
    port: int = 0
    _server: socket.socket | None = None
    _context: ssl.SSLContext | None = None
    ca_file: Path | None = None
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self.ca_file, cert_file, key_file = write_certificates(self.folder)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert_file, key_file)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def environment(self) -> dict[str, str]:
        """What TensorFlow's GCS filesystem needs in its environment to reach the emulator."""
        proxy = f"http://127.0.0.1:{self.port}"
        return {"https_proxy": proxy, "HTTPS_PROXY": proxy, "CURL_CA_BUNDLE": str(self.ca_file), TOKEN_VARIABLE: "t"}

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _accept(self) -> None:
        while self._server is not None:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = _read_head(client).decode("latin-1")
        method, target = (head.split(" ") + ["", ""])[:2]
        if method != "CONNECT" or target.rsplit(":", 1)[0] not in GCS_HOSTS:
            client.sendall(REFUSED)
            client.close()
            return
        client.sendall(ESTABLISHED)
        try:
            secure = self._context.wrap_socket(client, server_side=True)
        except (ssl.SSLError, OSError):
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.emulator_port))
        threading.Thread(target=_pump, args=(upstream, secure), daemon=True).start()
        _pump(secure, upstream)
