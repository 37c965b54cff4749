"""The registry: one list of sections from which order, modes, init and watchers derive."""

from __future__ import annotations

import pytest

from op_dbus.endpoints import Endpoints
from op_dbus.engine.order import Batch, schedule, steps_in_order
from op_dbus.engine.plan import Plan, PluginPlan
from op_dbus.model.modes import SECTIONS_BY_MODE, Mode
from op_dbus.plugins import make_plugin, watcher_factory
from op_dbus.plugins.base import Action, ActionKind, Plugin, Watch, WatchContext
from op_dbus.registry import MODES, ORDER, REGISTRY, SPECS, Registry, SectionSpec, topological

C, D = ActionKind.CREATE, ActionKind.DELETE


def spec(name: str, *after: str, one_batch: bool = False) -> SectionSpec:
    return SectionSpec(name, "full", "x:Y", "x:z", {}, after=after, one_batch=one_batch)


def test_order_is_a_topological_order_of_the_specs() -> None:
    assert ORDER == ("systemd", "net", "lxc", "firewall")
    assert {s.name for s in SPECS} == set(ORDER), "every spec is ordered once"
    for spec_ in REGISTRY.specs:
        for earlier in spec_.after:
            assert ORDER.index(earlier) < ORDER.index(spec_.name), f"{spec_.name} after {earlier}"


def test_topological_keeps_the_given_order_where_free_and_refuses_cycles() -> None:
    found = topological([spec("c", "b"), spec("a"), spec("b", "a"), spec("d")])
    assert [s.name for s in found] == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="cycle"):
        topological([spec("a", "b"), spec("b", "a")])
    with pytest.raises(ValueError, match="after unknown nope"):
        topological([spec("a", "nope")])


def test_two_dependent_one_batch_sections_are_refused() -> None:
    with pytest.raises(ValueError, match="both run as one batch"):
        Registry((spec("a", one_batch=True), spec("b", "a", one_batch=True)))


def test_modes_come_from_the_registry() -> None:
    assert tuple(Mode) == MODES
    assert SECTIONS_BY_MODE == {
        Mode.AGENT: ("systemd",),
        Mode.STANDALONE: ("systemd", "net", "firewall"),
        Mode.FULL: ("systemd", "net", "lxc", "firewall"),
    }


@pytest.mark.parametrize("name", ORDER)
def test_every_spec_imports_its_plugin_and_watcher(name: str) -> None:
    plugin = make_plugin(name, Endpoints())
    assert isinstance(plugin, Plugin) and plugin.name == name
    context = WatchContext(Endpoints(), lambda: {})
    watches = watcher_factory(name)(context)
    assert watches and all(isinstance(w, Watch) for w in watches)


def test_net_and_lxc_share_one_ovsdb_source() -> None:
    """The daemon merges watches by source: net and lxc must name the same OVSDB one."""
    context = WatchContext(Endpoints(), lambda: {})
    sources = {n: {w.source for w in watcher_factory(n)(context)} for n in ("net", "lxc")}
    assert any(s.startswith("OVSDB ") for s in sources["net"] & sources["lxc"])


def plan_of(actions: dict[str, list[Action]]) -> Plan:
    return Plan([PluginPlan(n, "ready", "", {}, {}, acts) for n, acts in actions.items()])


def test_a_new_spec_schedules_by_its_after() -> None:
    """A section after net, declared last, but before lxc: one line, right place."""
    fw = SectionSpec("fw", "standalone", "x:Y", "x:z", {}, after=("net",))
    lxc = next(s for s in SPECS if s.name == "lxc")
    lxc_after_fw = SectionSpec(**{**vars(lxc), "after": ("net", "fw")})
    seed = [s for s in SPECS if s.name in ("systemd", "net")]
    registry = Registry((*seed, lxc_after_fw, fw))
    assert registry.order == ("systemd", "net", "fw", "lxc")
    assert registry.sections_for("standalone") == ("systemd", "net", "fw")

    acts = {n: [Action(n, D, "old"), Action(n, C, "new")] for n in registry.order}
    batches = schedule(plan_of(acts), registry)
    assert [(b.plugin, [a.kind for a in b.actions]) for b in batches] == [
        ("systemd", [C]),
        ("lxc", [D]),
        ("fw", [D]),  # fw's rules on a bridge go before the bridge does
        ("net", [D, C]),
        ("fw", [C]),
        ("lxc", [C]),
        ("systemd", [D]),
    ]
    assert Batch("net", acts["net"]) in batches, "net stays one batch"


def test_without_a_one_batch_section_creates_come_first_then_deletes_reversed() -> None:
    registry = Registry((spec("a"), spec("b", "a")))
    assert steps_in_order(registry) == [
        ("a", "upserts"),
        ("b", "upserts"),
        ("b", "deletes"),
        ("a", "deletes"),
    ]
