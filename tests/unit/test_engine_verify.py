"""verify_state: bounded retries, a pause only between attempts, plugins checked concurrently."""

from __future__ import annotations

import time

import pytest
from memstore import NAMES, World

from op_dbus.engine.verify import verify_state
from op_dbus.plugins.base import Mismatch

DESIRED = {n: {"items": {"a": f"{n}-a2", "b": None}} for n in NAMES}


def new_world(converged: bool) -> World:
    world = World()
    for name, store in world.stores.items():
        store.data = {"a": f"{name}-a2" if converged else f"{name}-a", "b": 1}
        if converged:
            del store.data["b"]
    return world


async def test_lasting_mismatches_after_exactly_the_attempts_with_pauses_between() -> None:
    world = new_world(converged=False)
    started = time.monotonic()
    found = await verify_state(DESIRED, world.plugins(), attempts=3, delay=0.2)
    elapsed = time.monotonic() - started
    assert found == {
        n: [Mismatch("a", "value", f"{n}-a2", f"{n}-a"), Mismatch("b", "present", False, True)]
        for n in NAMES
    }
    assert world.count("verify") == {n: 3 for n in NAMES}
    # Two pauses between three attempts; an upper bound would be a flaky timing assert.
    assert elapsed >= 0.4


async def test_settling_state_stops_retrying_once_clean() -> None:
    world = new_world(converged=True)
    world.faults.verify_lag = {"lxc": 1}
    assert await verify_state(DESIRED, world.plugins(), attempts=5, delay=0) == {}
    assert world.count("verify") == {"systemd": 1, "net": 1, "lxc": 2}


async def test_a_verify_that_raises_is_a_mismatch() -> None:
    world = new_world(converged=True)
    plugins = world.plugins()

    async def broken(desired):
        raise TimeoutError("no reply")

    plugins["net"].verify = broken  # type: ignore[method-assign]
    found = await verify_state(DESIRED, plugins, attempts=2, delay=0)
    assert found == {"net": [Mismatch("net", "verify", "readable state", "no reply")]}
    assert world.count("verify") == {"systemd": 1, "lxc": 1}


async def test_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await verify_state(DESIRED, {}, attempts=0)
