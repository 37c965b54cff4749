"""The shared Open_vSwitch helpers: datum conversions and operation builders."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from op_dbus.native.vswitch import (
    OWNER_KEY,
    from_map,
    mutate,
    optional,
    ovsdb_set,
    owned,
    select,
    to_map,
    uuids,
)


@given(st.dictionaries(st.text(), st.text()))
def test_from_map_and_to_map_round_trip_in_a_stable_order(values: dict[str, str]) -> None:
    datum = from_map(values)
    assert to_map(datum) == values
    assert datum == from_map(dict(reversed(list(values.items())))), "same dict, same datum"


def test_sets_and_optional_columns() -> None:
    assert ovsdb_set(["set", []]) == [] and optional(["set", []]) is None
    assert ovsdb_set(7) == [7] and optional(7) == 7
    assert uuids(["set", [["uuid", "a"], ["uuid", "b"]]]) == ["a", "b"]
    assert uuids(["uuid", "a"]) == ["a"], "a set of one is a bare atom on the wire"
    assert to_map(["set", []]) == {}


def test_owned_reads_the_owner_key() -> None:
    assert owned({"external_ids": from_map({OWNER_KEY: "op-dbus"})})
    assert not owned({"external_ids": from_map({"other": "x"})}) and not owned({})


def test_select_and_mutate_builders() -> None:
    assert select("Bridge", "name") == {
        "op": "select", "table": "Bridge", "where": [], "columns": ["_uuid", "name"]
    }  # fmt: skip
    where = [["name", "==", "br0"]]
    assert select("Bridge", where=where)["where"] == where
    assert mutate("Bridge", where, "ports", "delete", [["uuid", "p"]]) == {
        "op": "mutate",
        "table": "Bridge",
        "where": where,
        "mutations": [["ports", "delete", ["set", [["uuid", "p"]]]]],
    }
