"""The firewall plugin: op-dbus's nftables tables and net.ipv4.ip_forward (docs/firewall.md).

Two resources: `ruleset` (both our tables, replaced whole in one `nft -j -f -` transaction)
and `forward` (the sysctl). A field the file leaves out keeps the host's value, so the rule
set applied is the host's section with the file's fields laid over it; a checkpoint names
every field, which makes rollback the same operation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from op_dbus.errors import Refused
from op_dbus.native import nftables
from op_dbus.plugins.base import (
    Action,
    ActionKind,
    ApplyError,
    Availability,
    Mismatch,
    Plugin,
    Section,
    Steps,
    report,
)
from op_dbus.plugins.firewall.ruleset import RULESET_FIELDS, TABLES, parse, render

PLUGIN = "firewall"
FILTER_FIELDS = ("allow_tcp", "allow_udp", "trusted_interfaces")
"""Fields only the input filter applies: meaningless while `enable` is off."""


def _wanted(current: Section, desired: Section) -> dict[str, Any]:
    """The ruleset fields after the change: the file's where it has them, else the host's;
    with the filter off, its lists are empty (they live in its chain)."""
    wanted = {key: desired.get(key, current.get(key)) for key in RULESET_FIELDS}
    if not wanted.get("enable"):
        wanted |= {key: [] for key in FILTER_FIELDS}
    return wanted


def diff_firewall(current: Section, desired: Section, *, exhaustive: bool = False) -> list[Action]:
    """At most one `ruleset` modify (also when our tables hold anything the section would not
    render: hand edits are drift) and one `forward` modify, in that order. `exhaustive` needs
    nothing more: a checkpoint lists every field."""
    actions = []
    have = {key: current.get(key) for key in RULESET_FIELDS}
    after = _wanted(current, desired)
    if after != have or current.get("unrecognised"):
        drift = current.get("unrecognised")
        before = have | ({"unrecognised": list(drift)} if drift else {})
        # hand edits in our tables are shown going away (the apply rebuilds the tables)
        after = after | ({"unrecognised": []} if drift else {})
        actions.append(Action(PLUGIN, ActionKind.MODIFY, "ruleset", before, after))
    forward = desired.get("forward")
    if forward is not None and forward != current.get("forward"):
        actions.append(
            Action(
                PLUGIN,
                ActionKind.MODIFY,
                "forward",
                {"forward": current.get("forward")},
                {"forward": forward},
            )
        )
    return actions


@dataclass
class FirewallPlugin(Plugin):
    """nftables through `nft -j` and the sysctl, both in op-dbus's own network namespace."""

    name: ClassVar[str] = PLUGIN

    async def available(self) -> Availability:
        if nftables.nft_path() is None:
            return Availability(False, "nft not found (install the nftables package)")
        try:
            await nftables.list_ruleset()
        except (nftables.NftError, ValueError) as exc:
            return Availability(False, str(exc))
        return Availability(True)

    async def query(self, scope: Section | None = None) -> Section:
        """Our tables read back from `nft -j list ruleset` (others' are never read into it),
        and the sysctl."""
        ours = nftables.tables_of(await nftables.list_ruleset(), TABLES)
        return parse(ours) | {"forward": nftables.ip_forward()}

    async def check(
        self, current: Section, desired: Section, document: Mapping[str, Section]
    ) -> None:
        if not _wanted(current, desired).get("enable"):
            given = [key for key in FILTER_FIELDS if desired.get(key)]
            if given:
                raise Refused(
                    "firewall/ruleset",
                    f"{' and '.join(given)} would apply only with the input filter on"
                    " (enable: true), which this file and the host leave off",
                )

    def diff(
        self, current: Section, desired: Section, *, exhaustive: bool = False, prune: bool = False
    ) -> list[Action]:
        return diff_firewall(current, desired, exhaustive=exhaustive)

    async def apply(self, actions: list[Action], steps: Steps | None = None) -> list[Action]:
        """The rule set first (one transaction: all or nothing), then the sysctl."""
        done: list[Action] = []
        for action in actions:
            report(steps, [action], False)
            try:
                if action.resource == "ruleset":
                    await nftables.transact(render(action.after))
                else:
                    nftables.set_ip_forward(bool(action.after["forward"]))
            except nftables.NftError as exc:
                raise ApplyError(action, str(exc), done) from None
            except OSError as exc:
                reason = f"net.ipv4.ip_forward: {exc.strerror or exc}"
                raise ApplyError(action, reason, done) from None
            done.append(action)
            report(steps, [action], True)
        return done

    async def verify(self, desired: Section) -> list[Mismatch]:
        current = await self.query(desired)
        found = []
        for action in diff_firewall(current, desired):
            before = action.before or {}
            for key, value in (action.after or {}).items():
                if before.get(key) != value:
                    found.append(
                        Mismatch(f"firewall/{action.resource}", key, value, before.get(key))
                    )
        return found
