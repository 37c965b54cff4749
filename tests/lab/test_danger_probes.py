"""Safe on a real host: dangerous actions are asked for, probes roll back a change that cut
the host off, and the daemon's reload follows the same rules. Every result is cross-checked
with ovs-vsctl and ip -j."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_lab import Daemon, wait_for
from test_net_apply import (
    SEED_NET,
    addresses,
    apply_ok,
    default_routes,
    opdbus,
    reset,
    state_file,
    vsctl,
)

from op_dbus.lab import Lab, run_in_lab

MESH_GONE = {"interfaces": [{"name": "mesh", "type": "ovs-bridge", "state": "absent"}]}
SESSION = """
import socket, sys
server = socket.socket()
server.bind((sys.argv[1], 0))
server.listen()
client = socket.create_connection(server.getsockname())
peer, _ = server.accept()
print("up", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def seeded(lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    reset(lab)
    apply_ok(lab, state_file(tmp_path, SEED_NET, "seed.json"))
    try:
        yield lab
    finally:
        reset(lab)


@pytest.fixture
def session_on_mesh(seeded: Lab) -> Iterator[None]:
    """A live TCP session whose local end is mesh's 10.0.0.1 (what an SSH login would be)."""
    child = subprocess.Popen(
        seeded.exec_argv([sys.executable, "-c", SESSION, "10.0.0.1"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "up"
    try:
        yield
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=10)


def on_terminal(argv: list[str], answer: str) -> tuple[int, str]:
    """Run `argv` on a pseudo-terminal; answer the first question with `answer`."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else (never back into pytest)
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    output, answered = b"", False
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal: it is done
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"Apply them?" in output:
                os.write(fd, answer.encode() + b"\n")
                answered = True
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


def test_removing_a_bridge_with_a_live_session_is_asked_for_on_a_terminal(
    seeded: Lab, session_on_mesh: None, tmp_path: Path
) -> None:
    path = state_file(tmp_path, MESH_GONE, "gone.json")
    argv = seeded.exec_argv([sys.executable, "-m", "op_dbus", "apply", path])

    code, output = on_terminal(argv, "n")  # the default is no
    assert code == 2, output
    assert "mesh holds 10.0.0.1, the local end of live TCP sessions" in output
    assert "nothing changed" in output
    assert "mesh" in vsctl(seeded, "list-br").split()

    code, output = on_terminal(argv, "y")
    assert code == 0, output
    assert vsctl(seeded, "list-br").split() == ["ovsbr0"]


def test_off_a_terminal_dangerous_actions_are_refused_without_yes(
    seeded: Lab, session_on_mesh: None, tmp_path: Path
) -> None:
    path = state_file(tmp_path, MESH_GONE, "gone.json")
    before = (vsctl(seeded, "list-br"), addresses(seeded), default_routes(seeded))

    refused = opdbus(seeded, "apply", path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "delete net:bridge/mesh" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (vsctl(seeded, "list-br"), addresses(seeded), default_routes(seeded)) == before

    shown = opdbus(seeded, "diff", "--json", path)
    plan = json.loads(shown.stdout)
    assert plan["dangerous"] == ["delete net:bridge/mesh"] and plan["summary"]["dangerous"] == 1

    apply_ok(seeded, path, "--yes")
    assert vsctl(seeded, "list-br").split() == ["ovsbr0"]


def test_a_gateway_that_stops_answering_rolls_the_change_back_by_itself(
    seeded: Lab, tmp_path: Path
) -> None:
    """The new gateway nobody answers for: the probe after the change fails, and the old
    route comes back without anyone confirming or waiting for a deadline."""
    moved = {
        "name": "ovsbr0",
        "type": "ovs-bridge",
        "ipv4": {"address": [{"ip": "192.168.1.10", "prefix": 24}], "gateway": "192.168.1.254"},
    }
    result = opdbus(seeded, "apply", "--yes", state_file(tmp_path, {"interfaces": [moved]}))

    assert result.returncode == 4, result.stdout + result.stderr
    assert "default gateway 192.168.1.254 answers" in result.stdout
    (route,) = default_routes(seeded)
    assert (route["gateway"], route["dev"]) == ("192.168.1.1", "ovsbr0")
    run_in_lab(seeded, "ping", "-c", "1", "-W", "3", "192.168.1.1")


def test_a_probe_target_that_stops_answering_rolls_back_a_harmless_looking_change(
    seeded: Lab, tmp_path: Path
) -> None:
    more = {
        "name": "ovsbr0",
        "type": "ovs-bridge",
        "ipv4": {"address": [{"ip": "192.168.1.11", "prefix": 24}]},
    }
    path = state_file(tmp_path, {"interfaces": [more]})
    result = opdbus(seeded, "apply", "--probe", "192.168.1.99", path)  # nobody has .99

    assert result.returncode == 4, result.stdout + result.stderr
    assert "192.168.1.99 answers" in result.stdout
    assert addresses(seeded)["ovsbr0"] == {"192.168.1.10/24"}

    apply_ok(seeded, path, "--probe", "192.168.1.1")  # one that answers: kept
    assert addresses(seeded)["ovsbr0"] == {"192.168.1.10/24", "192.168.1.11/24"}


def ledger_path(lab: Lab) -> Path:
    return Path(lab.data_dir) / "runtime.json"


@pytest.fixture
def daemon_with(seeded: Lab, tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []
    ledger_path(seeded).unlink(missing_ok=True)

    def start(state: dict[str, Any], *args: str) -> tuple[Daemon, Path]:
        path = tmp_path / "daemon-state.json"
        path.write_text(json.dumps({"version": 1, "plugins": {"net": state}}))
        daemon = Daemon(seeded, path, *args)
        started.append(daemon)
        daemon.wait_message("READY=1")
        return daemon, path

    yield start
    for daemon in started:
        daemon.close()
    ledger_path(seeded).unlink(missing_ok=True)


def rewrite(path: Path, net: dict[str, Any]) -> None:
    staged = path.with_suffix(".new")
    staged.write_text(json.dumps({"version": 1, "plugins": {"net": net}}))
    staged.rename(path)  # how editors and NixOS switch a file


def test_the_daemons_reload_prunes_runs_dangerous_actions_probed_and_logs_them(
    seeded: Lab, session_on_mesh: None, daemon_with: Any
) -> None:
    """The rule (docs/decisions.md): the daemon's state file is authoritative and nobody is
    there to ask, so its dangerous actions run, logged, as a probed try."""
    daemon, path = daemon_with(SEED_NET)
    uplink_only = {"interfaces": [SEED_NET["interfaces"][0]]}
    rewrite(path, uplink_only)
    wait_for(lambda: vsctl(seeded, "list-br").split() == ["ovsbr0"], 30, "mesh pruned")
    wait_for(lambda: "dangerous, ran: delete net:bridge/mesh" in daemon.output(), 10, "logged")

    broken = json.loads(json.dumps(uplink_only))
    broken["interfaces"][0]["ipv4"]["gateway"] = "192.168.1.254"
    rewrite(path, broken)
    wait_for(lambda: "probe failed" in daemon.output(), 30, "the probe's verdict")
    (route,) = default_routes(seeded)
    assert route["gateway"] == "192.168.1.1", "rolled back: the old gateway is the route again"


def test_reload_on_change_no_waits_for_sighup(seeded: Lab, daemon_with: Any) -> None:
    daemon, path = daemon_with(SEED_NET, "--reload-on-change=no")
    rewrite(
        path,
        {
            "interfaces": [
                *SEED_NET["interfaces"],
                {"name": "extra0", "type": "ovs-bridge", "datapath": "netdev"},
            ]
        },
    )
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "extra0" in vsctl(seeded, "list-br").split(), 30, "applied on SIGHUP")
    assert "changed: reloading" not in daemon.output(), "the file was not watched"


def test_through_the_daemon_the_cli_needs_the_same_consent(
    seeded: Lab, session_on_mesh: None, daemon_with: Any, tmp_path: Path
) -> None:
    daemon_with(SEED_NET)
    path = state_file(tmp_path, MESH_GONE, "gone.json")
    refused = opdbus(seeded, "apply", path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "(through the running op-dbus daemon)" in refused.stdout
    assert "mesh" in vsctl(seeded, "list-br").split()

    done = opdbus(seeded, "apply", "--yes", path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert vsctl(seeded, "list-br").split() == ["ovsbr0"]
