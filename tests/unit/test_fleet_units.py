"""Fleet logic without etcd: key names, endpoint options, a host's desired state from its
layers, rollout conditions, the audit of published checkpoints, probe targets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.errors import InvalidInput
from op_dbus.fleet import keys
from op_dbus.fleet.audit import audit_host
from op_dbus.fleet.desired import desired_for
from op_dbus.fleet.probe import parse_target
from op_dbus.fleet.rollout import condition
from op_dbus.fleet.store import EtcdOptions
from op_dbus.ledger.store import Ledger, encode_proof


def doc(*interfaces: dict[str, Any]) -> bytes:
    return json.dumps({"version": 1, "plugins": {"net": {"interfaces": list(interfaces)}}}).encode()


def br(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "ovs-bridge", **extra}


def names(sections: dict[str, Any]) -> list[str]:
    return [i["name"] for i in sections["net"]["interfaces"]]


def test_host_state_is_its_groups_by_name_then_its_own() -> None:
    mirror = {
        keys.member("b-group", "h1"): (b"{}", 3),
        keys.member("a-group", "h1"): (b"{}", 2),
        keys.member("a-group", "h2"): (b"{}", 9),
        keys.group_state("a-group"): (doc(br("br0", ports=["a"]), br("bra")), 4),
        keys.group_state("b-group"): (doc(br("br0", ports=["b"]), br("brb")), 5),
        keys.host_state("h1"): (doc(br("brh")), 6),
        keys.host_state("h2"): (doc(br("other")), 11),
    }
    desired = desired_for("h1", mirror)
    assert desired.valid, desired.errors
    assert names(desired.sections) == ["br0", "bra", "brb", "brh"]
    assert desired.sections["net"]["interfaces"][0]["ports"] == ["b"]  # later layer wins
    assert desired.revision == 6  # h2's keys are not h1's inputs
    assert desired.layers == [
        keys.group_state("a-group"),
        keys.group_state("b-group"),
        keys.host_state("h1"),
    ]


def test_an_invalid_layer_makes_nothing_desired() -> None:
    mirror = {
        keys.host_state("h1"): (b'{"version": 1, "plugins": {"net": {"interfaces": [', 3),
        keys.member("g", "h1"): (b"{}", 1),
        keys.group_state("g"): (doc(br("ok0")), 2),
    }
    desired = desired_for("h1", mirror)
    assert not desired.valid
    assert desired.sections == {}
    assert keys.host_state("h1") in desired.errors[0]


def test_an_invalid_field_is_named_with_its_path() -> None:
    mirror = {keys.host_state("h1"): (doc(br("bad name!")), 3)}
    desired = desired_for("h1", mirror)
    assert any("plugins.net.interfaces[0].name" in e for e in desired.errors), desired.errors


def test_a_released_host_takes_the_rollout_state_and_others_keep_the_group() -> None:
    rollout = {"id": "r1", "state": json.loads(doc(br("new0")))}
    mirror = {
        keys.member("g", "h1"): (b"{}", 1),
        keys.member("g", "h2"): (b"{}", 1),
        keys.group_state("g"): (doc(br("old0")), 2),
        keys.rollout_state("g"): (json.dumps(rollout).encode(), 5),
        keys.rollout_release("g", "h1"): (b"{}", 6),
    }
    h1, h2 = desired_for("h1", mirror), desired_for("h2", mirror)
    assert names(h1.sections) == ["new0"] and h1.revision == 6 and h1.rollouts == {"g": "r1"}
    assert names(h2.sections) == ["old0"] and h2.revision == 2 and h2.rollouts == {}
    mirror[keys.rollout_release("g", "h2")] = (b"{}", 8)  # releasing h2 leaves h1 as it was
    assert desired_for("h1", mirror).revision == 6


def test_nothing_desired() -> None:
    desired = desired_for("h1", {keys.host_state("h2"): (doc(br("x")), 3)})
    assert desired.valid and desired.sections == {} and desired.revision == 0


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, None),
        ({"desired_revision": 4, "applied_revision": 4, "exit_code": 0}, None),
        ({"desired_revision": 7, "applied_revision": 4, "exit_code": 0}, None),  # in flight
        ({"desired_revision": 7, "applied_revision": 7, "exit_code": 0}, "Available"),
        ({"desired_revision": 7, "applied_revision": 4, "exit_code": 4}, "Failed"),
        ({"desired_revision": 9, "applied_revision": 9, "exit_code": 0}, "Available"),
    ],
)
def test_rollout_condition(status: dict[str, Any] | None, expected: str | None) -> None:
    found = condition(status, 7)
    assert (found or {}).get("condition") == expected


def test_endpoints_parse() -> None:
    options = EtcdOptions.parse("http://10.0.0.1:2379,http://10.0.0.2:2380")
    assert options.target() == "ipv4:10.0.0.1:2379,10.0.0.2:2380"
    assert EtcdOptions.parse("http://etcd.example:2379").target() == "dns:///etcd.example:2379"
    assert EtcdOptions.parse("http://[fd00::1]:2379").target() == "ipv6:[fd00::1]:2379"
    with pytest.raises(InvalidInput, match="cacert"):
        EtcdOptions.parse("https://10.0.0.1:2379")
    with pytest.raises(InvalidInput, match="mix"):
        EtcdOptions.parse("https://10.0.0.1:2379,http://10.0.0.2:2379", cacert=Path("/x"))
    with pytest.raises(InvalidInput, match="go together"):
        EtcdOptions.parse("http://10.0.0.1:2379", cert=Path("/x"))


def test_endpoints_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPDBUS_ETCD", "http://10.1.1.1:2379")
    assert EtcdOptions.parse(None).endpoints == ("http://10.1.1.1:2379",)


@pytest.mark.parametrize(
    "bad",
    ["10.0.0.1:2379", "ftp://x:1", "http://x:99999", "http://a b:1", "http://x:1/path",
     "http://u@x:1", "http://x:1?q", "http://x;rm:1"],
)  # fmt: skip
def test_bad_endpoints_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="--etcd"):
        EtcdOptions.parse(bad)


@given(st.text(max_size=80))
def test_any_endpoint_text_is_parsed_or_refused(text: str) -> None:
    try:
        options = EtcdOptions.parse(text or "x")
    except InvalidInput:
        return
    assert all(u.startswith(("http://", "https://")) for u in options.endpoints)
    assert all(c.isascii() and c.isprintable() for c in options.target())


@given(st.text(max_size=40))
def test_probe_targets_are_ip_and_port_or_refused(text: str) -> None:
    try:
        host, port = parse_target(text)
    except InvalidInput:
        return
    assert 1 <= port <= 65535 and not host.startswith("-")


@pytest.mark.parametrize("name", ["", "-x", "A", "a/b", "a" * 64, "a b", "..\u00e9"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        keys.check_name(name, "host")


def published(ledger: Ledger, previous: int) -> dict[str, Any]:
    size = ledger.checkpoint_size()
    return {
        "note": ledger.latest_checkpoint(),
        "size": size,
        "from_size": previous,
        "proof": encode_proof(ledger.consistency_proof(previous, size)),
    }


def grow(data_dir: Path, tag: str, count: int = 3) -> None:
    with Ledger.open(data_dir) as ledger:
        ledger.append([{"type": "test", "tag": tag, "n": i} for i in range(count)])


def test_audit_accepts_a_growing_ledger_and_names_a_rewritten_one(tmp_path: Path) -> None:
    records = []
    for tag in ("a", "b", "c"):
        grow(tmp_path, tag)
        with Ledger.open(tmp_path, readonly=True) as ledger:
            records.append(published(ledger, records[-1]["size"] if records else 0))
            vkey = ledger.public_key()
    assert audit_host("h", records, vkey)["ok"]
    truncate(tmp_path, 3)  # back to the first checkpoint, then other entries after it
    grow(tmp_path, "forged", 9)
    with Ledger.open(tmp_path, readonly=True) as ledger:
        assert ledger.verify().ok  # it verifies on its own
        records.append(published(ledger, records[-1]["size"]))
    report = audit_host("h", records, vkey)
    assert not report["ok"]
    assert "checkpoint 4" in report["problems"][0] and "rewritten" in report["problems"][0]


def truncate(data_dir: Path, size: int) -> None:
    import sqlite3

    conn = sqlite3.connect(data_dir / "ledger.db")
    with conn:
        conn.execute("DELETE FROM entries WHERE idx >= ?", (size,))
        conn.execute("DELETE FROM nodes WHERE ((idx + 1) << level) > ?", (size,))
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (size,))
    conn.close()


def test_audit_names_a_shrunk_ledger(tmp_path: Path) -> None:
    grow(tmp_path, "a", 3)
    grow(tmp_path, "b", 2)
    with Ledger.open(tmp_path, readonly=True) as ledger:
        records, vkey = [published(ledger, 0)], ledger.public_key()
    truncate(tmp_path, 3)
    with Ledger.open(tmp_path, readonly=True) as ledger:
        records.append(published(ledger, 0) | {"from_size": 5, "proof": None})
    report = audit_host("h", records, vkey)
    assert not report["ok"] and "shrank from 5" in report["problems"][0]


def test_audit_needs_the_hosts_own_signature(tmp_path: Path) -> None:
    grow(tmp_path / "a", "a", 5)
    grow(tmp_path / "b", "b", 2)
    with Ledger.open(tmp_path / "a", readonly=True) as a, Ledger.open(tmp_path / "b") as b:
        record, other = published(a, 0), b.public_key()
    report = audit_host("h", [record], other)
    assert not report["ok"] and "signature" in report["problems"][0]
    assert audit_host("h", [record], None)["problems"][0].startswith("no signer key")
