"""State files that would run code as root, applied for real in the lab: refused before anything.

A container `veth` of `v$(id>q)` used to pass validation; liblxc then ran it through `sh -c`
in the `script.up` hook op-dbus configures, and `/q` appeared on the host, owned by root. A
newline in `template` wrote a config line of the user's into the container's config. Both are
now exit 2 at validation, naming the field, with nothing on the host changed (cross-checked
with lxc-ls and ovs-vsctl).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from op_dbus.lab import Lab, run_in_lab
from op_dbus.lab.lxc import drop_empty_cgroups

SEED = json.loads((Path(__file__).parents[2] / "examples" / "full-mode.json").read_text())
HOOK_OUTPUT = Path("/q")
"""Where `v$(id>q)` wrote: liblxc runs the hooks of a daemonized container from `/`."""


def opdbus(lab: Lab, cwd: Path, *args: str) -> tuple[int, str]:
    """op-dbus run from `cwd`, where a hook that inherits it would write."""
    argv = lab.exec_argv([sys.executable, "-m", "op_dbus", *args])
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    return result.returncode, result.stdout + result.stderr


def containers(lab: Lab) -> list[str]:
    listing = run_in_lab(lab, "lxc-ls", "-P", str(lab.lxc_path), "-1").stdout
    return listing.split()


def bridges(lab: Lab) -> list[str]:
    return run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()


def reset(lab: Lab) -> None:
    """No container and no bridge (what an old, unguarded apply would have left is removed)."""
    for name in containers(lab) if lab.lxc_path.is_dir() else []:
        run_in_lab(lab, "lxc-destroy", "-P", str(lab.lxc_path), "-n", name, "-f", check=False)
    for ct in SEED["lxc"]["containers"]:  # a rolled-back start leaves its (empty) cgroups
        drop_empty_cgroups(ct["name"])
    for bridge in bridges(lab):
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "del-br", bridge)
    run_in_lab(lab, "ip", "route", "flush", "exact", "0.0.0.0/0", check=False)


@pytest.fixture
def clean(lab: Lab) -> Iterator[Lab]:
    assert not HOOK_OUTPUT.exists(), f"{HOOK_OUTPUT} exists before the test; remove it first"
    reset(lab)
    try:
        yield lab
    finally:
        reset(lab)
        HOOK_OUTPUT.unlink(missing_ok=True)  # it was not there before: this test's hook made it


def test_shell_syntax_in_a_veth_name_is_refused_before_any_hook_runs(
    clean: Lab, tmp_path: Path
) -> None:
    state = copy.deepcopy(SEED)
    state["lxc"]["containers"][0]["veth"] = "v$(id>q)"
    path = tmp_path / "hostile-veth.json"
    path.write_text(json.dumps(state))

    code, output = opdbus(clean, tmp_path, "apply", str(path))

    ran = [str(p) for p in (HOOK_OUTPUT, tmp_path / "q") if p.exists()]
    assert not ran, f"the hook ran the name as a command, which wrote {ran}"
    assert code == 2, output
    assert "lxc.containers[0].veth: must be 1 to 15 characters from A-Z, a-z, 0-9" in output
    assert '"$" is not allowed' in output and "Traceback" not in output
    assert containers(clean) == [] and bridges(clean) == []


def test_a_newline_in_template_is_refused_before_any_config_line_is_written(
    clean: Lab, tmp_path: Path
) -> None:
    marker = tmp_path / "pre-start-ran"
    state = copy.deepcopy(SEED)
    state["lxc"]["containers"][0]["template"] = f"busybox\nlxc.hook.pre-start = /bin/touch {marker}"
    path = tmp_path / "hostile-template.json"
    path.write_text(json.dumps(state))

    code, output = opdbus(clean, tmp_path, "apply", str(path))

    assert code == 2, output
    assert "lxc.containers[0].template: must be words of" in output
    assert '"\\n" is not allowed' in output and "Traceback" not in output
    assert not marker.exists()
    assert containers(clean) == [] and bridges(clean) == []
    assert not (clean.lxc_path / "gateway").exists()
