"""Reading the host as a whole, for `query`, `init --introspect` and the daemon's cache."""

from __future__ import annotations

from collections.abc import Iterable

from op_dbus.endpoints import Endpoints
from op_dbus.engine.plan import describe_error
from op_dbus.plugins import make_plugin
from op_dbus.plugins.base import Plugin, Section


async def read_section(plugin: Plugin) -> tuple[Section | None, str]:
    """The plugin's whole section, or None and why it cannot be read (never raises: one
    plugin's failure is reported while the others still answer)."""
    try:
        availability = await plugin.available()
        if not availability.ok:
            return None, availability.reason
        return await plugin.query(), ""
    except Exception as exc:
        return None, f"query failed: {describe_error(exc)}"


async def introspect_host(
    names: Iterable[str], endpoints: Endpoints
) -> tuple[dict[str, Section], dict[str, str]]:
    """Query each named plugin; return the sections read and, per plugin skipped, why."""
    sections: dict[str, Section] = {}
    skipped: dict[str, str] = {}
    for name in names:
        plugin = make_plugin(name, endpoints)
        try:
            section, reason = await read_section(plugin)
        finally:
            await plugin.close()
        if section is None:
            skipped[name] = reason
        else:
            sections[name] = section
    return sections, skipped
