"""The daemon's OVSDB replica: rows kept from RFC 7047 `update` notifications, and which of
them are drift (a configuration column) rather than vswitchd's own bookkeeping."""

from __future__ import annotations

import asyncio

import pytest

from op_dbus.native.ovsdb import OvsdbTimeoutError
from op_dbus.native.vswitch import Replica

PORT = {"name": "p1", "interfaces": ["uuid", "i1"], "tag": ["set", []], "external_ids": ["map", []]}
ROOT = {"bridges": ["set", []], "datapath_types": ["set", ["netdev"]], "next_cfg": 1, "cur_cfg": 1}


async def loaded() -> Replica:
    replica = Replica()
    await replica.update({"Open_vSwitch": {"r": {"new": ROOT}}, "Port": {"p": {"new": PORT}}})
    return replica


async def test_rows_are_kept_replaced_and_removed_with_their_uuid() -> None:
    replica = await loaded()
    assert replica.tables["Port"]["p"] == {**PORT, "_uuid": ["uuid", "p"]}
    renamed = {**PORT, "name": "p2"}
    assert await replica.update({"Port": {"p": {"old": {"name": "p1"}, "new": renamed}}})
    assert replica.tables["Port"]["p"]["name"] == "p2"
    assert await replica.update({"Port": {"p": {"old": renamed}}})
    assert replica.tables["Port"] == {}
    assert not await replica.update({"Port": {"gone": {"old": renamed}}}), "unknown: no drift"


async def test_vswitchd_bookkeeping_is_kept_but_is_no_drift() -> None:
    replica = await loaded()
    moved = {**ROOT, "next_cfg": 2, "cur_cfg": 2}
    change = {"Open_vSwitch": {"r": {"old": {"next_cfg": 1, "cur_cfg": 1}, "new": moved}}}
    assert not await replica.update(change)
    assert replica.root() == {**moved, "_uuid": ["uuid", "r"]}
    bridges = {**moved, "bridges": ["uuid", "b"]}
    assert await replica.update(
        {"Open_vSwitch": {"r": {"old": {"bridges": ["set", []]}, "new": bridges}}}
    )


async def test_waiting_for_cur_cfg_ends_when_an_update_reaches_it() -> None:
    replica = await loaded()
    waiting = asyncio.create_task(replica.wait_cur_cfg(3, timeout=5))
    await asyncio.sleep(0)
    await replica.update({"Open_vSwitch": {"r": {"old": {}, "new": {**ROOT, "cur_cfg": 2}}}})
    assert not waiting.done()
    await replica.update({"Open_vSwitch": {"r": {"old": {}, "new": {**ROOT, "cur_cfg": 3}}}})
    await asyncio.wait_for(waiting, 1)
    with pytest.raises(OvsdbTimeoutError, match="cur_cfg is 3, waiting for 4"):
        await replica.wait_cur_cfg(4, timeout=0.01)
