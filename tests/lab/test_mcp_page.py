"""The live page in headless Chromium against the lab, served by the daemon (`op-dbus run
--mcp-http`, policy observe: it reports drift and leaves it): after the seed's Full-mode apply
it shows every bridge (ovs-vsctl's word) and every container (lxc-ls's), and it follows the
host without a reload: a declared port deleted with ovs-vsctl is marked missing on its own
element until it is re-applied; a port nobody declared is shown unmarked, and goes from the
page when it goes from the host."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_daemon_lab import Daemon
from test_lxc_apply import SEED, containers, opdbus, reset, write

from op_dbus.lab import Lab, run_in_lab

DRIVER = Path(__file__).with_name("page_driver.py")
PORT = 9574
EXTRA = "pagep1"
UNDECLARED = "pagex1"


@pytest.fixture
def seeded(lab: Lab, tmp_path: Path) -> Iterator[tuple[Lab, Path]]:
    """The seed (and EXTRA, a declared internal port on mesh) applied; its state file."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian chromium and chromium-driver are missing: run scripts/install-deps")
    reset(lab, tmp_path)
    state = copy.deepcopy(SEED)
    mesh = next(i for i in state["net"]["interfaces"] if i["name"] == "mesh")
    mesh["ports"] = [EXTRA]
    state["net"]["interfaces"].append({"name": EXTRA, "type": "ovs-internal", "bridge": "mesh"})
    path = Path(write(tmp_path, state))
    done = opdbus(lab, "apply", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    runtime = Path(lab.data_dir) / "runtime.json"
    runtime.unlink(missing_ok=True)
    try:
        yield lab, path
    finally:
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-port", UNDECLARED)
        runtime.unlink(missing_ok=True)
        reset(lab, tmp_path)


class Page:
    def __init__(self, lab: Lab, url: str, token: str) -> None:
        self.proc = subprocess.Popen(
            lab.exec_argv([sys.executable, str(DRIVER), url, token]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert json.loads(self.read()) == {"ready": True}

    def read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, f"the page driver ended (exit {self.proc.poll()})"
        return line

    def ask(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.read())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def test_the_page_shows_the_host_and_marks_a_deleted_port_until_it_is_repaired(
    seeded: tuple[Lab, Path], tmp_path: Path
) -> None:
    lab, state = seeded
    token = run_in_lab(lab, sys.executable, "-m", "op_dbus", "mcp", "token").stdout.strip()
    daemon = Daemon(lab, state, "--policy", "observe", "--mcp-http", f"127.0.0.1:{PORT}")
    page = None
    try:
        daemon.wait_message("READY=1")
        page = Page(lab, f"http://127.0.0.1:{PORT}", token)
        seen = page.ask(cmd="seen")
        bridges = run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()
        assert seen["bridges"] == sorted(bridges)
        assert seen["containers"] == sorted(containers(lab))
        assert {EXTRA, "vi100", "vi101", "vi102"} <= set(seen["ports"])
        assert seen["drift"] == {}, "the host matches its state file: nothing is marked"

        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "add-port", "mesh", UNDECLARED, "--",
                   "set", "interface", UNDECLARED, "type=internal")  # fmt: skip
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "del-port", "mesh", EXTRA)
        shown = page.ask(cmd="wait_drift", resource=f"port/{EXTRA}", drift="create", timeout=30)
        assert shown == {"drift": "create"}, "the deleted port is marked missing"
        seen = page.ask(cmd="seen")
        assert EXTRA in seen["ports"] and UNDECLARED in seen["ports"]
        assert seen["drift"] == {f"port/{EXTRA}": "create"}, "not the undeclared port"
        assert set(seen["bridges"]) == set(bridges)
        shot = tmp_path / "mcp-page.png"
        page.ask(cmd="shot", path=str(shot))
        assert shot.stat().st_size > 10_000

        repaired = opdbus(lab, "apply", str(state))  # through the daemon: a runtime change
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert EXTRA in run_in_lab(lab, "ovs-vsctl", "list-ports", "mesh").stdout.split()
        shown = page.ask(cmd="wait_drift", resource=f"port/{EXTRA}", drift=None, timeout=30)
        assert shown == {"drift": None}, "repaired: the mark is gone"
        assert page.ask(cmd="seen")["drift"] == {}

        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "del-port", "mesh", UNDECLARED)
        assert page.ask(cmd="wait_gone", port=UNDECLARED, timeout=30) == {"gone": True}
        assert page.ask(cmd="seen")["drift"] == {}, "nobody declared it: gone is not missing"
    finally:
        if page is not None:
            page.close()
        daemon.close()
