"""The systemd plugin's pure logic: the section from systemd's lists, diff, verify, rollback."""

from __future__ import annotations

import logging

import pytest

from op_dbus.native.systemd import UnitStatus
from op_dbus.plugins.base import ActionKind
from op_dbus.plugins.systemd.plugin import _runtime, build_section, diff_units, mismatches


def status(name: str, active: str = "inactive", load: str = "loaded") -> UnitStatus:
    return UnitStatus(name, load, active, "dead" if active == "inactive" else "running")


def host(**file_states: str) -> dict:
    """A queried section of `a.service`-style units (underscores stand for dots)."""
    files = {name.replace("_", "."): state for name, state in file_states.items()}
    return build_section(files, {})


@pytest.mark.parametrize(
    ("file_state", "enabled", "masked"),
    [
        ("enabled", True, False),
        ("enabled-runtime", True, False),
        ("static", True, False),
        ("indirect", True, False),
        ("generated", True, False),
        ("alias", True, False),
        ("transient", True, False),
        ("disabled", False, False),
        ("linked", False, False),
        ("masked", False, True),
        ("masked-runtime", False, True),
        ("bad", False, False),
    ],
)
def test_enabled_follows_is_enabled(file_state: str, enabled: bool, masked: bool) -> None:
    unit = build_section({"a.service": file_state}, {})["units"]["a.service"]
    assert (unit["enabled"], unit["masked"], unit["unit_file_state"]) == (
        enabled,
        masked,
        file_state,
    )


def test_section_merges_files_and_loaded_units_and_drops_not_found() -> None:
    loaded = {
        "a.service": status("a.service", "active"),
        "dev-sda.device": status("dev-sda.device", "active"),
        "gone.service": status("gone.service", load="not-found"),
        "r.service": status("r.service", "reloading"),
        "f.service": status("f.service", "failed"),
        "s.service": status("s.service", "activating"),
    }
    units = build_section({"a.service": "enabled", "b.service": "disabled"}, loaded)["units"]
    assert set(units) == {
        "a.service",
        "b.service",
        "dev-sda.device",
        "r.service",
        "f.service",
        "s.service",
    }
    assert units["a.service"]["active_state"] == "active"
    assert units["a.service"]["sub_state"] == "running"
    assert units["b.service"]["active_state"] == "inactive", "not loaded: not running"
    assert "load_state" not in units["b.service"]
    assert units["r.service"]["active_state"] == "active"
    assert units["f.service"]["active_state"] == "inactive"
    assert units["s.service"]["active_state"] == "active", "on its way up: a rollback stops it"
    assert units["dev-sda.device"]["unit_file_state"] == ""


def test_diff_only_declared_fields_that_differ() -> None:
    current = host(a_service="disabled", b_service="enabled")
    desired = {
        "units": {
            "a.service": {"enabled": True, "active_state": "active"},
            "b.service": {"enabled": True},
        }
    }
    (action,) = diff_units(current, desired)
    assert action.kind == ActionKind.MODIFY and action.resource == "a.service"
    assert action.after == {"enabled": True, "active_state": "active"}
    assert action.before == {"enabled": False, "active_state": "inactive"}


def test_diff_keeps_declaration_order_and_ignores_none() -> None:
    current = host(z_service="disabled", a_service="disabled")
    desired = {
        "units": {
            "z.service": {"enabled": True, "masked": None},
            "a.service": {"enabled": True},
        }
    }
    assert [a.resource for a in diff_units(current, desired)] == ["z.service", "a.service"]


def test_unknown_unit_still_gets_an_action_so_apply_can_name_it() -> None:
    (action,) = diff_units(host(), {"units": {"nope.service": {"active_state": "active"}}})
    assert action.before is None and action.after == {"active_state": "active"}
    assert diff_units(host(), {"units": {"nope.service": {}}}) == []


@pytest.mark.parametrize("state", ["static", "indirect", "generated", "alias", "transient"])
def test_fixed_enablement_is_warned_not_acted_on(
    state: str, caplog: pytest.LogCaptureFixture
) -> None:
    current = host(a_service=state)
    with caplog.at_level(logging.WARNING):
        assert diff_units(current, {"units": {"a.service": {"enabled": False}}}) == []
    assert state in caplog.text and "a.service" in caplog.text
    assert mismatches(current, {"units": {"a.service": {"enabled": False}}}) == []


def test_verify_lists_every_mismatch() -> None:
    current = host(a_service="disabled")
    desired = {
        "units": {
            "a.service": {"enabled": True, "active_state": "active", "masked": False},
            "nope.service": {"enabled": True},
        }
    }
    found = {(m.resource, m.field, m.expected, m.actual) for m in mismatches(current, desired)}
    assert found == {
        ("a.service", "enabled", True, False),
        ("a.service", "active_state", "active", "inactive"),
        ("nope.service", "load_state", "loaded", "not-found"),
    }


def test_rollback_restores_every_differing_unit_and_never_deletes() -> None:
    checkpoint = build_section(
        {"a.service": "enabled", "b.service": "disabled", "gone.service": "disabled"},
        {"a.service": status("a.service", "active")},
    )
    now = build_section(
        {"a.service": "disabled", "b.service": "disabled", "new.service": "enabled"}, {}
    )
    actions = diff_units(now, checkpoint, exhaustive=True)
    assert [(a.resource, a.after) for a in actions] == [
        ("a.service", {"enabled": True, "active_state": "active"})
    ]
    assert all(a.kind == ActionKind.MODIFY for a in actions)


def test_rollback_of_runtime_states_targets_run() -> None:
    checkpoint = host(a_service="enabled-runtime", m_service="masked-runtime")
    now = host(a_service="disabled", m_service="disabled")
    restore = {a.resource: a for a in diff_units(now, checkpoint, exhaustive=True)}
    assert restore["a.service"].after == {"enabled": True, "unit_file_state": "enabled-runtime"}
    assert _runtime(restore["a.service"], "enabled") is True
    assert _runtime(restore["m.service"], "masked") is True

    (undo,) = diff_units(checkpoint, {"units": {"a.service": {"enabled": False}}})
    assert undo.before == {"enabled": True, "unit_file_state": "enabled-runtime"}
    assert _runtime(undo, "enabled") is True, "a runtime enablement is removed from /run"
    (plain,) = diff_units(host(a_service="enabled"), {"units": {"a.service": {"enabled": False}}})
    assert _runtime(plain, "enabled") is False


def test_rollback_never_re_enables_a_static_unit() -> None:
    checkpoint = host(a_service="static")
    now = host(a_service="masked")
    (action,) = diff_units(now, checkpoint, exhaustive=True)
    assert action.after == {"masked": False}
