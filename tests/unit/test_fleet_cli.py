"""`op-dbus fleet` and `run --fleet` as a user meets them without an etcd: invalid input is
exit 2 naming the field, nothing contacted; no etcd answering is exit 6; no tracebacks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from test_cli import assert_clean, op_dbus


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_put_of_an_invalid_file_names_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"net": {"interfaces": [{"name": "br 0", "type": "ovs-bridge"}]}}))
    # the endpoint is never contacted: validation comes first
    done = op_dbus("fleet", "--etcd", "http://192.0.2.1:2379", "put", str(bad), "--host", "h1")
    assert done.returncode == 2
    assert "net.interfaces[0].name" in done.stderr
    assert_clean(done)


def test_put_needs_one_target(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"net": {"interfaces": [{"name": "br0", "type": "ovs-bridge"}]}}))
    for args in ([], ["--host", "h1", "--group", "g"], ["--host", "BAD/NAME"]):
        done = op_dbus("fleet", "put", str(good), *args)
        assert done.returncode == 2, done.stderr
        assert_clean(done)


def test_bad_endpoints_are_usage_errors() -> None:
    for etcd in ("ftp://x:1", "http://x:1/p", "10.0.0.1:2379"):
        done = op_dbus("fleet", "--etcd", etcd, "status")
        assert done.returncode == 2 and "--etcd" in done.stderr
        assert_clean(done)


def test_no_etcd_answering_is_exit_6() -> None:
    done = op_dbus("fleet", "--etcd", f"http://127.0.0.1:{closed_port()}", "status", "--json")
    assert done.returncode == 6, done.stdout + done.stderr
    assert json.loads(done.stdout)["exit_code"] == 6
    assert_clean(done)


def test_run_fleet_needs_a_valid_host_name() -> None:
    assert op_dbus("run", "--fleet").returncode == 2
    done = op_dbus("run", "--fleet", "--host-name", "-rf")
    assert done.returncode == 2 and "--host-name" in done.stderr
    done = op_dbus("run", "--fleet", "--host-name", "h1", "--probe-target", "example.org:80")
    assert done.returncode == 2 and "--probe-target" in done.stderr
    assert_clean(done)
