"""`op-dbus run` against the lab: boot apply, drift repair by events, observe, reload, D-Bus.

The daemon runs as a subprocess inside the lab netns (as systemd would run it), is told to
stop by PID, and reports readiness over a real NOTIFY_SOCKET this test binds. Results are
checked with the stock tools (`ovs-vsctl`, `busctl`) and by reading the ledger file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from op_dbus.lab import Lab, run_in_lab
from op_dbus.lab.drift import keep_deleting_port
from op_dbus.ledger.store import Ledger

BRIDGE = "dmnbr0"
PORT = "dmnp1"
PORT2 = "dmnp2"
OBJ = ("org.opdbus", "/org/opdbus/state", "org.opdbus.StateManager")

CLI = (
    "from op_dbus.cli import daemon, main\n"
    "if 'run' not in {c.name for c in main.app.registered_commands}:\n"
    "    main.app.command('run')(daemon.run)\n"
    "    main.app.command('confirm')(daemon.confirm)\n"
    "main.run()\n"
)
"""`op-dbus` with `run` and `confirm`, whether or not cli/main.py registers them yet."""


def net_state(*ports: str) -> dict[str, Any]:
    interfaces: list[dict[str, Any]] = [
        {"name": BRIDGE, "type": "ovs-bridge", "ports": list(ports)}
    ]
    interfaces += [{"name": p, "type": "ovs-internal", "bridge": BRIDGE} for p in ports]
    return {"version": 1, "plugins": {"net": {"interfaces": interfaces}}}


def vsctl(lab: Lab, *args: str) -> str:
    return run_in_lab(lab, "ovs-vsctl", "--timeout=10", *args).stdout.strip()


def ports(lab: Lab) -> list[str]:
    """The bridge's ports as ovs-vsctl sees them ([] when there is no bridge)."""
    done = run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-ports", BRIDGE, check=False)
    return done.stdout.split()


def busctl(lab: Lab, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["busctl", f"--address={lab.system_bus}", "--json=short", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def call(lab: Lab, member: str, *args: str, user: int | None = None) -> Any:
    done = busctl(lab, "call", *OBJ, member, *args, user=user)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["data"][0]


def prop(lab: Lab, name: str) -> Any:
    done = busctl(lab, "get-property", *OBJ, name)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["data"]


class Signals:
    """`busctl monitor` of what org.opdbus emits, started before the action under test."""

    def __init__(self, lab: Lab) -> None:
        argv = ["busctl", f"--address={lab.system_bus}", "--json=short", "monitor",
                "--match", "type='signal',sender='org.opdbus'"]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        time.sleep(0.3)  # busctl has subscribed

    def stop(self) -> dict[str, list[Any]]:
        """member -> the payloads received."""
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=10)
        found: dict[str, list[Any]] = {}
        for line in out.splitlines():
            message = json.loads(line)
            found.setdefault(message["member"], []).append(message["payload"]["data"])
        return found


def wait_for(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.05)


def ledger_values(lab: Lab) -> list[dict[str, Any]]:
    with Ledger.open(lab.data_dir) as ledger:
        return [entry.value for entry in ledger.entries()]


class Daemon:
    """One `op-dbus run` in the lab netns, with a NOTIFY_SOCKET of our own."""

    def __init__(
        self, lab: Lab, state_file: Path, *args: str, global_args: tuple[str, ...] = ()
    ) -> None:
        self.lab = lab
        self.dir = Path(tempfile.mkdtemp(prefix="opd-", dir="/tmp"))  # short: sun_path <= 107
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.dir / "notify"))
        self.log = self.dir / "daemon.log"
        argv = [sys.executable, "-c", CLI, *global_args, "run", "--state-file", str(state_file)]
        argv += args
        env = {**os.environ, "NOTIFY_SOCKET": str(self.dir / "notify")}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                lab.exec_argv(argv), env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.messages: list[str] = []

    def wait_message(self, prefix: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if m.startswith(prefix)]
            if found:
                return found[-1]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {prefix} from the daemon; log:\n{self.output()}")
            self.notify.settimeout(min(left, 0.2))
            try:
                self.messages += self.notify.recv(4096).decode().splitlines()
            except TimeoutError:
                if self.proc.poll() is not None:  # exited, and nothing left to read
                    raise AssertionError(f"daemon exited; log:\n{self.output()}") from None

    def output(self) -> str:
        return self.log.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM by PID and wait; SIGKILL (and fail) if it does not stop in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def close(self) -> None:
        self.stop()
        self.notify.close()
        for path in self.dir.iterdir():
            path.unlink()
        self.dir.rmdir()


@pytest.fixture
def clean_bridge(lab: Lab) -> Iterator[None]:
    vsctl(lab, "--if-exists", "del-br", BRIDGE)
    yield
    vsctl(lab, "--if-exists", "del-br", BRIDGE)


@pytest.fixture
def start(lab: Lab, tmp_path: Path, clean_bridge: None) -> Iterator[Callable[..., Daemon]]:
    """start(state, *args) -> a ready daemon; every one started is stopped by PID afterwards.

    Runtime changes an earlier test made through its daemon are kept across restarts (as
    they should be); each test starts without them."""
    started: list[Daemon] = []
    runtime = Path(lab.data_dir) / "runtime.json"
    runtime.unlink(missing_ok=True)

    def _start(
        state: dict[str, Any], *args: str, ready: bool = True, global_args: tuple[str, ...] = ()
    ) -> Daemon:
        path = tmp_path / "state.json"
        path.write_text(json.dumps(state))
        daemon = Daemon(lab, path, *args, global_args=global_args)
        started.append(daemon)
        if ready:
            daemon.wait_message("READY=1")
        return daemon

    yield _start
    for daemon in started:
        daemon.close()
    runtime.unlink(missing_ok=True)


