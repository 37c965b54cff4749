"""The key layout under `/op-dbus/v1/` (docs/fleet.md lists it with the values' shapes).

Everything an agent needs to compute its desired state lives under DESIRED, so one watch of
that prefix tells it every change; what agents write (status, liveness, checkpoints) lives
beside it and reaches no agent's watch.
"""

from __future__ import annotations

import re

from op_dbus.errors import InvalidInput

PREFIX = "/op-dbus/v1/"
DESIRED = PREFIX + "desired/"
HOST_STATE = DESIRED + "hosts/"
GROUP_STATE = DESIRED + "groups/"
MEMBERS = DESIRED + "members/"
ACTIVE_ROLLOUT = DESIRED + "rollouts/"
STATUS = PREFIX + "status/"
ALIVE = PREFIX + "alive/"
CHECKPOINTS = PREFIX + "checkpoints/"
SIGNERS = PREFIX + "signers/"
ROLLOUTS = PREFIX + "rollouts/"

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def check_name(name: str, what: str) -> str:
    """A host or group name: 1-63 of a-z, 0-9, '.', '_', '-' (it becomes part of a key)."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(f"{what} {name!r}: use 1-63 of a-z, 0-9, '.', '_', '-'")
    return name


def host_state(host: str) -> str:
    return HOST_STATE + host


def group_state(group: str) -> str:
    return GROUP_STATE + group


def member(group: str, host: str) -> str:
    return f"{MEMBERS}{group}/{host}"


def rollout_state(group: str) -> str:
    """The state a rollout of `group` brings, for the hosts it released so far."""
    return f"{ACTIVE_ROLLOUT}{group}/state"


def rollout_release(group: str, host: str) -> str:
    """Present once the rollout of `group` released `host` (its own key, so releasing the
    next hosts changes nothing an earlier one reads)."""
    return f"{ACTIVE_ROLLOUT}{group}/hosts/{host}"


def rollout_releases(group: str) -> str:
    return f"{ACTIVE_ROLLOUT}{group}/hosts/"


def rollout_prefix(group: str) -> str:
    return f"{ACTIVE_ROLLOUT}{group}/"


def status(host: str) -> str:
    return STATUS + host


def alive(host: str) -> str:
    return ALIVE + host


def checkpoints(host: str) -> str:
    return f"{CHECKPOINTS}{host}/"


def checkpoint(host: str, number: int) -> str:
    """The host's `number`th published checkpoint; zero-padded, so a prefix read lists them
    oldest first. Numbered, not sized: a rewritten ledger reaching an old size again cannot
    overwrite what was published at that size."""
    return f"{CHECKPOINTS}{host}/{number:012d}"


def signer(host: str) -> str:
    return SIGNERS + host


def rollout_record(rollout_id: str) -> str:
    return ROLLOUTS + rollout_id


def tail(key: str, prefix: str) -> str | None:
    """The part of `key` after `prefix` (None: not under it)."""
    return key[len(prefix) :] if key.startswith(prefix) else None
