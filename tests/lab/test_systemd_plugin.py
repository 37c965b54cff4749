"""The systemd plugin against the lab's real systemd (nspawn), cross-checked with busctl."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
import systemd_units as su

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import ApplyResult, apply_plan
from op_dbus.engine.plan import make_plan
from op_dbus.exitcodes import ExitCode
from op_dbus.lab import Lab
from op_dbus.native import systemd as sd
from op_dbus.plugins.base import ApplyError
from op_dbus.plugins.systemd.plugin import SystemdPlugin


@pytest.fixture
async def plugin(lab: Lab) -> AsyncIterator[SystemdPlugin]:
    """A plugin on the lab's bus, with the test units installed and reset around the test."""
    the_plugin = SystemdPlugin(Endpoints(system_bus=lab.system_bus), job_timeout=20.0)
    async with su.installed(lab):
        try:
            yield the_plugin
        finally:
            await the_plugin.close()


async def converge(plugin: SystemdPlugin, units: dict) -> ApplyResult:
    plan = await make_plan({"systemd": {"units": units}}, {"systemd": plugin})
    assert plan.blocked == [], plan.blocked
    return await apply_plan(plan, {"systemd": plugin}, verify_attempts=3, verify_delay=0.1)


async def pending(plugin: SystemdPlugin, units: dict) -> list:
    return plugin.diff(await plugin.query(), {"units": units})


async def test_query_matches_busctl(lab: Lab, plugin: SystemdPlugin) -> None:
    units = (await plugin.query())["units"]
    expected = {
        su.LONG: "disabled",
        su.STATIC: "static",
        su.INDIRECT: "indirect",
        su.ALIAS: "alias",
        su.SOCKET: "disabled",
        su.GENERATED: "generated",
    }
    for name, state in expected.items():
        assert su.busctl_file_state(lab, name) == state
        assert units[name]["unit_file_state"] == state
    assert units[su.STATIC]["enabled"] is True, "static counts as enabled, like is-enabled"
    shape = {key: units[su.LONG][key] for key in ("enabled", "active_state", "masked")}
    assert shape == {"enabled": False, "active_state": "inactive", "masked": False}
    assert units["dbus.service"]["active_state"] == su.busctl_active_state(lab, "dbus.service")
    assert "opdbus-t-nope.service" not in units


async def test_scoped_query_agrees_with_the_full_one(plugin: SystemdPlugin) -> None:
    names = [su.LONG, su.STATIC, su.GENERATED, su.SOCKET, "dbus.service", "opdbus-t-nope.service"]
    scoped = (await plugin.query({"units": {name: {} for name in names}}))["units"]
    full = (await plugin.query())["units"]
    assert set(scoped) == set(names) - {"opdbus-t-nope.service"}
    for name in scoped:
        shape = ("enabled", "active_state", "masked", "unit_file_state")
        assert {k: scoped[name][k] for k in shape} == {k: full[name][k] for k in shape}


async def test_enable_start_then_stop_disable(lab: Lab, plugin: SystemdPlugin) -> None:
    on = {"enabled": True, "active_state": "active"}
    result = await converge(plugin, {su.LONG: on, su.ONESHOT: on, su.SOCKET: on})
    assert result.exit_code == ExitCode.OK, result.message
    for name in (su.LONG, su.ONESHOT, su.SOCKET):
        assert su.busctl_file_state(lab, name) == "enabled"
        assert su.busctl_active_state(lab, name) == "active"
    assert await pending(plugin, {su.LONG: on, su.ONESHOT: on, su.SOCKET: on}) == []

    off = {"enabled": False, "active_state": "inactive"}
    result = await converge(plugin, {su.SOCKET: off, su.LONG: off, su.ONESHOT: {"enabled": False}})
    assert result.exit_code == ExitCode.OK, result.message
    assert [su.busctl_file_state(lab, n) for n in (su.LONG, su.ONESHOT, su.SOCKET)] == [
        "disabled"
    ] * 3
    assert su.busctl_active_state(lab, su.LONG) == "inactive"
    assert su.busctl_active_state(lab, su.ONESHOT) == "active", "active_state absent: left alone"


async def test_mask_and_unmask(lab: Lab, plugin: SystemdPlugin) -> None:
    result = await converge(plugin, {su.VENDOR: {"masked": True, "active_state": "inactive"}})
    assert result.exit_code == ExitCode.OK, result.message
    assert su.busctl_file_state(lab, su.VENDOR) == "masked"
    assert (await plugin.query())["units"][su.VENDOR]["masked"] is True
    assert await pending(plugin, {su.VENDOR: {"masked": True}}) == []

    result = await converge(plugin, {su.VENDOR: {"masked": False, "active_state": "active"}})
    assert result.exit_code == ExitCode.OK, result.message
    assert su.busctl_file_state(lab, su.VENDOR) == "disabled"
    assert su.busctl_active_state(lab, su.VENDOR) == "active"


async def test_masking_a_unit_file_in_etc_fails_clearly(lab: Lab, plugin: SystemdPlugin) -> None:
    result = await converge(plugin, {su.LONG: {"masked": True}})
    assert result.exit_code == ExitCode.ROLLED_BACK, result.message
    assert f"{su.LONG}: File /etc/systemd/system/{su.LONG} already exists" in (result.error or "")
    assert su.busctl_file_state(lab, su.LONG) == "disabled", "never forced over the unit file"


