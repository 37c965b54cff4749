"""The argv that runs a command inside a lab network namespace.

Not `ip netns exec`: that remounts /sys and so hides /sys/fs/cgroup, and liblxc then starts
containers without any cgroup. Here the command gets the namespace's own sysfs (so /sys/class/net
shows the lab's devices, as tools expect) with the host's cgroup tree bound back into it, all in a
private mount namespace that nothing outside sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from op_dbus.lab.netns import NETNS_DIR

_SCRIPT = (
    'mount -t sysfs sysfs "$0" && mount --rbind /sys/fs/cgroup "$0/fs/cgroup" '
    '&& mount --move "$0" /sys && exec "$@"'
)


def argv(netns: str, sysfs_mnt: Path, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """`command` in `netns` with `env` added; `sysfs_mnt` is an empty directory used in passing."""
    return [
        "nsenter", f"--net={NETNS_DIR / netns}", "--",
        "unshare", "--mount", "--propagation", "slave", "--",
        "sh", "-c", _SCRIPT, str(sysfs_mnt),
        "env", *(f"{k}={v}" for k, v in env.items()),
        *command,
    ]  # fmt: skip
