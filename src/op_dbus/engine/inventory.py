"""Reading the host as a whole, for `query` and `init --introspect`."""

from __future__ import annotations

from collections.abc import Iterable

from op_dbus.endpoints import Endpoints
from op_dbus.plugins import make_plugin
from op_dbus.plugins.base import Section

NOT_IMPLEMENTED = "not implemented yet"


async def introspect_host(
    names: Iterable[str], endpoints: Endpoints
) -> tuple[dict[str, Section], dict[str, str]]:
    """Query each named plugin; return the sections read and, per plugin skipped, why."""
    sections: dict[str, Section] = {}
    skipped: dict[str, str] = {}
    for name in names:
        plugin = make_plugin(name, endpoints)
        if plugin is None:
            skipped[name] = NOT_IMPLEMENTED
            continue
        try:
            availability = await plugin.available()
            if not availability.ok:
                skipped[name] = availability.reason
                continue
            sections[name] = await plugin.query()
        except Exception as err:  # a plugin's failure is reported, the others still answer
            skipped[name] = f"query failed: {err}"
        finally:
            await plugin.close()
    return sections, skipped
