"""Safe on a real host: write-ahead changes, tries that outlive their terminal, interrupts.

Real `python -m op_dbus` in the lab netns against the lab's OVS, systemd and LXC, no daemon;
the host is re-read with ovs-vsctl, busctl and `op-dbus query`, the ledger from here.
"""

from __future__ import annotations

import copy
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import systemd_units as su
from test_lxc_apply import containers, lxc_create_running, reset

from op_dbus.lab import Lab, run_in_lab
from op_dbus.ledger.store import Ledger

TRY_BRIDGE = "keepbr0"
NET_ONLY = {"net": {"interfaces": [{"name": TRY_BRIDGE, "type": "ovs-bridge", "ports": []}]}}
MULTI = {
    "systemd": {"units": {"openvswitch.service": {"enabled": True, "active_state": "active"}}},
    "net": {
        "interfaces": [
            {
                "name": "mesh",
                "type": "ovs-bridge",
                "ports": [],
                "ipv4": {"enabled": True, "address": [{"ip": "10.0.0.1", "prefix": 24}]},
            }
        ]
    },
    "lxc": {
        "containers": [
            {"id": "100", "name": "gateway", "veth": "vi100", "bridge": "mesh", "running": True}
        ]
    },
}


def opdbus(lab: Lab, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = (sys.executable, "-m", "op_dbus", "--data-dir", str(data_dir), *args)
    return run_in_lab(lab, *argv, check=False)


def bridges(lab: Lab) -> list[str]:
    return run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()


def write(tmp_path: Path, sections: dict[str, Any], name: str = "state.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(sections))
    return path


def ledger_values(data_dir: Path) -> list[dict[str, Any]]:
    with Ledger.open(data_dir, readonly=True) as ledger:
        assert ledger.verify().ok, "intents and results verify, each under a signed checkpoint"
        return [entry.value for entry in ledger.entries()]


def journal(data_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((data_dir / "pending").glob("*.json"))]


def wait_for(reached: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not reached():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.01)


@pytest.fixture
def net_lab(lab: Lab) -> Iterator[Lab]:
    run_in_lab(lab, "ovs-vsctl", "--if-exists", "del-br", TRY_BRIDGE)
    try:
        yield lab
    finally:
        run_in_lab(lab, "ovs-vsctl", "--if-exists", "del-br", TRY_BRIDGE)


def start_try_on_a_pty(lab: Lab, data_dir: Path, state: Path, seconds: int) -> tuple[Any, int]:
    """`apply --confirm-within` in a session of its own on a pseudo-terminal, up to its prompt."""
    master, slave = pty.openpty()
    argv = [sys.executable, "-m", "op_dbus", "--data-dir", str(data_dir), "apply", str(state)]
    proc = subprocess.Popen(
        lab.exec_argv([*argv, "--confirm-within", str(seconds)]),
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 60
    while b"Keep this state?" not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen.decode(errors="replace")
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            seen += os.read(master, 4096)
    return proc, master


def test_sighup_of_the_try_s_session_still_rolls_it_back(net_lab: Lab, tmp_path: Path) -> None:
    """The SSH session dropping takes the command, not the timer: the keeper rolls back."""
    data_dir = tmp_path / "data"
    proc, master = start_try_on_a_pty(net_lab, data_dir, write(tmp_path, NET_ONLY), 4)
    try:
        assert TRY_BRIDGE in bridges(net_lab), "the try took effect"
        (waiting,) = journal(data_dir)
        assert waiting["state"] == "try" and waiting["deadline"] > time.time()
        os.killpg(proc.pid, signal.SIGHUP)  # the whole process group, as a hangup does
        proc.wait(timeout=30)
    finally:
        os.close(master)
    while TRY_BRIDGE in bridges(net_lab) and time.time() < waiting["deadline"] + 2:
        time.sleep(0.1)
    assert TRY_BRIDGE not in bridges(net_lab), "rolled back within the deadline plus 2 s"
    wait_for(lambda: not list((data_dir / "pending").iterdir()), "recorded, the keeper gone", 10)
    values = ledger_values(data_dir)
    rollback = next(v for v in values if v.get("recovers") == waiting["apply_id"])
    assert rollback["actor"] == f"{waiting['actor']}:timeout:try-keeper"
    assert rollback["result"]["exit_code"] == 0 and rollback["result"]["applied"] >= 1


def test_confirm_from_another_shell_keeps_the_try(net_lab: Lab, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    proc, master = start_try_on_a_pty(net_lab, data_dir, write(tmp_path, NET_ONLY), 3)
    try:
        (waiting,) = journal(data_dir)
        confirmed = opdbus(net_lab, data_dir, "confirm")
        assert confirmed.returncode == 0, confirmed.stdout + confirmed.stderr
        assert proc.wait(timeout=30) == 0, "the prompting command sees the confirmation"
    finally:
        os.close(master)
    time.sleep(max(0.0, waiting["deadline"] + 1 - time.time()))  # past the keeper's deadline
    assert TRY_BRIDGE in bridges(net_lab), "confirmed: the keeper left it alone"
    entry = next(v for v in ledger_values(data_dir) if v["type"] == "confirm")
    assert entry["apply_id"] == waiting["apply_id"]
    assert entry["actor"].startswith(f"uid={os.getuid()} ") and "confirm" in entry["actor"]
    again = opdbus(net_lab, data_dir, "confirm")
    assert again.returncode != 0 and "nothing to confirm" in again.stderr


@pytest.fixture
def multi_lab(lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    reset(lab, tmp_path)
    try:
        yield lab
    finally:
        reset(lab, tmp_path)


def query(lab: Lab, data_dir: Path) -> dict[str, Any]:
    result = opdbus(lab, data_dir, "query", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["state"]["plugins"]


def positions(lab: Lab, data_dir: Path) -> dict[str, Callable[[], bool]]:
    """Moments of the MULTI apply: before its first action, after systemd's, after net's."""
    return {
        "written ahead": lambda: bool(list((data_dir / "pending").glob("*.json"))),
        "systemd done": lambda: su.busctl_active_state(lab, "openvswitch.service") == "active",
        "net done": lambda: "mesh" in bridges(lab),
    }


@pytest.mark.parametrize("position", ["written ahead", "systemd done", "net done"])
def test_sigint_mid_apply_restores_the_checkpoint_exactly(
    multi_lab: Lab, tmp_path: Path, position: str
) -> None:
    data_dir = tmp_path / "data"
    before = query(multi_lab, data_dir)
    argv = [sys.executable, "-m", "op_dbus", "--data-dir", str(data_dir), "apply"]
    proc = subprocess.Popen(
        multi_lab.exec_argv([*argv, str(write(tmp_path, MULTI))]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: positions(multi_lab, data_dir)[position]() or proc.poll() is not None, position
    )
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, out + err
    assert "interrupted by SIGINT" in out + err
    assert query(multi_lab, data_dir) == before, "the host is exactly as before"
    assert containers(multi_lab) == {} and "mesh" not in bridges(multi_lab)
    header = next(v for v in ledger_values(data_dir) if v["type"] == "apply")
    assert header["result"]["exit_code"] == 4 and header["result"]["rollback_left"] == {}
    assert journal(data_dir) == []


def test_a_second_sigint_stops_the_rollback_and_says_what_is_left(
    multi_lab: Lab, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    before = query(multi_lab, data_dir)
    argv = [sys.executable, "-m", "op_dbus", "--data-dir", str(data_dir), "apply"]
    proc = subprocess.Popen(
        multi_lab.exec_argv([*argv, str(write(tmp_path, MULTI))]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(lambda: "mesh" in bridges(multi_lab) or proc.poll() is not None, "net applied")
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    seen = ""
    while "then rolling back" not in seen:  # the first is taken: the second is no duplicate
        line = proc.stderr.readline()
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 5, out + seen + err
    assert "stopped by a second interrupt" in out
    header = next(v for v in ledger_values(data_dir) if v["type"] == "apply")
    assert header["result"]["exit_code"] == 5
    left = header["result"]["rollback_left"]
    after = query(multi_lab, data_dir)
    differs = {name for name in before if after[name] != before[name]}
    assert left and set(left) == differs, "what is said to be left is exactly what differs"
    said = out[out.index("Left to restore") :]
    assert all(f"{name}: " in said for name in left)
    assert ("mesh" in said) == ("net" in left) and ("gateway" in said) == ("lxc" in left)

    (kept,) = journal(data_dir)
    assert "op-dbus rollback" in out and kept["apply_id"] in out
    rolled = opdbus(multi_lab, data_dir, "rollback")
    assert rolled.returncode == 4, rolled.stdout + rolled.stderr
    assert query(multi_lab, data_dir) == before


def test_sigkill_mid_apply_is_reported_and_rolled_back(multi_lab: Lab, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = query(multi_lab, data_dir)
    state = write(tmp_path, MULTI)
    argv = [sys.executable, "-m", "op_dbus", "--data-dir", str(data_dir), "apply", str(state)]
    proc = subprocess.Popen(multi_lab.exec_argv(argv), stdout=subprocess.DEVNULL)
    wait_for(lambda: "mesh" in bridges(multi_lab), "the net batch applied")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not lxc_create_running("gateway"), "lxc-create ends", 120)

    (killed,) = journal(data_dir)
    values = ledger_values(data_dir)
    assert [v["type"] for v in values] == ["intent"], "an intent without a result"
    assert values[0]["apply_id"] == killed["apply_id"]
    status = opdbus(multi_lab, data_dir, "status")
    assert "interrupted" in status.stdout and killed["apply_id"][:12] in status.stdout
    assert "op-dbus rollback" in status.stdout

    ovs_only = write(tmp_path, {"net": NET_ONLY["net"]}, "other.json")
    other = opdbus(multi_lab, data_dir, "apply", "--plugin", "net", str(ovs_only))
    assert other.returncode == 0, other.stdout + other.stderr
    assert "was interrupted" in other.stdout and killed["apply_id"] in other.stdout
    run_in_lab(multi_lab, "ovs-vsctl", "del-br", TRY_BRIDGE)

    rolled = opdbus(multi_lab, data_dir, "rollback")
    assert rolled.returncode == 4, rolled.stdout + rolled.stderr
    assert query(multi_lab, data_dir) == before, "back to the persisted checkpoint"
    assert journal(data_dir) == []
    recovery = [v for v in ledger_values(data_dir) if v.get("recovers") == killed["apply_id"]]
    assert len(recovery) == 1 and recovery[0]["result"]["rollback_left"] == {}


def readonly(target: Path, *argv: str) -> list[str]:
    """`argv` with `target` bind-mounted read-only over itself (in the command's own mount
    namespace: nothing outside sees it)."""
    script = 'mount --bind -o ro "$0" "$0" && exec "$@"'
    return ["sh", "-c", script, str(target), *argv]


@pytest.mark.parametrize("target", ["data dir", "ledger.db", "pending"])
def test_an_unwritable_data_dir_changes_nothing(net_lab: Lab, tmp_path: Path, target: str) -> None:
    data_dir = tmp_path / "data"
    other = write(tmp_path, {"net": {"interfaces": [{"name": "firstbr0", "type": "ovs-bridge"}]}})
    assert opdbus(net_lab, data_dir, "apply", str(other)).returncode == 0  # a ledger exists
    run_in_lab(net_lab, "ovs-vsctl", "del-br", "firstbr0")
    (data_dir / "pending").mkdir(exist_ok=True)
    size = len(ledger_values(data_dir))
    path = {"data dir": data_dir, "ledger.db": data_dir / "ledger.db"}.get(
        target, data_dir / "pending"
    )
    state = write(tmp_path, NET_ONLY, "try.json")
    argv = [sys.executable, "-m", "op_dbus", "--data-dir", str(data_dir), "apply", str(state)]
    result = run_in_lab(net_lab, *readonly(path, *argv), check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "nothing was changed" in result.stderr and "Error" not in result.stderr
    assert TRY_BRIDGE not in bridges(net_lab), "the host was not touched"
    assert len(ledger_values(data_dir)) == size


def test_try_past_its_deadline_is_rolled_back_at_the_next_start(
    net_lab: Lab, tmp_path: Path
) -> None:
    """A try whose keeper died with the machine: the next apply rolls it back first."""
    data_dir = tmp_path / "data"
    proc, master = start_try_on_a_pty(net_lab, data_dir, write(tmp_path, NET_ONLY), 60)
    try:
        (waiting,) = journal(data_dir)
        log = data_dir / "pending" / f"{waiting['apply_id']}.keeper.log"
        keepers: list[Path] = []

        def found() -> bool:
            keepers[:] = [p for p in Path("/proc").iterdir() if keeper_of(p, waiting)]
            return bool(keepers)

        wait_for(found, f"the keeper runs (its log: {log.read_text() if log.exists() else ''})")
        for keeper in keepers:  # as a reboot would: the keeper is gone, the journal stays
            os.kill(int(keeper.name), signal.SIGKILL)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        os.close(master)
    assert keepers and TRY_BRIDGE in bridges(net_lab)
    path = data_dir / "pending" / f"{waiting['apply_id']}.json"
    expired = copy.deepcopy(waiting) | {"deadline": time.time() - 1}
    path.write_text(json.dumps(expired))

    nothing = write(tmp_path, {"net": {"interfaces": []}}, "empty.json")
    result = opdbus(net_lab, data_dir, "apply", str(nothing))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "past its deadline" in result.stdout
    assert TRY_BRIDGE not in bridges(net_lab) and journal(data_dir) == []
    assert any(v.get("recovers") == waiting["apply_id"] for v in ledger_values(data_dir))


def keeper_of(proc: Path, waiting: dict[str, Any]) -> bool:
    if not proc.name.isdigit():
        return False
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"try-keeper" in argv and waiting["apply_id"].encode() in argv
