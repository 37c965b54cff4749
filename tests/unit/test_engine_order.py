"""schedule: creates/modifies systemd -> net -> lxc, deletes reversed, net in one batch."""

from __future__ import annotations

import itertools

import pytest

from op_dbus.engine.order import Batch, schedule
from op_dbus.engine.plan import Plan, PluginPlan
from op_dbus.plugins.base import Action, ActionKind
from op_dbus.registry import SPECS, Registry

SEED_REGISTRY = Registry(tuple(s for s in SPECS if s.name in ("systemd", "net", "lxc")))
"""The seed's three sections: the rule below is spelled out for them."""
ORDER = SEED_REGISTRY.order

C, M, D = ActionKind.CREATE, ActionKind.MODIFY, ActionKind.DELETE
KIND_SETS = [
    kinds for size in range(4) for kinds in itertools.combinations((D, C, M), size)
]  # every subset; the plugin's own order puts deletes first


def act(plugin: str, kind: ActionKind, n: int = 0) -> Action:
    return Action(plugin, kind, f"{kind}-{n}")


def plan_of(actions: dict[str, list[Action]]) -> Plan:
    return Plan([PluginPlan(n, "ready", "", {}, {}, actions[n]) for n in ORDER])


def rank(action: Action) -> int:
    """Where the rule puts an action relative to other plugins' actions."""
    upsert = action.kind != D
    return {
        ("systemd", True): 0,
        ("lxc", False): 1,
        ("net", True): 2,
        ("net", False): 2,
        ("lxc", True): 3,
        ("systemd", False): 4,
    }[(action.plugin, upsert)]


def is_subsequence(part: list[Action], whole: list[Action]) -> bool:
    rest = iter(whole)
    return all(any(a is b for b in rest) for a in part)


@pytest.mark.parametrize("combo", list(itertools.product(KIND_SETS, repeat=3)))
def test_every_combination_keeps_the_rule(combo: tuple[tuple[ActionKind, ...], ...]) -> None:
    actions = {
        name: [act(name, kind, i) for kind in kinds for i in range(2)]
        for name, kinds in zip(ORDER, combo, strict=True)
    }
    batches = schedule(plan_of(actions), SEED_REGISTRY)
    flat = [a for b in batches for a in b.actions]

    assert sorted(map(id, flat)) == sorted(id(a) for acts in actions.values() for a in acts)
    assert all(b.actions for b in batches), "no empty batches"
    assert all(a.plugin == b.plugin for b in batches for a in b.actions)
    assert all(x.plugin != y.plugin for x, y in itertools.pairwise(batches))
    for batch in batches:
        assert is_subsequence(batch.actions, actions[batch.plugin]), "plugin order kept"
    net = [b for b in batches if b.plugin == "net"]
    assert [b.actions for b in net] == ([actions["net"]] if actions["net"] else [])
    for i, x in enumerate(flat):
        for y in flat[i + 1 :]:
            if x.plugin != y.plugin:
                assert rank(x) <= rank(y), f"{x.describe()} ran before {y.describe()}"


def test_full_plan_exact_batches() -> None:
    actions = {name: [act(name, D), act(name, C), act(name, M)] for name in ORDER}
    sd, net, lxc = (actions[n] for n in ORDER)
    assert schedule(plan_of(actions), SEED_REGISTRY) == [
        Batch("systemd", [sd[1], sd[2]]),
        Batch("lxc", [lxc[0]]),
        Batch("net", net),
        Batch("lxc", [lxc[1], lxc[2]]),
        Batch("systemd", [sd[0]]),
    ]


def test_neighbouring_batches_of_one_plugin_merge_in_its_own_order() -> None:
    sd = [act("systemd", D), act("systemd", C)]
    lxc = [act("lxc", M), act("lxc", D, 1)]
    batches = schedule(plan_of({"systemd": sd, "net": [], "lxc": lxc}), SEED_REGISTRY)
    # systemd upserts | lxc deletes | lxc upserts | systemd deletes: the lxc pair merges.
    assert batches == [Batch("systemd", [sd[1]]), Batch("lxc", lxc), Batch("systemd", [sd[0]])]
    only = schedule(plan_of({"systemd": sd, "net": [], "lxc": []}), SEED_REGISTRY)
    assert only == [Batch("systemd", sd)]


def test_empty_plan_has_no_batches() -> None:
    assert schedule(plan_of({n: [] for n in ORDER}), SEED_REGISTRY) == []
    assert schedule(Plan([])) == []
