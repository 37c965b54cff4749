"""The live page in headless Chromium against the lab: after the seed's Full-mode apply it
shows every bridge (ovs-vsctl's word) and every container (lxc-ls's), and it follows the
host: a port deleted with ovs-vsctl disappears from the page without a reload."""

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
from test_lxc_apply import SEED, containers, opdbus, reset, write

from op_dbus.lab import Lab, run_in_lab

DRIVER = Path(__file__).with_name("page_driver.py")
PORT = 9574
EXTRA = "pagep1"


@pytest.fixture
def seeded(lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.fail("Debian chromium and chromium-driver are missing: run scripts/install-deps")
    reset(lab, tmp_path)
    state = copy.deepcopy(SEED)
    mesh = next(i for i in state["net"]["interfaces"] if i["name"] == "mesh")
    mesh["ports"] = [EXTRA]
    state["net"]["interfaces"].append({"name": EXTRA, "type": "ovs-internal", "bridge": "mesh"})
    done = opdbus(lab, "apply", write(tmp_path, state))
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        yield lab
    finally:
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


def test_the_page_shows_the_host_and_follows_a_deleted_port(seeded: Lab, tmp_path: Path) -> None:
    lab = seeded
    token = run_in_lab(lab, sys.executable, "-m", "op_dbus", "mcp", "token").stdout.strip()
    argv = [sys.executable, "-m", "op_dbus", "mcp", "--http", f"127.0.0.1:{PORT}"]
    server = subprocess.Popen(lab.exec_argv(argv), stderr=subprocess.DEVNULL)
    page = None
    try:
        page = Page(lab, f"http://127.0.0.1:{PORT}", token)
        seen = page.ask(cmd="seen")
        bridges = run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()
        assert seen["bridges"] == sorted(bridges)
        assert seen["containers"] == sorted(containers(lab))
        assert {EXTRA, "vi100", "vi101", "vi102"} <= set(seen["ports"])
        shot = tmp_path / "mcp-page.png"
        page.ask(cmd="shot", path=str(shot))
        assert shot.stat().st_size > 10_000

        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "del-port", "mesh", EXTRA)
        assert page.ask(cmd="wait_gone", port=EXTRA, timeout=30) == {"gone": True}
        assert set(page.ask(cmd="seen")["bridges"]) == set(bridges)
    finally:
        if page is not None:
            page.close()
        server.terminate()
        server.wait(timeout=30)
