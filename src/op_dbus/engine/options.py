"""How a change is to be made: one value every layer passes on (CLI, MCP, fleet agent ->
API -> D-Bus -> daemon -> Host) instead of each repeating the same keyword arguments.

Its JSON form is the D-Bus `Apply` options object; `to_json` writes it and `from_json`
checks a caller's (hostile) one, both here, so the two sides cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from op_dbus.engine.probe import Target, parse_targets
from op_dbus.errors import InvalidInput

MAX_ACTOR = 1024
MAX_ACKNOWLEDGED = 256
HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ApplyOptions:
    """Everything about a change but the desired state itself (and the callbacks that show
    its progress). Fields are those of `Host.apply`, which says what each does."""

    actor: str
    """Who asks, for the journal and the ledger."""
    mode: str
    """The mode the change is recorded under (a daemon records its own)."""
    confirm_within: float | None = None
    """A try: rolled back unless confirmed within this many seconds."""
    expect_revision: str | None = None
    """Refused unless the host still reads as it did for the plan of this revision."""
    prune: bool = False
    """The document is authoritative: owned resources it does not list go."""
    acknowledge: bool | tuple[str, ...] = False
    """Consent to dangerous actions: True for all, else the plan's `dangerous` entries."""
    probes: tuple[Target, ...] = field(default=())
    """Targets a connectivity change must still reach, besides the gateway."""
    repair: bool = False
    """The daemon's drift repair (never sent over D-Bus)."""

    def __post_init__(self) -> None:  # lists from a caller become tuples: the value is frozen
        if not isinstance(self.acknowledge, bool):
            object.__setattr__(self, "acknowledge", tuple(self.acknowledge))
        object.__setattr__(self, "probes", tuple(self.probes))

    def to_json(self) -> dict[str, Any]:
        """The D-Bus options object (without `mode` and `repair`: those are the daemon's)."""
        shown: dict[str, Any] = {"actor": self.actor, "confirm_within": self.confirm_within}
        if self.expect_revision is not None:
            shown["expect_revision"] = self.expect_revision
        if self.prune:
            shown["prune"] = True
        if self.acknowledge is True:
            shown["acknowledge"] = True
        elif self.acknowledge:
            shown["acknowledge"] = list(self.acknowledge)
        if self.probes:
            shown["probe"] = [target.describe() for target in self.probes]
        return shown

    @classmethod
    def from_json(cls, options: Mapping[str, Any], *, mode: str) -> ApplyOptions:
        """A caller's options object, every field checked and bounded (InvalidInput naming
        `options.<field>`); `mode` is the receiver's."""
        seconds = options.get("confirm_within")
        if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
            raise InvalidInput("options.confirm_within must be a whole number of seconds")
        revision = options.get("expect_revision")
        if revision is not None and not (
            isinstance(revision, str) and len(revision) == 64 and set(revision) <= HEX
        ):
            raise InvalidInput("options.expect_revision must be a plan's revision (64 hex digits)")
        return cls(
            actor=claimed_actor(options),
            mode=mode,
            confirm_within=seconds,
            expect_revision=revision,
            prune=prune_option(options),
            acknowledge=_acknowledge(options.get("acknowledge")),
            probes=_probes(options.get("probe")),
        )


def claimed_actor(options: Mapping[str, Any]) -> str:
    """What a caller says it is (`options.actor`), recorded beside what vouches for it."""
    claimed = options.get("actor", "")
    if not isinstance(claimed, str) or len(claimed) > MAX_ACTOR or not claimed.isprintable():
        raise InvalidInput(
            f"options.actor must be printable text of at most {MAX_ACTOR} characters"
        )
    return claimed


def prune_option(options: Mapping[str, Any]) -> bool:
    prune = options.get("prune", False)
    if not isinstance(prune, bool):
        raise InvalidInput("options.prune must be true or false")
    return prune


def _acknowledge(value: Any) -> bool | tuple[str, ...]:
    if value is None or value is True or value is False:
        return bool(value)
    if (
        not isinstance(value, list)
        or len(value) > MAX_ACKNOWLEDGED
        or not all(isinstance(v, str) and len(v) <= 256 and v.isprintable() for v in value)
    ):
        raise InvalidInput(
            "options.acknowledge must be true or a list of at most "
            f"{MAX_ACKNOWLEDGED} of the plan's `dangerous` entries"
        )
    return tuple(value)


def _probes(value: Any) -> tuple[Target, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= 64 for v in value):
        raise InvalidInput("options.probe must be a list of ADDR or ADDR:PORT")
    return parse_targets(value)
