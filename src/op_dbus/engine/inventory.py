"""Reading one section of the host, for the Host's `read` (query, init) and the daemon's cache."""

from __future__ import annotations

from op_dbus.errors import describe_error
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
