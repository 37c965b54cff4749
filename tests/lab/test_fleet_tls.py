"""`op-dbus fleet` against a real etcd that speaks TLS and has auth on: the options pass
through (`--etcd-cacert`, `--etcd-user`, `--etcd-password-file`), and a wrong CA or missing
credentials are refused with our own messages, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from op_dbus.lab.etcd import EtcdCluster, etcd_cluster


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.crt"),
            "-subj", f"/CN={name}", "-days", "1")  # fmt: skip


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    d = tmp_path_factory.mktemp("etcd-tls")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
            "-subj", "/CN=etcd")  # fmt: skip
    (d / "san.cnf").write_text("subjectAltName=IP:10.77.0.1\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.crt"),
            "-days", "1", "-extfile", str(d / "san.cnf"))  # fmt: skip
    with etcd_cluster(f"ft{os.getpid()}", size=1, tls=d) as cluster:
        cluster.etcdctl("user", "add", "root:s3cret-pw")
        cluster.etcdctl("auth", "enable")
        cluster.etcdctl_auth = ("--user=root:s3cret-pw",)
        (d / "password").write_text("s3cret-pw\n")
        yield cluster


def fleet(cluster: EtcdCluster, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "op_dbus", "fleet", "--etcd", cluster.endpoints, *args]
    return subprocess.run(cluster.exec_argv(*argv), capture_output=True, text=True, timeout=120)


def test_tls_and_auth_pass_through(tls_cluster: EtcdCluster, tmp_path: Path) -> None:
    assert tls_cluster.tls is not None
    d = tls_cluster.tls
    creds = ["--etcd-cacert", str(d / "ca.crt"), "--etcd-user", "root",
             "--etcd-password-file", str(d / "password")]  # fmt: skip
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"net": {"interfaces": [{"name": "br0", "type": "ovs-bridge"}]}}))
    done = fleet(tls_cluster, *creds, "put", str(state), "--host", "h1", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    stored = tls_cluster.etcdctl("get", "/op-dbus/v1/desired/hosts/h1", "--print-value-only")
    assert json.loads(stored.stdout)["plugins"]["net"]["interfaces"][0]["name"] == "br0"
    done = fleet(tls_cluster, *creds, "status", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["hosts"][0]["host"] == "h1"


def test_a_wrong_ca_or_no_credentials_are_refused(tls_cluster: EtcdCluster) -> None:
    assert tls_cluster.tls is not None
    d = tls_cluster.tls
    wrong_ca = fleet(tls_cluster, "--etcd-cacert", str(d / "other-ca.crt"), "status")
    assert wrong_ca.returncode == 6, wrong_ca.stderr
    assert "does not answer" in wrong_ca.stderr
    no_user = fleet(tls_cluster, "--etcd-cacert", str(d / "ca.crt"), "status")
    assert no_user.returncode == 2 and "--etcd-user" in no_user.stderr, no_user.stderr
    (d / "bad").write_text("not-the-password\n")
    bad = fleet(tls_cluster, "--etcd-cacert", str(d / "ca.crt"), "--etcd-user", "root",
                "--etcd-password-file", str(d / "bad"), "status")  # fmt: skip
    assert bad.returncode == 2 and "refused the login" in bad.stderr, bad.stderr
    for result in (wrong_ca, no_user, bad):  # no traceback, no exception class names
        assert "Traceback" not in result.stderr + result.stdout
        assert "Error:" not in result.stderr
