"""Errors point at their line and column in the user's YAML or JSON."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.model import StateInputError, parse_state
from op_dbus.model.marks import path_parts
from op_dbus.model.paths import format_path

YAML = b"""net:
  interfaces:
    - name: x
      type: ovs-bridge
      mtu: nope
systemd:
  units:
    openvswitch.service:
      enabled: maybe
"""


def errors_of(data: bytes) -> dict[str, tuple[int | None, int | None]]:
    with pytest.raises(StateInputError) as caught:
        parse_state(data)
    return {e.path: (e.line, e.column) for e in caught.value.errors}


def test_yaml_field_errors_name_their_line_and_column() -> None:
    found = errors_of(YAML)
    assert found["net.interfaces[0].mtu"] == (5, 12)
    assert found['systemd.units["openvswitch.service"].enabled'] == (9, 16)


def test_json_field_errors_too_and_a_missing_field_points_at_its_parent() -> None:
    data = b'{"net": {"interfaces": [\n  {"name": "p", "type": "ovs-port"}]}}'
    found = errors_of(data)
    assert found["net.interfaces[0].bridge"] == (2, 3), "the entry that lacks it"


def test_the_cli_shows_the_place_after_the_message() -> None:
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "op_dbus", "validate", "-"],
        input=YAML,
        capture_output=True,
        check=False,
    ).stderr.decode()
    assert (
        'net.interfaces[0].mtu: must be an integer from 68 to 65535, got "nope" (line 5, ' in shown
    )


VISIBLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)


@given(st.lists(st.integers(min_value=0, max_value=99) | VISIBLE, min_size=1, max_size=6))
def test_a_formatted_path_parses_back(loc: list[str | int]) -> None:
    assert path_parts(format_path(tuple(loc))) == loc


@given(st.lists(st.integers(min_value=0) | st.text(max_size=12), min_size=1, max_size=6))
def test_any_path_parses_back_or_is_left_unmarked(loc: list[str | int]) -> None:
    parts = path_parts(format_path(tuple(loc)))
    assert parts is None or parts == loc
