"""`apply --confirm-within` without a daemon: the command holds the timer in the foreground.

A try nobody confirms is rolled back (exit 4) and the host is as before, by ovs-vsctl's word;
a `yes` keeps it. (With a daemon running, the daemon holds the timer: tests/lab/test_daemon_lab.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from op_dbus.lab import Lab, run_in_lab

TRY_BRIDGE = "trybr0"


@pytest.fixture
def state(lab: Lab, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "try.json"
    bridge = {"name": TRY_BRIDGE, "type": "ovs-bridge", "ports": []}
    path.write_text(json.dumps({"version": 1, "plugins": {"net": {"interfaces": [bridge]}}}))
    yield path
    run_in_lab(lab, "ovs-vsctl", "--if-exists", "del-br", TRY_BRIDGE)


def try_apply(lab: Lab, state: Path, answer: bytes | None) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "op_dbus", "apply", str(state), "--confirm-within", "3"]
    return subprocess.run(
        lab.exec_argv(argv),
        input=answer,
        stdin=subprocess.DEVNULL if answer is None else None,
        capture_output=True,
        timeout=60,
        check=False,
    )


def bridges(lab: Lab) -> list[str]:
    return run_in_lab(lab, "ovs-vsctl", "list-br").stdout.split()


def test_unconfirmed_try_rolls_back(lab: Lab, state: Path) -> None:
    result = try_apply(lab, state, None)
    assert result.returncode == 4, result.stdout + result.stderr
    assert b"not confirmed" in result.stdout
    assert TRY_BRIDGE not in bridges(lab)


def test_confirmed_try_stays(lab: Lab, state: Path) -> None:
    result = try_apply(lab, state, b"yes\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert TRY_BRIDGE in bridges(lab)
