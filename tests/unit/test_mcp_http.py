"""The HTTP server as a user runs it (`op-dbus mcp --http`, its own process): the token,
Host and Origin checks, bounded bodies, and where it refuses to listen.

The server talks to no host here: every request below is answered (or refused) before a
tool would ask the API, except `tools/list`, which needs none."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "pytest", "version": "1"},
    },
}
ACCEPT = {"accept": "application/json, text/event-stream"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "OPDBUS_DATA_DIR": str(data_dir),
        "OPDBUS_SYSTEM_BUS": "unix:path=/nonexistent/op-dbus-test-bus",
        "OPDBUS_OVSDB": "unix:/nonexistent/db.sock",
    }


def op_dbus(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "op_dbus", *args],
        env=environment(data_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )


class Server:
    def __init__(self, data_dir: Path, port: int, ca: Path | None) -> None:
        self.data_dir = data_dir
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{port}"
        self.verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=ca) if ca else True
        """TLS: the server's self-signed certificate is the one trusted CA."""
        self.http = httpx2.Client(verify=self.verify)
        self.token = op_dbus(data_dir, "mcp", "token").stdout.strip()

    def post(self, body: Any = INIT, **headers: str) -> httpx2.Response:
        return self.http.post(f"{self.url}/mcp", json=body, headers={**ACCEPT, **headers})

    def bearer(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (PEM files)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(params=["http", "https"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    tls: list[str] = []
    cert = None
    if request.param == "https":
        cert, key = self_signed(tmp_path)
        tls = ["--tls-cert", str(cert), "--tls-key", str(key)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "op_dbus", "mcp", "--http", f"127.0.0.1:{port}", *tls],
        env=environment(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the server did not start listening"
                time.sleep(0.05)
        yield Server(tmp_path, port, cert)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_no_token_and_a_wrong_token_are_401(server: Server) -> None:
    missing = server.post()
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert server.post(authorization="Bearer not-the-token").status_code == 401
    assert server.post(authorization=f"Basic {server.token}").status_code == 401
    assert server.post(**server.bearer()).status_code == 200


def test_a_foreign_host_is_refused_and_a_foreign_origin_is_403(server: Server) -> None:
    rebound = server.post(host="attacker.example:9573", **server.bearer())
    assert rebound.status_code == 421
    assert server.post(origin="http://attacker.example", **server.bearer()).status_code == 403
    assert server.post(origin="null", **server.bearer()).status_code == 403
    same = server.post(origin=server.url, **server.bearer())
    assert same.status_code == 200
    assert server.post(host="localhost", **server.bearer()).status_code == 200


def test_request_bodies_are_bounded(server: Server) -> None:
    big = {**INIT, "padding": "x" * (2 * 1024 * 1024)}
    assert server.post(big, **server.bearer()).status_code == 413


def test_the_token_file_is_private_and_stable_until_rotated(server: Server) -> None:
    path = server.data_dir / "mcp.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert op_dbus(server.data_dir, "mcp", "token").stdout.strip() == server.token
    rotated = op_dbus(server.data_dir, "mcp", "token", "--rotate").stdout.strip()
    assert rotated != server.token and len(rotated) >= 32
    assert server.post(**server.bearer()).status_code == 401  # the old one no longer opens
    assert server.post(authorization=f"Bearer {rotated}").status_code == 200


async def test_the_sdk_client_lists_the_tools_over_http(server: Server) -> None:
    http = httpx2.AsyncClient(headers=server.bearer(), verify=server.verify)
    async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        refused = await client.call_tool("apply_plan", {"plan_id": "abc"})
    assert {"query_state", "plan", "apply_plan", "confirm"} <= names
    assert refused.is_error
    assert refused.structured_content["error"]["kind"] == "AccessDenied"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--http", "0.0.0.0:19999", "--insecure-no-auth"], "only on a loopback address"),
        (["--http", "19999", "--insecure-no-auth", "--allow-write"], "read-only"),
        (["--http", "127.0.0.1:99999"], "port must be"),
        (["--http", "example.org:9573"], "not an IP address"),
        (["--http", "9573", "--tls-cert", "/nonexistent.pem"], "go together"),
    ],
)
def test_unsafe_or_wrong_listen_options_exit_2(
    tmp_path: Path, args: list[str], needle: str
) -> None:
    done = op_dbus(tmp_path, "mcp", *args)
    assert done.returncode == 2, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def test_a_world_readable_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mcp.token"
    path.write_text("a" * 43 + "\n")
    path.chmod(0o644)
    done = op_dbus(tmp_path, "mcp", "--http", str(free_port()))
    assert done.returncode == 2
    assert "readable by others" in done.stderr


def test_the_login_cookie_opens_the_page_and_never_the_mcp_endpoint(server: Server) -> None:
    assert server.http.get(f"{server.url}/").status_code == 303  # to the login form
    wrong = server.http.post(f"{server.url}/login", data={"token": "guess"})
    assert wrong.status_code == 401 and "opdbus_mcp" not in wrong.headers.get("set-cookie", "")
    login = server.http.post(f"{server.url}/login", data={"token": server.token})
    assert login.status_code == 303
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    jar = httpx2.Client(verify=server.verify, cookies={"opdbus_mcp": server.token})
    page = jar.get(f"{server.url}/")
    assert page.status_code == 200 and "EventSource" in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert jar.get(f"{server.url}/mcp", headers=ACCEPT).status_code == 401
    assert server.post(cookie=f"opdbus_mcp={server.token}").status_code == 401
