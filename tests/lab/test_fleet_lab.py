"""Fleet mode against a real 3-member etcd cluster and three lab hosts running the agent.

Each test builds on the fleet the module set up (they run in file order); each checks what
the agents did with the stock tools (`ovs-vsctl` in each host's netns, `etcdctl`).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from typing import Any

from fleet_fixtures import (
    HOSTS,
    Fleet,
    applied,
    fleet_fixture,  # noqa: F401 (the module's fixture `fleet`)
)

from op_dbus.ledger.store import DB_NAME, Ledger


def uplink(index: int, *extra: dict[str, Any]) -> dict[str, Any]:
    """A host's own state: its uplink bridge with eth0, an address and the lab's gateway."""
    bridge = {
        "name": "ovsbr0",
        "type": "ovs-bridge",
        "ports": ["eth0"],
        "ipv4": {
            "enabled": True,
            "dhcp": False,
            "address": [{"ip": f"192.168.1.{10 + index}", "prefix": 24}],
            "gateway": "192.168.1.1",
        },
    }
    return {"version": 1, "plugins": {"net": {"interfaces": [bridge, *extra]}}}


def bridge(name: str) -> dict[str, Any]:
    return {"name": name, "type": "ovs-bridge", "ports": []}


def test_put_per_host_converges(fleet: Fleet) -> None:
    for index, name in enumerate(HOSTS, 1):
        done = fleet.cli("put", fleet.write(f"{name}.json", uplink(index)), "--host", name)
        assert done.returncode == 0, done.stderr
    status = fleet.wait(applied(*HOSTS), "every host applied its own state")
    for index, name in enumerate(HOSTS, 1):
        host = fleet.hosts[name]
        assert "ovsbr0" in host.bridges()
        assert host.vsctl("list-ports", "ovsbr0").stdout.split() == ["eth0"]
        addresses = subprocess.run(
            host.lab.exec_argv(["ip", "-j", "addr", "show", "dev", "ovsbr0"]),
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        ips = [a["local"] for link in json.loads(addresses.stdout) for a in link["addr_info"]]
        assert f"192.168.1.{10 + index}" in ips
        reported = fleet.etcd_json(f"/op-dbus/v1/status/{name}")
        assert reported["applied_revision"] == status[name]["etcd_revision"]
        assert reported["exit_code"] == 0
        assert status[name]["alive"] is True
        assert any("gateway 192.168.1.1" in c["check"] and c["ok"] for c in reported["probe"])
    table = fleet.cli("status")
    assert table.returncode == 0 and all(name in table.stdout for name in HOSTS)


def test_change_converges_with_one_etcd_member_killed(fleet: Fleet) -> None:
    fleet.cluster.kill_member(1)
    try:
        doc = uplink(1, bridge("brk1"))
        done = fleet.cli("put", fleet.write("h1-k.json", doc), "--host", "h1")
        assert done.returncode == 0, done.stderr
        fleet.wait(applied("h1"), "h1 applied with member 1 down")
        assert "brk1" in fleet.hosts["h1"].bridges()
        assert "brk1" not in fleet.hosts["h2"].bridges()
    finally:
        fleet.cluster.start_member(1)
        fleet.cluster.wait_healthy()


def test_rollout_halts_where_a_probe_fails(fleet: Fleet) -> None:
    done = fleet.cli("join", "web", *HOSTS)
    assert done.returncode == 0, done.stderr
    fleet.wait(applied(*HOSTS), "joining a group without a state changes nothing")
    h2 = fleet.hosts["h2"]
    gateway_link = ["ip", "-n", h2.lab.upstream_netns, "link", "set", "gw0"]
    subprocess.run([*gateway_link, "down"], check=True)  # h2 loses its gateway
    try:
        doc = {"version": 1, "plugins": {"net": {"interfaces": [bridge("brweb")]}}}
        done = fleet.cli(
            "rollout", fleet.write("web.json", doc), "--group", "web", "--max-unavailable", "1",
            "--timeout", "120", "--json",
        )  # fmt: skip
    finally:
        subprocess.run([*gateway_link, "up"], check=True)
    assert done.returncode == 4, done.stdout + done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "halted"
    conditions = {h: c["condition"] for h, c in record["hosts"].items()}
    assert conditions == {"h1": "Available", "h2": "Failed", "h3": "Pending"}
    assert "gateway 192.168.1.1" in record["hosts"]["h2"]["message"]
    assert "brweb" in fleet.hosts["h1"].bridges()
    assert "brweb" not in h2.bridges()  # rolled itself back
    assert "brweb" not in fleet.hosts["h3"].bridges()  # never released
    assert "ovsbr0" in h2.bridges()  # its own state stays
    status = fleet.status()
    assert status["h2"]["exit_code"] == 4 and status["h2"]["state"] == "failed"
    stored = fleet.etcd_json(f"/op-dbus/v1/rollouts/{record['id']}")
    assert stored["status"] == "halted"
    assert fleet.etcd_json("/op-dbus/v1/desired/groups/web") is None  # the group never took it
    # with the gateway back, the next rollout completes and becomes the group's own state
    done = fleet.cli(
        "rollout", fleet.write("web.json", doc), "--group", "web", "--max-unavailable", "2",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "complete"
    assert {c["condition"] for c in record["hosts"].values()} == {"Available"}
    assert all("brweb" in fleet.hosts[h].bridges() for h in HOSTS)
    assert fleet.etcd_json("/op-dbus/v1/desired/groups/web") == doc
    left = fleet.cluster.etcdctl("get", "--prefix", "--keys-only", "/op-dbus/v1/desired/rollouts/")
    assert left.stdout.strip() == ""
    fleet.wait(applied(*HOSTS), "hosts take the group's state (nothing to change)")
    history = json.loads(fleet.cli("history", "--group", "web", "--json", check=True).stdout)
    assert [r["status"] for r in history["rollouts"]] == ["complete", "halted"]
    assert len(history["versions"]) == 1


def ledger_size(host: Any) -> int:
    with Ledger.open(host.lab.data_dir, readonly=True) as ledger:
        return ledger.size()


def test_killed_agent_shows_dead_then_resumes_without_reapplying(fleet: Fleet) -> None:
    h3 = fleet.hosts["h3"]
    before = fleet.status()["h3"]
    size = ledger_size(h3)
    h3.stop_agent(signal.SIGKILL)
    fleet.wait(lambda s: s["h3"]["alive"] is False, "h3's lease lapses", timeout=60)
    assert fleet.cluster.etcdctl("get", "/op-dbus/v1/alive/h3").stdout == ""
    h3.start_agent()
    after = fleet.wait(lambda s: s["h3"]["alive"] is True, "h3 back")
    after = fleet.wait(applied("h3"), "h3 resumed")
    assert after["h3"]["applied_revision"] == before["applied_revision"]
    assert ledger_size(h3) == size  # nothing applied again, nothing recorded


def test_compaction_while_an_agent_is_away(fleet: Fleet) -> None:
    h3 = fleet.hosts["h3"]
    # cut off from etcd: its watch stays at an old revision, which is then compacted
    fleet.cluster.cut(h3.index)
    try:
        fleet.wait(lambda s: s["h3"]["alive"] is False, "h3 cut off", timeout=60)
        done = fleet.cli("put", fleet.write("h3-c.json", uplink(3, bridge("brc3"))), "--host", "h3")
        assert done.returncode == 0, done.stderr
        fleet.cli("put", fleet.write("h1-c.json", uplink(1, bridge("brc1"))), "--host", "h1")
        fleet.cluster.etcdctl("compact", str(fleet.revision()))
    finally:
        fleet.cluster.cut(h3.index, up=True)
    fleet.wait(applied("h3"), "h3 converged after the compaction")
    assert "brc3" in h3.bridges()
    assert "revision" in h3.log.read_text() and "compacted" in h3.log.read_text()
    # killed while a change and a compaction happen: it reads everything again at start
    h3.stop_agent(signal.SIGKILL)
    fleet.cli("put", fleet.write("h3-d.json", uplink(3, bridge("brd3"))), "--host", "h3")
    fleet.cluster.etcdctl("compact", str(fleet.revision()))
    h3.start_agent()
    fleet.wait(applied("h3"), "h3 converged after restart")
    assert "brd3" in h3.bridges()


def test_a_half_written_state_is_reported_and_never_applied(fleet: Fleet) -> None:
    h1 = fleet.hosts["h1"]
    bridges = h1.bridges()
    half = '{"version": 1, "plugins": {"net": {"interfaces": [{"name": "brhalf", "type": "ovs-'
    fleet.cluster.etcdctl("put", "/op-dbus/v1/desired/hosts/h1", half)
    status = fleet.wait(lambda s: s["h1"]["exit_code"] == 2, "h1 reports the invalid state")
    assert status["h1"]["state"] == "invalid"
    assert "/op-dbus/v1/desired/hosts/h1" in status["h1"]["message"]
    assert h1.bridges() == bridges  # nothing applied
    done = fleet.cli("put", fleet.write("h1-ok.json", uplink(1)), "--host", "h1")
    assert done.returncode == 0, done.stderr
    fleet.wait(applied("h1"), "h1 applies the next valid state")
    assert "brc1" not in h1.bridges()  # what the new revision dropped is gone


def test_two_concurrent_puts_on_one_revision_one_refused(fleet: Fleet) -> None:
    key = "/op-dbus/v1/desired/hosts/h2"
    read = json.loads(fleet.cluster.etcdctl("get", key, "-w", "json").stdout)
    revision = read["kvs"][0]["mod_revision"]
    version = read["kvs"][0]["version"]
    files = [fleet.write(f"h2-{n}.json", uplink(2, bridge(f"brp{n}"))) for n in (1, 2)]
    admins = [
        fleet.cli_popen("put", f, "--host", "h2", "--expect-revision", str(revision)) for f in files
    ]
    results = [(a.wait(120), *a.communicate()) for a in admins]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, _, err in results if code == 2)
    assert f"changed since revision {revision}" in refused
    after = json.loads(fleet.cluster.etcdctl("get", key, "-w", "json").stdout)["kvs"][0]
    assert after["version"] == version + 1  # exactly one stored
    # without --expect-revision, a put reads the revision itself and stores
    done = fleet.cli("put", files[0], "--host", "h2")
    assert done.returncode == 0, done.stderr
    fleet.wait(applied("h2"), "h2 converged")


def test_diff_and_history_of_a_host(fleet: Fleet) -> None:
    stored = fleet.work / "h2-1.json"
    assert fleet.cli("diff", str(stored), "--host", "h2").returncode == 0
    other = fleet.write("h2-x.json", uplink(2, bridge("brdiff")))
    done = fleet.cli("diff", other, "--host", "h2")
    assert done.returncode == 3, done.stdout + done.stderr
    added = [line for line in done.stdout.splitlines() if line.startswith("+ ")]
    assert added == ['+        "name": "brdiff",'], done.stdout
    history = json.loads(fleet.cli("history", "--host", "h2", "--json", check=True).stdout)
    revisions = [v["revision"] for v in history["versions"]]
    # back to an earlier test's compaction: the two puts since, and the version it kept
    assert len(revisions) == 3 and revisions == sorted(revisions, reverse=True)
    key = "/op-dbus/v1/desired/hosts/h2"
    now = json.loads(fleet.cluster.etcdctl("get", key, "-w", "json").stdout)
    assert revisions[0] == now["kvs"][0]["mod_revision"]
    older = fleet.cluster.etcdctl("get", key, f"--rev={revisions[1]}", "-w", "json")
    assert json.loads(older.stdout)["kvs"][0]["version"] == history["versions"][1]["version"]


def truncate(data_dir: Any, size: int) -> None:
    """What an intruder with root does: cut the ledger back to `size` consistently (entries,
    stored tree, checkpoints), so that op-dbus appends to it again and it verifies locally."""
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        conn.execute("DELETE FROM entries WHERE idx >= ?", (size,))
        conn.execute("DELETE FROM nodes WHERE ((idx + 1) << level) > ?", (size,))
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (size,))
    conn.close()


def test_audit_names_a_host_whose_ledger_was_rewritten(fleet: Fleet) -> None:
    done = fleet.cli("audit", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert {h["host"] for h in json.loads(done.stdout)["hosts"]} == set(HOSTS)
    h2 = fleet.hosts["h2"]
    h2.stop_agent()
    with Ledger.open(h2.lab.data_dir, readonly=True) as ledger:
        sizes = sorted({int(note.split("\n")[1]) for note in ledger.checkpoints()})
    truncate(h2.lab.data_dir, sizes[0])
    h2.start_agent()
    doc = uplink(2, bridge("brr1"), bridge("brr2"), bridge("brr3"))
    done = fleet.cli("put", fleet.write("h2-r.json", doc), "--host", "h2")
    assert done.returncode == 0, done.stderr
    fleet.wait(applied("h2"), "h2 re-extended its ledger")
    with Ledger.open(h2.lab.data_dir, readonly=True) as ledger:
        assert ledger.verify().ok  # locally the rewritten ledger looks fine
    done = fleet.cli("audit", "--json")
    assert done.returncode == 3, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["rewritten"] == ["h2"]
    assert "h2: REWRITTEN" in fleet.cli("audit").stdout


def test_restarted_with_etcd_unreachable_it_enforces_the_last_applied_state(fleet: Fleet) -> None:
    h1 = fleet.hosts["h1"]
    done = fleet.cli("put", fleet.write("h1-m.json", uplink(1, bridge("brm1"))), "--host", "h1")
    assert done.returncode == 0, done.stderr
    fleet.wait(applied("h1"), "h1 applied brm1")
    fleet.cluster.cut(h1.index)
    try:
        h1.stop_agent()
        assert h1.vsctl("del-br", "brm1").returncode == 0  # behind its back, while it is down
        h1.start_agent()
        deadline = time.monotonic() + 60
        while "brm1" not in h1.bridges():
            assert time.monotonic() < deadline, h1.log.read_text()[-3000:]
            time.sleep(0.3)
        size = ledger_size(h1)
    finally:
        fleet.cluster.cut(h1.index, up=True)
    fleet.wait(lambda s: s["h1"]["alive"] and s["h1"]["state"] == "applied", "h1 back")
    assert ledger_size(h1) == size  # etcd's revision is the one it enforced: nothing to do
