"""Where op-dbus finds its peers: configuration, never constants.

Each value is written in the form the peer's own tool takes (`ovs-vsctl --db`,
`busctl --address`, `lxc-* -P`), so one value serves op-dbus and the tool alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

DEFAULT_OVSDB = "unix:/run/openvswitch/db.sock"
DEFAULT_SYSTEM_BUS = "unix:path=/run/dbus/system_bus_socket"
DEFAULT_LXC_PATH = "/var/lib/lxc"
DEFAULT_DATA_DIR = "/var/lib/op-dbus"
DEFAULT_OVS_RUNDIR = "/run/openvswitch"

ENV_NAMES = {
    "ovsdb": "OPDBUS_OVSDB",
    "system_bus": "OPDBUS_SYSTEM_BUS",
    "lxc_path": "OPDBUS_LXC_PATH",
    "data_dir": "OPDBUS_DATA_DIR",
    "ovs_rundir": "OVS_RUNDIR",
}


@dataclass(frozen=True)
class Endpoints:
    ovsdb: str = DEFAULT_OVSDB
    system_bus: str = DEFAULT_SYSTEM_BUS
    lxc_path: str = DEFAULT_LXC_PATH
    data_dir: str = DEFAULT_DATA_DIR
    ovs_rundir: str = DEFAULT_OVS_RUNDIR

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: str | None) -> Endpoints:
        """Defaults, then the environment, then explicit overrides (command-line flags)."""
        env = os.environ if environ is None else environ
        values: dict[str, str] = {}
        for field in fields(cls):
            value = overrides.get(field.name) or env.get(ENV_NAMES[field.name])
            if value:
                values[field.name] = value
        return cls(**values)
