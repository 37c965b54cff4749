"""Plans an agent was shown, by id: `apply_plan` applies exactly one of them, or nothing.

A plan id stands for the state document that was planned, its mode, and the host revision the
plan was read at (`Plan.revision`). Applying it re-plans under the apply lock and is refused
when the revision differs, so an agent never applies what it was not shown. The book is
bounded in count and age: an agent that plans in a loop cannot grow the server.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from op_dbus.errors import InvalidInput
from op_dbus.plugins.base import Section

MAX_PLANS = 64
PLAN_LIFETIME = 30 * 60.0
"""Seconds a plan id stays valid; a plan that old describes a host nobody looked at since."""


@dataclass(frozen=True)
class Shown:
    """One plan as the agent saw it."""

    plan_id: str
    sections: dict[str, Section]
    mode: str
    revision: str
    dangerous: tuple[str, ...]
    reasons: dict[str, tuple[str, ...]]
    """Why each dangerous action is dangerous (the engine's marks), for the user's question."""
    made: float

    def expires(self) -> float:
        return self.made + PLAN_LIFETIME


class PlanBook:
    def __init__(self, *, clock: Any = time.time) -> None:
        self._plans: OrderedDict[str, Shown] = OrderedDict()
        self._clock = clock

    def add(
        self, sections: dict[str, Section], mode: str, plan: dict[str, Any], dangerous: list[str]
    ) -> Shown:
        self._expire()
        shown = Shown(
            plan_id=secrets.token_hex(8),
            sections=sections,
            mode=mode,
            revision=plan["revision"],
            dangerous=tuple(dangerous),
            reasons=dangerous_reasons(plan),
            made=self._clock(),
        )
        self._plans[shown.plan_id] = shown
        while len(self._plans) > MAX_PLANS:
            self._plans.popitem(last=False)
        return shown

    def get(self, plan_id: str) -> Shown:
        self._expire()
        shown = self._plans.get(plan_id)
        if shown is None:
            raise InvalidInput(
                f"plan_id: no plan {plan_id!r} (unknown, already applied, or older than "
                f"{PLAN_LIFETIME / 60:g} minutes): call `plan` again"
            )
        return shown

    def drop(self, plan_id: str) -> None:
        self._plans.pop(plan_id, None)

    def _expire(self) -> None:
        now = self._clock()
        for plan_id in [p for p, s in self._plans.items() if s.expires() <= now]:
            del self._plans[plan_id]


def dangerous_actions(plan: dict[str, Any]) -> list[str]:
    """What the plan itself marks dangerous (`"dangerous"` in its JSON form), as resource
    descriptions; the engine decides what is dangerous, a front end only asks for consent."""
    return [str(item) for item in plan.get("dangerous", [])]


def dangerous_reasons(plan: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """Each dangerous action (named as in `dangerous`: `Action.describe()`) and its reasons."""
    return {
        f"{action['kind']} {action['plugin']}:{action['resource']}": tuple(action["dangerous"])
        for entry in plan.get("plugins") or []
        for action in entry.get("actions") or []
        if action.get("dangerous")
    }


def unacknowledged(shown: Shown, acknowledged: list[str]) -> list[str]:
    """The dangerous actions of `shown` that `acknowledged` does not name."""
    return [item for item in shown.dangerous if item not in set(acknowledged)]
