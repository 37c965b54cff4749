"""The Proxmox `pct` driver: the argv it builds and how it reads pct's output.

No Proxmox runs here, so the runner is a recorder answering with output in pct's formats
(`pct list` prints a fixed-width table; `pct config` prints `key: value` lines).
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from op_dbus.native.lxc import (
    LxcError,
    PctDriver,
    Result,
    parse_pct_config,
    parse_pct_list,
    parse_pct_pid,
    pct_options,
)
from op_dbus.native.lxc_config import Spec

PCT_LIST = """\
VMID       Status     Lock         Name                
100        running                 gateway             
101        stopped    backup       warp                
"""  # noqa: W291 - pct pads its columns
PCT_CONFIG_100 = """\
arch: amd64
cores: 1
hostname: gateway
memory: 512
net0: name=eth0,bridge=mesh,firewall=0,hwaddr=02:00:00:00:00:64,ip=10.0.0.2/24,gw=10.0.0.1,type=veth
onboot: 1
ostype: debian
rootfs: local-lvm:vm-100-disk-0,size=8G
swap: 512
tags: op-dbus
"""
PCT_CONFIG_101 = """\
arch: amd64
hostname: warp
net0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:5E:7A:01,ip=dhcp,type=veth
ostype: debian
tags: prod;web
"""
PCT_STATUS_100 = "cpus: 1\nmaxmem: 536870912\nname: gateway\npid: 31337\nstatus: running\n"
SPEC = Spec(
    name="gateway",
    id="100",
    bridge="mesh",
    hwaddr="02:00:00:00:00:64",
    addresses=(("10.0.0.2", 24),),
    gateway="10.0.0.1",
    template="local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
)


class Recorder:
    """A runner that records each argv and answers from canned output."""

    def __init__(self, answers: dict[tuple[str, ...], str] | None = None) -> None:
        self.calls: list[list[str]] = []
        self.answers = answers or {}

    async def __call__(self, argv: Sequence[str], timeout: float) -> Result:
        self.calls.append(list(argv))
        if (out := self.answers.get(tuple(argv))) is None and tuple(argv[:2]) != ("pct", "list"):
            return Result(0, "", "")
        return Result(0, out or PCT_LIST, "")


def test_parse_pct_list_with_and_without_a_lock() -> None:
    assert parse_pct_list(PCT_LIST) == [("100", "running", "gateway"), ("101", "stopped", "warp")]
    assert parse_pct_list("") == []


def test_parse_pct_config_ownership_and_network() -> None:
    own = parse_pct_config("100", PCT_CONFIG_100)
    assert own.owned and own.autostart
    assert (own.id, own.veth, own.bridge) == ("100", "veth100i0", "mesh")
    assert (own.hwaddr, own.addresses, own.gateway) == (
        "02:00:00:00:00:64",
        [("10.0.0.2", 24)],
        "10.0.0.1",
    )
    foreign = parse_pct_config("101", PCT_CONFIG_101)
    assert not foreign.owned and not foreign.autostart
    assert (foreign.hwaddr, foreign.addresses) == ("bc:24:11:5e:7a:01", [])
    assert (own.memory, own.cpus, foreign.memory, foreign.cpus) == (512, 1, None, None)


def test_parse_pct_pid() -> None:
    assert parse_pct_pid(PCT_STATUS_100) == 31337
    assert parse_pct_pid("status: stopped\n") is None


def test_pct_options() -> None:
    assert pct_options(SPEC) == [
        "--hostname", "gateway",
        "--net0",
        "name=eth0,type=veth,bridge=mesh,hwaddr=02:00:00:00:00:64,ip=10.0.0.2/24,gw=10.0.0.1",
        "--onboot", "0",
        "--tags", "op-dbus",
    ]  # fmt: skip


def test_pct_options_with_limits() -> None:
    options = pct_options(Spec(name="gateway", id="100", memory=256, cpus=2))
    assert options[options.index("--memory") + 1] == "256"
    assert options[options.index("--cores") + 1] == "2"


def test_pct_cannot_rename_the_host_veth() -> None:
    with pytest.raises(LxcError, match="veth100i0"):
        pct_options(Spec(name="gateway", id="100", veth="vi100"))
    assert "--net0" in pct_options(Spec(name="gateway", id="100", veth="veth100i0"))


async def test_list_reads_every_container() -> None:
    runner = Recorder(
        {
            ("pct", "config", "100"): PCT_CONFIG_100,
            ("pct", "config", "101"): PCT_CONFIG_101,
            ("pct", "status", "100", "--verbose"): PCT_STATUS_100,
        }
    )
    found = await PctDriver(runner).list()
    assert [(o.name, o.running, o.pid, o.config.owned) for o in found] == [
        ("gateway", True, 31337, True),
        ("warp", False, None, False),
    ]
    assert ["pct", "status", "101", "--verbose"] not in runner.calls


async def test_create_start_stop_destroy_argv() -> None:
    runner = Recorder()
    driver = PctDriver(runner)
    await driver.create(SPEC)
    await driver.start("gateway")
    await driver.stop("warp")
    await driver.destroy("gateway")
    assert [c for c in runner.calls if c[:2] != ["pct", "list"]] == [
        ["pct", "create", "100", SPEC.template, *pct_options(SPEC)],
        ["pct", "start", "100"],
        ["pct", "shutdown", "101", "--timeout", "10", "--forceStop", "1"],
        ["pct", "destroy", "100", "--force", "1", "--purge", "1"],
    ]


async def test_create_refuses_a_template_that_is_no_volume() -> None:
    runner = Recorder()
    with pytest.raises(LxcError, match="template volume"):
        await PctDriver(runner).create(Spec(name="gateway", id="100"))
    assert runner.calls == []


async def test_unknown_container_is_an_error() -> None:
    with pytest.raises(LxcError, match="no container named nope"):
        await PctDriver(Recorder()).start("nope")


async def test_failed_command_names_it_and_its_error() -> None:
    async def failing(argv: Sequence[str], timeout: float) -> Result:
        return Result(255, "", "unable to create CT 100 - CT 100 already exists on node 'pve'")

    with pytest.raises(LxcError, match="already exists"):
        await PctDriver(failing).create(SPEC)


async def test_an_odd_config_is_reported_unreadable_and_the_others_still_read() -> None:
    odd = PCT_CONFIG_101.replace("ip=dhcp", "ip=10.0.0.9/abc")
    runner = Recorder({("pct", "config", "100"): PCT_CONFIG_100, ("pct", "config", "101"): odd})
    found = {o.name: o for o in await PctDriver(runner).list()}
    assert found["gateway"].config.owned and found["gateway"].config.unreadable is None
    assert found["warp"].config.unreadable and "101" in found["warp"].config.unreadable