async def test_failing_unit_rolls_back_what_was_changed(lab: Lab, plugin: SystemdPlugin) -> None:
    desired = {
        su.LONG: {"enabled": True, "active_state": "active"},
        su.VENDOR: {"masked": True},
        su.FAILING: {"active_state": "active"},
    }
    result = await converge(plugin, desired)
    assert result.exit_code == ExitCode.ROLLED_BACK, result.message
    assert result.failed is not None and result.failed.resource == su.FAILING
    assert su.FAILING in (result.error or "") and "'failed'" in (result.error or "")
    # re-read systemd itself: everything is as before the apply
    assert su.busctl_file_state(lab, su.LONG) == "disabled"
    assert su.busctl_active_state(lab, su.LONG) == "inactive"
    assert su.busctl_file_state(lab, su.VENDOR) == "disabled"


async def test_a_failed_apply_reports_the_unit_file_changes_it_made(
    lab: Lab, plugin: SystemdPlugin
) -> None:
    """Straight to apply (no rollback): `done` lists every change that took effect."""
    desired = {su.ONESHOT: {"enabled": True}, su.LONG: {"masked": True}}  # /etc: mask fails
    with pytest.raises(ApplyError) as caught:
        await plugin.apply(await pending(plugin, desired))
    assert caught.value.failed.resource == su.LONG
    assert [a.resource for a in caught.value.done] == [su.ONESHOT]
    assert su.busctl_file_state(lab, su.ONESHOT) == "enabled"

    desired = {
        su.FAILING: {"active_state": "active"},
        su.LONG: {"enabled": True, "active_state": "active"},
    }
    with pytest.raises(ApplyError) as caught:
        await plugin.apply(await pending(plugin, desired))
    assert caught.value.failed.resource == su.FAILING
    assert [a.resource for a in caught.value.done] == [su.LONG], "enabled, though never started"
    assert su.busctl_file_state(lab, su.LONG) == "enabled"
    assert su.busctl_active_state(lab, su.LONG) == "inactive"


async def test_a_hanging_job_times_out_and_is_undone(lab: Lab, plugin: SystemdPlugin) -> None:
    plugin.job_timeout = 1.0
    result = await converge(plugin, {su.HANGING: {"active_state": "active"}})
    assert result.exit_code == ExitCode.ROLLED_BACK, result.message
    assert f"{su.HANGING}: start job did not finish within 1 s" in (result.error or "")
    assert su.busctl_active_state(lab, su.HANGING) in ("inactive", "failed")


async def test_unknown_unit_is_a_clear_failure(lab: Lab, plugin: SystemdPlugin) -> None:
    result = await converge(
        plugin,
        {su.LONG: {"active_state": "active"}, "opdbus-t-nope.service": {"active_state": "active"}},
    )
    assert result.exit_code == ExitCode.ROLLED_BACK, result.message
    assert result.failed is not None and result.failed.resource == "opdbus-t-nope.service"
    assert "does not exist" in (result.error or "")
    assert su.busctl_active_state(lab, su.LONG) == "inactive", "nothing was started"


async def test_fixed_enablement_is_reported_not_applied(
    lab: Lab, plugin: SystemdPlugin, caplog: pytest.LogCaptureFixture
) -> None:
    assert await pending(plugin, {su.STATIC: {"enabled": True}}) == []
    with caplog.at_level(logging.WARNING):
        for name in (su.STATIC, su.INDIRECT, su.ALIAS, su.GENERATED):
            assert await pending(plugin, {name: {"enabled": False}}) == []
    warned = {r.args[0] for r in caplog.records}
    assert {su.STATIC, su.INDIRECT, su.ALIAS, su.GENERATED} <= warned
    assert await plugin.verify({"units": {su.STATIC: {"enabled": False}}}) == []
    # a static unit still starts and stops normally
    fixed_and_running = {"enabled": False, "active_state": "active"}
    result = await converge(plugin, {su.STATIC: fixed_and_running, su.GENERATED: fixed_and_running})
    assert result.exit_code == ExitCode.OK, result.message
    assert su.busctl_active_state(lab, su.GENERATED) == "active"


async def test_runtime_enablement_is_undone_and_restored_in_run(
    lab: Lab, plugin: SystemdPlugin
) -> None:
    bus = await plugin._connect()
    await sd.enable(bus, [su.LONG], runtime=True)
    await sd.reload(bus)
    assert su.busctl_file_state(lab, su.LONG) == "enabled-runtime"
    assert (await plugin.query())["units"][su.LONG]["enabled"] is True

    result = await converge(
        plugin, {su.LONG: {"enabled": False}, su.FAILING: {"active_state": "active"}}
    )
    assert result.exit_code == ExitCode.ROLLED_BACK, result.message
    assert su.busctl_file_state(lab, su.LONG) == "enabled-runtime"

    result = await converge(plugin, {su.LONG: {"enabled": False}})
    assert result.exit_code == ExitCode.OK, result.message
    assert su.busctl_file_state(lab, su.LONG) == "disabled"


async def test_verify_lists_every_mismatch(plugin: SystemdPlugin) -> None:
    found = await plugin.verify(
        {
            "units": {
                su.LONG: {"enabled": True, "active_state": "active", "masked": False},
                "opdbus-t-nope.service": {"active_state": "inactive"},
            }
        }
    )
    assert {(m.resource, m.field) for m in found} == {
        (su.LONG, "enabled"),
        (su.LONG, "active_state"),
        ("opdbus-t-nope.service", "load_state"),
    }