def test_boot_apply_then_ovs_drift_is_repaired_and_recorded(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    daemon = start(net_state(PORT))
    assert ports(lab) == [PORT], "the boot-time apply creates the bridge and its port"
    before = len(ledger_values(lab))

    signals = Signals(lab)
    vsctl(lab, "del-port", BRIDGE, PORT)
    wait_for(lambda: ports(lab) == [PORT], 10, "the port to come back")

    def corrective() -> list[dict[str, Any]]:
        new = ledger_values(lab)[before:]
        return [
            v for v in new if v.get("actor") == "op-dbus-daemon:corrective" and v["type"] == "apply"
        ]

    wait_for(lambda: bool(corrective()), 10, "the corrective apply in the ledger")
    assert corrective()[0]["result"]["exit_code"] == 0
    time.sleep(0.3)
    emitted = signals.stop()
    drift = json.loads(emitted["DriftDetected"][0][0])
    assert drift["policy"] == "enforce" and drift["actions"][0]["resource"] == f"port/{PORT}"
    assert json.loads(emitted["StateApplied"][0][0])["actor"] == "op-dbus-daemon:corrective"
    assert prop(lab, "DriftEvents") >= 1
    last = json.loads(prop(lab, "LastApply"))
    assert last["actor"] == "op-dbus-daemon:corrective" and last["exit_code"] == 0

    assert daemon.stop() == 0
    assert daemon.wait_message("STOPPING=1", timeout=2)
    assert "stopped" in daemon.output()


def test_observe_reports_and_records_but_does_not_repair(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    start(net_state(PORT), "--policy", "observe")
    assert ports(lab) == [PORT], "observe still applies the state at boot"
    assert prop(lab, "Policy") == "observe"
    vsctl(lab, "del-port", BRIDGE, PORT)
    wait_for(lambda: prop(lab, "DriftEvents") >= 1, 10, "the drift to be reported")
    time.sleep(0.5)
    assert ports(lab) == [], "observe never repairs"
    drift = [v for v in ledger_values(lab) if v.get("type") == "drift"]
    assert drift and drift[-1]["resource"] == f"port/{PORT}"
    assert drift[-1]["actor"] == "op-dbus-daemon:observe" and drift[-1]["kind"] == "create"


def test_sighup_applies_a_changed_file_and_refuses_an_invalid_one(
    lab: Lab, tmp_path: Path, start: Callable[..., Daemon]
) -> None:
    daemon = start(net_state(PORT))
    state_file = tmp_path / "state.json"
    state_file.write_text(json.dumps(net_state(PORT, PORT2)))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: ports(lab) == [PORT, PORT2], 10, "the reloaded state")

    state_file.write_text('{"version": 1, "plugins": {"net": {"interfaces": [{"name": 7}]}}}')
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload refused" in daemon.output(), 10, "the refusal")
    assert "plugins.net.interfaces[0].name" in daemon.output()
    vsctl(lab, "del-port", BRIDGE, PORT2)
    wait_for(lambda: ports(lab) == [PORT, PORT2], 10, "the old state to stay enforced")


def test_dbus_methods_with_busctl(lab: Lab, start: Callable[..., Daemon]) -> None:
    start(net_state(PORT))
    direct = run_in_lab(lab, sys.executable, "-m", "op_dbus", "query", "--json", check=False)
    cached = json.loads(call(lab, "QueryState"))
    assert cached["state"]["plugins"]["net"] == json.loads(direct.stdout)["state"]["plugins"]["net"]

    assert json.loads(call(lab, "Verify")) == {"blocked": {}, "mismatches": {}}
    plan = json.loads(call(lab, "Diff", "s", json.dumps(net_state(PORT, PORT2))))
    assert plan["pending"] is True
    assert [a["resource"] for a in plan["plugins"][0]["actions"]] == [f"port/{PORT2}"]
    assert ports(lab) == [PORT], "Diff changes nothing"

    result = json.loads(call(lab, "ApplyState", "s", json.dumps(net_state(PORT, PORT2))))
    assert result["result"]["exit_code"] == 0 and ports(lab) == [PORT, PORT2]
    assert result["plan"] == plan, "one JSON form of a plan: Diff's and the apply's"
    assert call(lab, "Confirm") is False, "no try is pending"
    assert prop(lab, "Mode") == "full"

    refused = busctl(lab, "call", *OBJ, "ApplyState", "s", "{}", user=65534)
    assert refused.returncode != 0 and "denied" in refused.stderr.lower()
    assert ports(lab) == [PORT, PORT2]
    assert "mismatches" in json.loads(call(lab, "Verify", user=65534)), "reading is for all"

    bad = busctl(lab, "call", *OBJ, "ApplyState", "s", '{"plugins": {"net": {"interfaces": 1}}}')
    assert bad.returncode != 0 and "plugins.net.interfaces" in bad.stderr


def test_try_rolls_back_unless_confirmed(lab: Lab, start: Callable[..., Daemon]) -> None:
    daemon = start(net_state(PORT))
    tried = json.loads(call(lab, "TryState", "su", json.dumps(net_state(PORT, PORT2)), "2"))
    assert tried["result"]["exit_code"] == 0 and tried["try"]["seconds_left"] > 1
    assert ports(lab) == [PORT, PORT2]
    assert call(lab, "Confirm") is True
    time.sleep(2.5)
    assert ports(lab) == [PORT, PORT2], "a confirmed try stays"

    third = "dmnp3"
    state = net_state(PORT, PORT2)
    state["plugins"]["net"]["interfaces"][0]["ports"].append(third)
    state["plugins"]["net"]["interfaces"].append(
        {"name": third, "type": "ovs-internal", "bridge": BRIDGE}
    )
    tried = json.loads(call(lab, "TryState", "su", json.dumps(state), "1"))
    assert tried["result"]["exit_code"] == 0 and sorted(ports(lab)) == [PORT, PORT2, third]
    wait_for(lambda: ports(lab) == [PORT, PORT2], 10, "the rollback of the unconfirmed try")
    try:
        wait_for(
            lambda: json.loads(prop(lab, "LastApply"))["actor"] == "op-dbus-daemon:try-rollback",
            5,
            "the rollback to be reported",
        )
    except AssertionError:
        raise AssertionError(daemon.output() + prop(lab, "LastApply")) from None
    vsctl(lab, "del-port", BRIDGE, PORT2)
    wait_for(lambda: ports(lab) == [PORT, PORT2], 10, "the confirmed state to be enforced again")


def test_confirm_and_rollback_with_options_record_the_uid_and_the_claimed_actor(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    start(net_state(PORT))
    before = len(ledger_values(lab))
    tried = json.loads(call(lab, "TryState", "su", json.dumps(net_state(PORT, PORT2)), "60"))
    assert tried["result"]["exit_code"] == 0 and ports(lab) == [PORT, PORT2]
    confirmed = json.loads(call(lab, "ConfirmTryWith", "s", json.dumps({"actor": "who=keeper"})))
    assert confirmed["confirmed"]["id"] == tried["try"]["id"]

    third = "dmnp3"
    state = net_state(PORT, PORT2)
    state["plugins"]["net"]["interfaces"][0]["ports"].append(third)
    state["plugins"]["net"]["interfaces"].append(
        {"name": third, "type": "ovs-internal", "bridge": BRIDGE}
    )
    tried = json.loads(call(lab, "TryState", "su", json.dumps(state), "60"))
    assert tried["result"]["exit_code"] == 0 and sorted(ports(lab)) == [PORT, PORT2, third]
    bad = busctl(lab, "call", *OBJ, "RollbackWith", "s", json.dumps({"actor": "a\nb"}))
    assert bad.returncode != 0 and "options.actor" in bad.stderr
    denied = busctl(lab, "call", *OBJ, "RollbackWith", "s", "{}", user=65534)
    assert denied.returncode != 0 and "denied" in denied.stderr.lower()
    rolled = json.loads(call(lab, "RollbackWith", "s", json.dumps({"actor": "who=undoer"})))
    assert rolled["result"]["exit_code"] == 4 and ports(lab) == [PORT, PORT2]

    new = ledger_values(lab)[before:]
    assert [v["actor"] for v in new if v["type"] == "confirm"] == [
        "op-dbus-daemon:dbus uid=0 who=keeper"
    ]
    undone = [v for v in new if v["type"] == "apply" and v.get("recovers")]
    assert [v["actor"] for v in undone] == ["op-dbus-daemon:dbus uid=0 who=undoer"]
    old = busctl(lab, "call", *OBJ, "ConfirmTry")  # the method without options still answers
    assert old.returncode != 0 and "nothing to confirm" in old.stderr


def test_survives_ovsdb_server_restart(lab: Lab, start: Callable[..., Daemon]) -> None:
    daemon = start(net_state(PORT))
    lab.stop_ovs()
    try:
        time.sleep(0.5)
    finally:
        lab.start_ovs()
    assert daemon.proc.poll() is None, daemon.output()
    wait_for(lambda: "OVSDB" in daemon.output() and "reconnecting" in daemon.output(), 10)
    time.sleep(0.5)
    vsctl(lab, "del-port", BRIDGE, PORT)
    try:
        wait_for(lambda: ports(lab) == [PORT], 15, "a repair over the new connection")
    except AssertionError:
        raise AssertionError(daemon.output()) from None


def test_one_daemon_per_data_dir_and_oneshot(lab: Lab, start: Callable[..., Daemon]) -> None:
    start(net_state(PORT))
    second = start(net_state(PORT), ready=False)
    assert second.proc.wait(timeout=30) == 1
    assert "another op-dbus daemon" in second.output()


def test_oneshot_applies_and_exits_with_the_apply_code(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    daemon = start(net_state(PORT), "--oneshot", ready=False)
    assert daemon.proc.wait(timeout=60) == 0, daemon.output()
    assert ports(lab) == [PORT]


UNIT = "opdbus-dmn.service"
MANAGER = (
    "org.freedesktop.systemd1",
    "/org/freedesktop/systemd1",
    "org.freedesktop.systemd1.Manager",
)


@pytest.fixture
def test_unit(lab: Lab) -> Iterator[str]:
    """A long-running unit in the lab's systemd; stopped, disabled and removed afterwards."""
    path = lab.units_dir / UNIT
    path.write_text(
        "[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n"
    )
    busctl(lab, "call", *MANAGER, "Reload")
    yield UNIT
    busctl(lab, "call", *MANAGER, "StopUnit", "ss", UNIT, "replace")
    busctl(lab, "call", *MANAGER, "DisableUnitFiles", "asb", "1", UNIT, "false")
    path.unlink()
    busctl(lab, "call", *MANAGER, "Reload")


def active_state(lab: Lab, unit: str) -> str:
    done = busctl(lab, "call", *MANAGER, "ListUnitsByNames", "as", "1", unit)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["data"][0][0][3]


def test_systemd_drift_is_repaired_from_its_signals(
    lab: Lab, start: Callable[..., Daemon], test_unit: str
) -> None:
    units = {test_unit: {"enabled": True, "active_state": "active"}}
    start({"version": 1, "plugins": {"systemd": {"units": units}}})
    assert active_state(lab, test_unit) == "active"
    stopped = busctl(lab, "call", *MANAGER, "StopUnit", "ss", test_unit, "replace")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: active_state(lab, test_unit) == "active", 15, "the unit to be restarted")
    assert prop(lab, "DriftEvents") >= 1


def test_systemd_drift_is_still_repaired_after_systemd_reexecutes(
    lab: Lab, start: Callable[..., Daemon], test_unit: str
) -> None:
    """`systemctl daemon-reexec` in the lab: PID 1 starts over, its bus connection with it."""
    units = {test_unit: {"enabled": True, "active_state": "active"}}
    daemon = start({"version": 1, "plugins": {"systemd": {"units": units}}})
    before = systemd_bus_name(lab)
    busctl(lab, "call", *MANAGER, "Reexecute")  # systemd disconnects without replying
    wait_for(lambda: systemd_bus_name(lab) not in (None, before), 30, "systemd re-executed")
    wait_for(lambda: active_state_or_none(lab, test_unit) == "active", 30, "systemd back")
    stopped = busctl(lab, "call", *MANAGER, "StopUnit", "ss", test_unit, "replace")
    assert stopped.returncode == 0, stopped.stderr
    wait_for(lambda: active_state(lab, test_unit) == "active", 15, "the unit to be restarted")
    assert daemon.proc.poll() is None, daemon.output()


def systemd_bus_name(lab: Lab) -> str | None:
    """PID 1's unique name on the bus: a re-exec reconnects, so it changes."""
    bus = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
    done = busctl(lab, "call", *bus, "GetNameOwner", "s", MANAGER[0])
    return json.loads(done.stdout)["data"][0] if done.returncode == 0 else None


def active_state_or_none(lab: Lab, unit: str) -> str | None:
    done = busctl(lab, "call", *MANAGER, "ListUnitsByNames", "as", "1", unit)
    return json.loads(done.stdout)["data"][0][0][3] if done.returncode == 0 else None


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    """A system-type dbus-daemon of our own whose policy lets anyone call anything (so only
    the daemon's own uid check stands between a non-root caller and ApplyState)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="opd-bus-", dir="/tmp"))
        self.dir.chmod(0o755)
        self.config = self.dir / "bus.conf"
        self.config.write_text(BUS_CONFIG.format(socket=self.dir / "bus"))
        self.address = f"unix:path={self.dir / 'bus'}"
        self.pid: int | None = None

    def start(self) -> None:
        argv = ["dbus-daemon", f"--config-file={self.config}", "--fork", "--print-pid=1",
                "--nopidfile"]  # fmt: skip
        started = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30)
        self.pid = int(started.stdout.split()[0])

    def stop(self) -> None:
        if self.pid is not None:
            os.kill(self.pid, signal.SIGTERM)
            wait_for(lambda: not Path(f"/proc/{self.pid}").exists(), 10, "dbus-daemon to stop")
            self.pid = None
        (self.dir / "bus").unlink(missing_ok=True)

    def call(self, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["busctl", f"--address={self.address}", "--json=short", "call", *OBJ, *args]
        if user is not None:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.fixture
def open_bus() -> Iterator[PrivateBus]:
    bus = PrivateBus()
    bus.start()
    try:
        yield bus
    finally:
        bus.stop()
        for path in bus.dir.iterdir():
            path.unlink()
        bus.dir.rmdir()


def test_the_daemon_itself_refuses_non_root_callers(
    lab: Lab, start: Callable[..., Daemon], open_bus: PrivateBus
) -> None:
    start(net_state(PORT), global_args=("--system-bus", open_bus.address))
    wait_for(lambda: open_bus.call("Verify").returncode == 0, 10, "the service")
    refused = open_bus.call("ApplyState", "s", json.dumps(net_state()), user=65534)
    assert refused.returncode != 0 and "needs root (caller uid 65534)" in refused.stderr
    assert "needs root" in open_bus.call("Confirm", user=65534).stderr
    assert ports(lab) == [PORT], "nothing changed"
    assert open_bus.call("QueryState", user=65534).returncode == 0, "reading is for everyone"
    assert open_bus.call("Confirm").stdout.strip() == '{"type":"b","data":[false]}', "root may"


def test_the_service_comes_back_when_the_bus_restarts(
    lab: Lab, start: Callable[..., Daemon], open_bus: PrivateBus
) -> None:
    daemon = start(net_state(PORT), global_args=("--system-bus", open_bus.address))
    wait_for(lambda: open_bus.call("Verify").returncode == 0, 10, "the service")
    open_bus.stop()
    time.sleep(0.5)
    open_bus.start()
    wait_for(lambda: open_bus.call("Verify").returncode == 0, 15, "the service on the new bus")
    assert daemon.proc.poll() is None
    assert "reconnecting" in daemon.output()


def test_query_is_served_from_the_daemon_and_falls_back_without_it(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    import asyncio

    from op_dbus.api import connect
    from op_dbus.endpoints import Endpoints

    endpoints = Endpoints(system_bus=lab.system_bus)
    daemon = start(net_state(PORT))

    def query(*flags: str) -> dict:
        argv = [sys.executable, "-m", "op_dbus", "query", "--json", *flags]
        return json.loads(run_in_lab(lab, *argv, check=False).stdout)["state"]["plugins"]

    async def through_api(names: list[str]) -> tuple[str, dict]:
        api = await connect(endpoints, names, use_ledger=False)
        try:
            return api.via, (await api.query(names))["state"][
                "plugins"
            ] if api.via == "daemon" else {}
        finally:
            await api.close()

    direct = query("--no-cache")
    via, sections = asyncio.run(through_api(["net", "systemd", "lxc"]))
    assert via == "daemon"
    assert sections["net"] == direct["net"]
    assert set(sections["systemd"]["units"]) == set(direct["systemd"]["units"])
    assert query()["net"] == direct["net"], "`op-dbus query` answers from the daemon alike"
    assert daemon.stop() == 0
    assert asyncio.run(through_api(["net"]))[0] == "local", "no daemon: the host is read here"


CONTAINER = "dmnct"


@pytest.fixture
def no_container(lab: Lab) -> Iterator[None]:
    def destroy() -> None:
        run_in_lab(lab, "lxc-destroy", "-P", str(lab.lxc_path), "-n", CONTAINER, "-f", check=False)

    destroy()
    yield
    destroy()


def lxc_state(lab: Lab) -> str:
    done = run_in_lab(lab, "lxc-info", "-P", str(lab.lxc_path), "-n", CONTAINER, "-sH", check=False)
    return done.stdout.strip()


def test_lxc_drift_is_repaired(lab: Lab, start: Callable[..., Daemon], no_container: None) -> None:
    container = {"id": "110", "name": CONTAINER, "veth": "vi110", "bridge": BRIDGE, "running": True}
    state = net_state()
    state["plugins"]["lxc"] = {"containers": [container]}
    daemon = start(state)
    assert lxc_state(lab) == "RUNNING", daemon.output()
    run_in_lab(lab, "lxc-stop", "-P", str(lab.lxc_path), "-n", CONTAINER, "-k")
    wait_for(lambda: lxc_state(lab) == "RUNNING", 20, "the container to be started again")
    wait_for(lambda: "vi110" in ports(lab), 10, "its port back on the bridge")


def test_a_replaced_state_file_is_reloaded_without_a_signal(
    lab: Lab, tmp_path: Path, start: Callable[..., Daemon]
) -> None:
    daemon = start(net_state(PORT))
    new = tmp_path / "state.json.new"
    new.write_text(json.dumps(net_state(PORT, PORT2)))
    new.rename(tmp_path / "state.json")  # how editors and config managers replace a file
    wait_for(lambda: ports(lab) == [PORT, PORT2], 10, "the changed file to be applied")
    assert "changed: reloading" in daemon.output()
    ledger = [
        v
        for v in ledger_values(lab)
        if v.get("actor") == "op-dbus-daemon:reload" and v["type"] == "apply"
    ]
    assert ledger and ledger[-1]["result"]["exit_code"] == 0


def test_address_drift_is_repaired_from_netlink_events(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    state = net_state(PORT)
    address = {"enabled": True, "dhcp": False, "address": [{"ip": "10.77.0.1", "prefix": 24}]}
    state["plugins"]["net"]["interfaces"][1]["ipv4"] = address

    def addresses() -> list[str]:
        done = run_in_lab(lab, "ip", "-j", "-4", "addr", "show", "dev", PORT, check=False)
        return [a["local"] for i in json.loads(done.stdout or "[]") for a in i["addr_info"]]

    daemon = start(state)
    assert addresses() == ["10.77.0.1"], daemon.output()
    run_in_lab(lab, "ip", "addr", "del", "10.77.0.1/24", "dev", PORT)
    # no OVSDB row changes here, and the safety poll is minutes away: only netlink tells
    wait_for(lambda: addresses() == ["10.77.0.1"], 10, "the address to come back")


def test_bridges_come_back_after_the_ovs_database_is_wiped(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    """What happens at every Proxmox boot: OVS starts on an empty database."""
    daemon = start(net_state(PORT))
    lab.stop_ovs()
    try:
        (lab.ovs_dir / "conf.db").unlink()
    finally:
        lab.start_ovs()  # creates a fresh database
    wait_for(lambda: ports(lab) == [PORT], 20, "the bridge and its port to be re-created")
    assert daemon.proc.poll() is None


SLOW = "opdbus-dmn-slow.service"


@pytest.fixture
def slow_unit(lab: Lab) -> Iterator[str]:
    """A unit whose start takes 2 s: an apply that is surely in flight when SIGTERM comes."""
    path = lab.units_dir / SLOW
    path.write_text("[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sleep 2\n")
    busctl(lab, "call", *MANAGER, "Reload")
    yield SLOW
    busctl(lab, "call", *MANAGER, "StopUnit", "ss", SLOW, "replace")
    path.unlink()
    busctl(lab, "call", *MANAGER, "Reload")


def test_sigterm_lets_the_apply_in_flight_finish(
    lab: Lab, start: Callable[..., Daemon], slow_unit: str
) -> None:
    daemon = start({"version": 1, "plugins": {"systemd": {"units": {}}}})
    units = {slow_unit: {"active_state": "active"}}
    wanted = {"version": 1, "plugins": {"systemd": {"units": units}}}
    before = len(ledger_values(lab))
    argv = ["busctl", f"--address={lab.system_bus}", "--timeout=30", "call", *OBJ,
            "ApplyState", "s", json.dumps(wanted)]  # fmt: skip
    caller = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: active_state(lab, slow_unit) == "activating", 10, "the start job")
        started = time.monotonic()
        assert daemon.stop() == 0, daemon.output()
        assert time.monotonic() - started > 1.0, "it waited for the job instead of dying"
    finally:
        caller.wait(timeout=30)
    assert active_state(lab, slow_unit) == "active"
    new = ledger_values(lab)[before:]
    applies = [
        v for v in new if v.get("actor") == "op-dbus-daemon:dbus uid=0" and v["type"] == "apply"
    ]
    assert len(applies) == 1 and applies[0]["result"]["exit_code"] == 0, "and recorded it"


# -- one way in: the CLI goes through the daemon when one runs -------------------------------


def cli(lab: Lab, *args: str, user: int | None = None, stdin: str | None = None) -> Any:
    argv = [sys.executable, "-m", "op_dbus", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(
        lab.exec_argv(argv), input=stdin, capture_output=True, text=True, timeout=120
    )


def applies(lab: Lab) -> list[dict[str, Any]]:
    return [e for e in ledger_values(lab) if e["type"] == "apply"]


def test_a_cli_apply_with_the_daemon_is_kept_listed_recorded_and_dropped_by_reload(
    lab: Lab, start: Callable[..., Daemon], tmp_path: Path
) -> None:
    start(net_state(PORT))
    change = tmp_path / "change.json"
    change.write_text(json.dumps(net_state(PORT, PORT2)))
    done = cli(lab, "apply", str(change))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "through the running op-dbus daemon" in done.stdout
    assert ports(lab) == [PORT, PORT2]
    vsctl(lab, "del-port", BRIDGE, PORT2)
    wait_for(lambda: ports(lab) == [PORT, PORT2], 10, "the runtime change to be enforced too")

    status = json.loads(cli(lab, "status", "--json").stdout)
    assert status["daemon"]["state_file"].endswith("state.json")
    [kept] = status["runtime_changes"]
    assert kept["sections"] == ["net"] and f"command=op-dbus apply {change}" in kept["actor"]
    recorded = [a for a in applies(lab) if f"apply {change}" in a["actor"]]
    assert len(recorded) == 1 and "uid=0" in recorded[0]["actor"], "the ledger names the CLI"
    human = cli(lab, "status")
    assert human.returncode == 0 and "runtime changes: 1" in human.stdout

    reloaded = json.loads(cli(lab, "reload", "--json").stdout)
    assert reloaded["runtime_changes_dropped"] == 1
    wait_for(lambda: ports(lab) == [PORT], 10, "the state file alone to be enforced")
    assert json.loads(cli(lab, "status", "--json").stdout)["runtime_changes"] == []


def test_diff_json_equals_the_daemons_plan_and_the_local_one(
    lab: Lab, start: Callable[..., Daemon], tmp_path: Path
) -> None:
    daemon = start(net_state(PORT))
    wanted = tmp_path / "wanted.json"
    wanted.write_text(json.dumps(net_state(PORT, PORT2)))
    through_daemon = json.loads(cli(lab, "diff", "--json", str(wanted)).stdout)
    over_dbus = json.loads(call(lab, "Diff", "s", wanted.read_text()))
    assert daemon.stop() == 0
    local = json.loads(cli(lab, "diff", "--json", str(wanted)).stdout)
    keys = ("pending", "revision", "summary", "dangerous", "plugins")
    assert {k: through_daemon[k] for k in keys} == over_dbus, "the same plan, the same host"
    assert {k: local[k] for k in keys} == over_dbus
    assert over_dbus["pending"] and over_dbus["summary"]["create"] == 1, "the new port"


def test_a_non_root_apply_through_the_daemon_is_refused_with_exit_2(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    start(net_state(PORT))
    done = cli(lab, "apply", "-", user=65534, stdin=json.dumps(net_state(PORT, PORT2)))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "needs root" in done.stderr and "Traceback" not in done.stderr
    assert ports(lab) == [PORT]


def hold_apply_lock(lab: Lab) -> int:
    """Take the host-wide apply lock as another writer would (released by closing it)."""
    import fcntl

    fd = os.open(Path(lab.data_dir) / "apply.lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": os.getpid(), "actor": "the test"}).encode(), 0)
    return fd


def test_concurrent_applies_without_a_daemon_take_turns(
    lab: Lab, clean_bridge: None, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(net_state(PORT)))
    second.write_text(json.dumps(net_state(PORT, PORT2)))
    fd = hold_apply_lock(lab)
    try:
        refused = cli(lab, "--lock-wait", "0.5", "apply", str(first))
        assert refused.returncode == 1 and f"pid {os.getpid()} (the test" in refused.stderr
        assert ports(lab) == [], "nothing changed while it waited"
        argv = [sys.executable, "-m", "op_dbus", "apply"]
        running = [
            subprocess.Popen(lab.exec_argv([*argv, str(f)]), stdout=subprocess.PIPE, text=True)
            for f in (first, second)
        ]
        time.sleep(1.0)
        assert all(p.poll() is None for p in running) and ports(lab) == [], "both wait"
    finally:
        os.close(fd)
    for proc in running:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, out
    done = [a for a in applies(lab) if "first.json" in a["actor"] or "second.json" in a["actor"]]
    # files are partial: whichever ran second planned against the first's result, so
    # `first` after `second` had nothing to do (and a no-op records nothing)
    assert len(done) in (1, 2) and all(a["result"]["exit_code"] == 0 for a in done)
    assert ports(lab) == [PORT, PORT2]
    assert all(a["result"]["rolled_back"] == 0 for a in done), "no rollback crossed the other"


FLOODER = Path(__file__).with_name("dbus_flood.py")
NOBODY = 65534
LIVENESS = 10.0
"""Generous bound for one root QueryState round trip during the flood (busctl's timeout)."""


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


def timed_query(lab: Lab) -> float:
    """Seconds for one root QueryState over the lab's bus (busctl start-up included)."""
    started = time.monotonic()
    done = busctl(lab, f"--timeout={LIVENESS:g}", "call", *OBJ, "QueryState")
    took = time.monotonic() - started
    assert done.returncode == 0, f"root QueryState failed after {took:.1f} s: {done.stderr}"
    return took


def test_an_unprivileged_flood_does_not_stall_queries_or_repairs(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    """uid 65534 floods Diff over the lab's real bus and policy with oversized documents,
    alias bombs, too deep nesting and valid near-limit documents; meanwhile root queries
    and a declared port deleted with ovs-vsctl is put back."""
    daemon = start(net_state(PORT))
    idle_rss = rss_mib(daemon.proc.pid)
    argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            sys.executable, str(FLOODER), lab.system_bus, "20"]  # fmt: skip
    flooder = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    latencies: list[float] = []
    peak_rss = idle_rss
    try:
        time.sleep(1.0)  # the flood is under way
        for _ in range(10):
            latencies.append(timed_query(lab))
            peak_rss = max(peak_rss, rss_mib(daemon.proc.pid))
        vsctl(lab, "del-port", BRIDGE, PORT)
        deleted = time.monotonic()
        while ports(lab) != [PORT]:
            assert time.monotonic() - deleted < 30, f"not repaired; log:\n{daemon.output()}"
            latencies.append(timed_query(lab))
            peak_rss = max(peak_rss, rss_mib(daemon.proc.pid))
        repaired = time.monotonic() - deleted
        assert flooder.poll() is None, "the repair happened while the flood went on"
        while flooder.poll() is None:
            latencies.append(timed_query(lab))
            peak_rss = max(peak_rss, rss_mib(daemon.proc.pid))
        out, err = flooder.communicate(timeout=120)
    finally:
        if flooder.poll() is None:
            flooder.kill()
            flooder.communicate()
    assert flooder.returncode == 0, err
    seen = json.loads(out)
    ms = sorted(round(t * 1000) for t in latencies)
    print(
        f"\nflood replies {seen}\nroot QueryState during the flood (busctl included): "
        f"{len(ms)} calls, median {ms[len(ms) // 2]} ms, p90 {ms[len(ms) * 9 // 10]} ms, "
        f"max {ms[-1]} ms, {sum(t > 100 for t in ms)} over 100 ms; drift repaired after "
        f"{repaired * 1000:.0f} ms; RSS {idle_rss:.0f} MiB idle, {peak_rss:.0f} MiB peak"
    )
    refused = "org.opdbus.Error.InvalidInput"
    assert seen.get(f"{refused}: larger than the limit", 0) >= 1, seen
    assert seen.get(f"{refused}: aliases are expanded", 0) >= 1, seen
    assert seen.get(f"{refused}: nested more than", 0) >= 1, seen
    assert seen.get("org.opdbus.Error.Busy: Busy", 0) >= 1, "non-root callers take turns"
    assert seen.get("answered", 0) >= 1, "a valid document is still planned for non-root"
    assert "timeout" not in seen, seen
    assert peak_rss < idle_rss + 400, f"RSS grew from {idle_rss:.0f} to {peak_rss:.0f} MiB"
    assert ports(lab) == [PORT] and "Traceback" not in daemon.output()


def test_one_costly_call_per_connection_at_a_time(lab: Lab, start: Callable[..., Daemon]) -> None:
    """Even root's: a second Diff on a connection whose first is in flight is refused."""
    import asyncio

    from dbus_fast import Message, MessageType

    from op_dbus.native.dbus import connect_system_bus

    start(net_state(PORT))
    slow = yaml_state(PORT, *(f"q{i}" for i in range(3000)))

    async def two_at_once() -> list[Message]:
        bus = await connect_system_bus(lab.system_bus)
        try:
            documents = (slow, json.dumps(net_state(PORT)))
            calls = [
                Message(destination=OBJ[0], path=OBJ[1], interface=OBJ[2], member="Diff",
                        signature="s", body=[d])
                for d in documents
            ]  # fmt: skip
            return list(await asyncio.gather(*(bus.call(c) for c in calls)))
        finally:
            bus.disconnect()

    first, second = asyncio.run(two_at_once())
    assert first.message_type == MessageType.METHOD_RETURN, first.body
    assert json.loads(first.body[0])["pending"] is True
    assert second.message_type == MessageType.ERROR
    assert second.error_name == "org.opdbus.Error.Busy"
    assert "this connection's Diff call is still being answered" in second.body[0]
    assert json.loads(call(lab, "Diff", "s", json.dumps(net_state(PORT))))["pending"] is False


def yaml_state(*names: str) -> str:
    """net_state(*names) in YAML block style (parsed by the pure-Python YAML parser)."""
    import yaml

    return yaml.safe_dump(net_state(*names), default_flow_style=False)


def test_a_fifo_as_state_file_does_not_block_the_reload(
    lab: Lab, tmp_path: Path, start: Callable[..., Daemon]
) -> None:
    daemon = start(net_state(PORT))
    fifo = tmp_path / "state.fifo"
    os.mkfifo(fifo)
    fifo.rename(tmp_path / "state.json")  # seen by inotify: a reload through the reader
    try:
        wait_for(lambda: "reload refused" in daemon.output(), 10, "the refusal")
        assert "it is a FIFO, not a regular file" in daemon.output()
        timed_query(lab)
        vsctl(lab, "del-port", BRIDGE, PORT)
        wait_for(lambda: ports(lab) == [PORT], 10, "the port to come back")
    finally:  # the old reader waits in open() for a writer: give it one, so it can stop
        with contextlib.suppress(OSError):
            os.close(os.open(tmp_path / "state.json", os.O_WRONLY | os.O_NONBLOCK))


def test_try_state_bounds_and_an_honest_refusal(lab: Lab, start: Callable[..., Daemon]) -> None:
    start(net_state(PORT))
    for seconds in ("0", "86401", "4294967295"):
        done = busctl(lab, "call", *OBJ, "TryState", "su", json.dumps(net_state(PORT)), seconds)
        assert done.returncode != 0 and "must be from 1 to 86400 seconds" in done.stderr, seconds
    assert ports(lab) == [PORT], "nothing was tried"

    first = json.loads(call(lab, "TryState", "su", json.dumps(net_state(PORT, PORT2)), "600"))
    assert first["result"]["exit_code"] == 0 and first["try"]["seconds_left"] > 590
    deadline = first["try"]["deadline"]
    state = net_state(PORT)
    second = busctl(lab, "call", *OBJ, "TryState", "su", json.dumps(state), "30")
    assert second.returncode != 0 and "try: refused, nothing applied" in second.stderr
    assert f"rolled back at {deadline}" in second.stderr, "the first try's deadline, honestly"
    status = json.loads(call(lab, "Status"))
    assert status["try"]["deadline"] == deadline, "the one timer is the first try's"
    assert ports(lab) == [PORT, PORT2], "the refused try changed nothing"
    assert call(lab, "Confirm") is True


def test_an_invalid_state_file_at_start_exits_2(
    lab: Lab, tmp_path: Path, start: Callable[..., Daemon]
) -> None:
    """What RestartPreventExitStatus=2 in the unit relies on; a FIFO does not block it."""
    daemon = start({"version": 1, "plugins": {"net": {"interfaces": 3}}}, ready=False)
    assert daemon.proc.wait(timeout=60) == 2, daemon.output()
    assert "plugins.net.interfaces" in daemon.output()
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    daemon = Daemon(lab, fifo)
    try:
        assert daemon.proc.wait(timeout=60) == 2, daemon.output()
        assert "it is a FIFO, not a regular file" in daemon.output()
    finally:
        with contextlib.suppress(OSError):  # the old reader waits in open() for a writer
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        daemon.close()


def test_stopping_after_the_bus_restarted_logs_no_unretrieved_futures(
    lab: Lab, start: Callable[..., Daemon], test_unit: str
) -> None:
    """The systemd plugin's bus connection is lost with dbus-daemon; nobody waits on it."""
    state = net_state(PORT)
    state["plugins"]["systemd"] = {"units": {test_unit: {"enabled": True}}}
    daemon = start(state)
    call(lab, "QueryState")  # the plugin connects
    busctl(lab, "call", *MANAGER, "RestartUnit", "ss", "dbus.service", "replace")
    wait_for(lambda: daemon.output().count("D-Bus service") >= 2 and
             busctl(lab, "call", *OBJ, "Verify").returncode == 0, 30, "the bus back")  # fmt: skip
    call(lab, "QueryState")  # the plugin connects anew; the lost connection is collected
    assert daemon.stop() == 0
    assert "never retrieved" not in daemon.output(), daemon.output()
    assert "Traceback" not in daemon.output(), daemon.output()


def test_drift_recurring_during_repairs_is_repaired_and_never_rolled_back(
    lab: Lab, start: Callable[..., Daemon]
) -> None:
    """Every repair either takes effect or meets new drift and plans again; none is rolled
    back, and the port is there at the end. With 200 more ports declared, vswitchd takes a
    while to apply each repair: the next deletion comes before the repair is verified."""
    start(net_state(PORT, *(f"dmnq{i}" for i in range(200))), "--fight-threshold", "1000")
    before = len(ledger_values(lab))
    asyncio.run(keep_deleting_port(lab.ovs.db, BRIDGE, PORT, 20))
    wait_for(lambda: PORT in ports(lab), 10, "the port to come back")

    def repairs() -> list[dict[str, Any]]:
        new = ledger_values(lab)[before:]
        return [v for v in new if v.get("type") == "apply"]

    time.sleep(1)  # the last repair's record
    codes = [entry["result"]["exit_code"] for entry in repairs()]
    assert len(codes) >= 20, "each deletion was repaired"
    assert set(codes) <= {0, 3}, f"a repair was rolled back or failed: {repairs()}"
    assert PORT in ports(lab) and len(ports(lab)) == 201
