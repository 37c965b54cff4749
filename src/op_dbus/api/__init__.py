"""The one API every front end uses: `connect()` answers through the daemon when one runs,
and works locally over the engine's transaction service otherwise.

Both implementations return the same JSON-shaped values (a plan as `Plan.to_json()`, a change
as `Change.to_json()`), so what a user sees does not depend on the way in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import Progress
from op_dbus.engine.lock import DEFAULT_WAIT
from op_dbus.engine.options import ApplyOptions
from op_dbus.plugins.base import Section


class HostApi(Protocol):
    """What a front end may ask of the host. Errors are `op_dbus.errors.OpError` kinds."""

    via: str
    """"daemon" or "local": where the work runs (for messages and `status`)."""

    async def query(self, names: Iterable[str]) -> dict[str, Any]:
        """`{"state": {"version": 1, "plugins": {...}}, "skipped": {name: why}}`."""

    async def plan(self, sections: dict[str, Section], *, prune: bool = False) -> dict[str, Any]:
        """The plan (`Plan.to_json()`); `prune`: the document is authoritative."""

    async def apply(
        self,
        sections: dict[str, Section],
        options: ApplyOptions,
        *,
        progress: Progress | None = None,
        on_plan: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """`{"plan": ..., "result": ..., "try": {...} | None}`, made as `Host.apply` says
        (`options`); `on_plan` sees the plan before it runs."""

    async def confirm(self, *, actor: str) -> dict[str, Any]: ...

    async def rollback(self, *, actor: str) -> dict[str, Any]: ...

    async def verify(self, sections: dict[str, Section]) -> dict[str, Any]: ...

    async def status(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


async def connect(
    endpoints: Endpoints,
    names: Iterable[str],
    *,
    use_ledger: bool = True,
    daemon: bool = True,
    lock_wait: float = DEFAULT_WAIT,
    catch_signals: bool = False,
) -> HostApi:
    """The daemon when one answers on the system bus (and `daemon`), else a local Host over
    the sections `names` (`catch_signals`: a signal during a change rolls it back; for a
    process that owns its signals, the CLI)."""
    if daemon:
        from op_dbus.api.daemon import DaemonApi

        remote = await DaemonApi.connect(endpoints.system_bus)
        if remote is not None:
            return remote
    from op_dbus.api.local import LocalApi

    return LocalApi(
        endpoints, names, use_ledger=use_ledger, lock_wait=lock_wait, catch_signals=catch_signals
    )
