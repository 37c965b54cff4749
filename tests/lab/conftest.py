"""The lab for tests: one session-wide lab per pytest process, of real OVS, systemd and LXC.

Every test under tests/lab/ is marked `lab` and skipped unless run as root. The lab is torn down
when the session ends, and a leftover one from a crashed run is removed before it comes up.
Run commands inside it with `op_dbus.lab.run_in_lab(lab, *argv, check=True)`; for op-dbus itself
use `run_in_lab(lab, sys.executable, "-m", "op_dbus", ...)`.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_fixtures import PrivateOvs, private_ovs

from op_dbus.lab import Lab
from op_dbus.lab.lab import RUN_ROOT

TEST_LAB_PREFIX = "opdbus-t"
TEST_LAB = f"{TEST_LAB_PREFIX}{os.getpid()}"
"""One lab per pytest process, so concurrent runs never tear down each other's lab."""
NOT_ROOT = "lab tests need root (network namespaces, mounts, cgroups, nspawn, LXC)"
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.lab)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason=NOT_ROOT))


def remove_orphaned_test_labs() -> None:
    """Take down test labs whose pytest process is gone (a crashed or killed run)."""
    names = {p.name for p in RUN_ROOT.glob(f"{TEST_LAB_PREFIX}*")}
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    names |= {line.split()[0].removesuffix("-up") for line in listing.stdout.splitlines() if line}
    for name in names:
        pid = name.removeprefix(TEST_LAB_PREFIX).removesuffix("-b")  # -b: a second lab
        if name.startswith(TEST_LAB_PREFIX) and pid.isdigit() and not Path(f"/proc/{pid}").exists():
            Lab(name).down()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The session's lab, up (the rootfs is built first if missing: about a minute, once)."""
    if os.geteuid() != 0:
        pytest.skip(NOT_ROOT)
    remove_orphaned_test_labs()
    cgroups_before = lxc_cgroups()
    the_lab = Lab(TEST_LAB)
    try:
        the_lab.up()
        yield the_lab
    finally:
        left = the_lab.down()
        assert not left, f"lab {TEST_LAB} left behind: {left}"
        stray = sorted(lxc_cgroups() - cgroups_before)
        assert not stray, f"containers of the test run left cgroups behind: {stray}"


def lxc_cgroups() -> set[Path]:
    """liblxc's per-container cgroups on the machine (the cgroup trees are host-wide)."""
    return set(Path("/sys/fs/cgroup").glob("*/lxc.*"))


@pytest.fixture
def lab_env(lab: Lab) -> dict[str, str]:
    """os.environ with the lab's endpoints (OPDBUS_*, OVS_RUNDIR, DBUS_SYSTEM_BUS_ADDRESS)."""
    return {**os.environ, **lab.env()}


@pytest.fixture
def ovs() -> Iterator[PrivateOvs]:
    """A private ovsdb-server of the test's own (no vswitchd), outside the lab."""
    with private_ovs() as instance:
        yield instance
