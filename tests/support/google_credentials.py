"""Google application default credentials for tests, from a token endpoint on loopback.

    with loopback_credentials(tmp_path) as tokens:
        ...  # google.auth.default() finds credentials at once
    tokens.refreshes   # the access tokens the server handed out

Where no credentials can be found, a client that looks for them (Beam's GCS IO: four tries,
backing off for about 25 s) waits before it connects anonymously. This gives it credentials
through google-auth's public interface instead: a service account key file (a new RSA key),
named by GOOGLE_APPLICATION_CREDENTIALS, whose ``token_uri`` is a server on 127.0.0.1 that
answers every token request with a fixed access token. (An ``authorized_user`` file would not
do: google-auth sends its refreshes to Google's own endpoint whatever the file says.) The GCS
emulator ignores the token it is then sent.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

ACCESS_TOKEN = "loopback-test-token"
CREDENTIALS_VARIABLE = "GOOGLE_APPLICATION_CREDENTIALS"


class TokenHandler(http.server.BaseHTTPRequestHandler):
    """Answers every POST (an OAuth 2.0 token request) with ACCESS_TOKEN, valid for an hour."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.refreshes += 1


def new_private_key() -> str:
    """A new 2048-bit RSA private key, PEM-encoded (PKCS #8): what signs the token requests."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


@contextlib.contextmanager
def loopback_credentials(folder: Path) -> Iterator[http.server.ThreadingHTTPServer]:
    """GOOGLE_APPLICATION_CREDENTIALS set, for the block, to a file in ``folder`` whose tokens come
    from a server on 127.0.0.1; yields the server (``refreshes``: the tokens it has handed out)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    server.refreshes = 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    file = folder / "service_account_key.json"
    info = {
        "type": "service_account",
        "project_id": "loopback-test",
        "private_key_id": "loopback-test-key",
        "private_key": new_private_key(),
        "client_email": "loopback-test@loopback-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"http://127.0.0.1:{server.server_address[1]}/token",
    }
    file.write_text(json.dumps(info))
    before = os.environ.get(CREDENTIALS_VARIABLE)
    os.environ[CREDENTIALS_VARIABLE] = str(file)
    try:
        yield server
    finally:
        if before is None:
            os.environ.pop(CREDENTIALS_VARIABLE, None)
        else:
            os.environ[CREDENTIALS_VARIABLE] = before
        server.shutdown()
        server.server_close()
        thread.join()
