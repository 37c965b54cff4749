"""Checks against the host: bridges the file relies on but does not declare.

Loading never looks at the host; the CLI calls this with what it found (or None when the
host could not be asked), so a file written for another machine still loads.
"""

from __future__ import annotations

from typing import Literal

from op_dbus.model.errors import FieldWarning
from op_dbus.model.paths import Loc, format_path
from op_dbus.model.state import PORT_TYPES, StateFile


def host_warnings(
    state: StateFile,
    host_bridges: set[str] | None,
    shape: Literal["plugins", "stateConfig"],
) -> list[FieldWarning]:
    """A warning for each container or port on a bridge that neither the file nor the host has."""
    base: Loc = ("plugins",) if shape == "plugins" else ()
    net, lxc = state.plugins.net, state.plugins.lxc
    declared = {iface.name for iface in net.interfaces} if net else set()
    wanted: list[tuple[Loc, str]] = []
    if net:
        wanted += [
            ((*base, "net", "interfaces", i, "bridge"), iface.bridge)
            for i, iface in enumerate(net.interfaces)
            if iface.type in PORT_TYPES and iface.bridge
        ]
    if lxc:
        wanted += [
            ((*base, "lxc", "containers", i, "bridge"), ct.bridge)
            for i, ct in enumerate(lxc.containers)
            if ct.bridge and ct.state == "present"
        ]
    warnings = []
    for loc, bridge in wanted:
        if bridge in declared or (host_bridges is not None and bridge in host_bridges):
            continue
        if host_bridges is None:
            why = "the host was not checked, so it must already exist there"
        else:
            why = "the host has no such bridge"
        warnings.append(
            FieldWarning(
                format_path(loc), f'bridge "{bridge}" is not declared in this file and {why}'
            )
        )
    return warnings
