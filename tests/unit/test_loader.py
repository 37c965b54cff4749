"""Loading: both shapes, JSON and YAML, modes, and documents that are not state files at all."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
import yaml

from op_dbus.model import (
    FieldError,
    Mode,
    StateInputError,
    load_state,
    parse_state,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FULL = json.loads((EXAMPLES / "full-mode.json").read_text())


def errors(data: str | bytes, **kwargs: object) -> list[FieldError]:
    with pytest.raises(StateInputError) as info:
        parse_state(data, **kwargs)  # type: ignore[arg-type]
    return info.value.errors


@pytest.mark.parametrize(
    ("name", "mode", "shape"),
    [
        ("full-mode.json", Mode.FULL, "stateConfig"),
        ("standalone-mode.json", Mode.STANDALONE, "plugins"),
        ("agent-mode.json", Mode.AGENT, "plugins"),
    ],
)
def test_examples_load_and_resolve_their_mode(name: str, mode: Mode, shape: str) -> None:
    loaded = load_state(EXAMPLES / name)
    assert loaded.mode is mode
    assert loaded.shape == shape
    assert loaded.warnings == []


def test_full_mode_keeps_every_seed_field_exactly() -> None:
    """sections() gives back the seed's stateConfig unchanged: nothing dropped, renamed or added."""
    sections = load_state(EXAMPLES / "full-mode.json").state.sections()
    assert sections == FULL
    assert json.dumps(sections["net"]) == json.dumps(FULL["net"])  # same key order too
    containers = sections["lxc"]["containers"]
    assert [c["name"] for c in containers] == ["gateway", "warp", "xray-client"]
    assert "state" not in containers[0]  # defaults the user did not write stay out


def test_seed_fields_reach_the_model() -> None:
    state = load_state(EXAMPLES / "full-mode.json").state
    bridge = state.plugins.net.interfaces[0]
    assert (bridge.name, bridge.type, bridge.ports) == ("ovsbr0", "ovs-bridge", ["eth0"])
    assert bridge.ipv4.enabled is True and bridge.ipv4.dhcp is False
    assert (bridge.ipv4.address[0].ip, bridge.ipv4.address[0].prefix) == ("192.168.1.10", 24)
    assert bridge.ipv4.gateway == "192.168.1.1"
    assert state.plugins.net.interfaces[1].ports == []
    ct = state.plugins.lxc.containers[2]
    assert (ct.id, ct.name, ct.veth, ct.bridge, ct.running) == (
        "102",
        "xray-client",
        "vi102",
        "mesh",
        True,
    )
    unit = state.plugins.systemd.units["openvswitch.service"]
    assert (unit.enabled, unit.active_state, unit.masked) == (True, "active", None)


def test_both_shapes_give_equal_sections() -> None:
    wrapped = {"version": 1, "plugins": FULL}
    a = parse_state(json.dumps(FULL))
    b = parse_state(json.dumps(wrapped))
    assert (a.shape, b.shape) == ("stateConfig", "plugins")
    assert a.state.sections() == b.state.sections()
    assert a.mode == b.mode == Mode.FULL


@pytest.mark.parametrize("name", ["full-mode.json", "standalone-mode.json", "agent-mode.json"])
def test_yaml_of_the_same_content_loads_identically(name: str) -> None:
    doc = json.loads((EXAMPLES / name).read_text())
    from_json = parse_state((EXAMPLES / name).read_bytes())
    from_yaml = parse_state(yaml.safe_dump(doc, sort_keys=False))
    assert from_yaml.state == from_json.state
    assert from_yaml.state.sections() == from_json.state.sections()
    assert (from_yaml.mode, from_yaml.shape) == (from_json.mode, from_json.shape)


def test_handwritten_yaml_with_comments() -> None:
    text = """
# agent mode
version: 1
plugins:
  systemd:
    units:
      dbus.service: {active_state: active}   # stays up
"""
    loaded = parse_state(text)
    assert loaded.state.sections() == {
        "systemd": {"units": {"dbus.service": {"active_state": "active"}}}
    }


def test_mode_that_does_not_allow_a_section_fails_at_its_path() -> None:
    with pytest.raises(StateInputError) as info:
        load_state(EXAMPLES / "full-mode.json", mode=Mode.STANDALONE)
    assert [e.path for e in info.value.errors] == ["lxc"]
    assert "full" in info.value.errors[0].message
    assert "standalone" in info.value.errors[0].message


def test_mode_error_in_plugins_shape_names_plugins_path() -> None:
    paths = [e.path for e in errors(json.dumps({"version": 1, "plugins": FULL}), mode=Mode.AGENT)]
    assert paths == ["plugins.net", "plugins.lxc"]


def test_explicit_larger_mode_is_kept() -> None:
    loaded = load_state(EXAMPLES / "agent-mode.json", mode=Mode.FULL)
    assert loaded.mode is Mode.FULL


def test_empty_state_loads_with_a_warning() -> None:
    loaded = parse_state('{"version": 1, "plugins": {}}')
    assert loaded.mode is Mode.AGENT
    assert [w.path for w in loaded.warnings] == ["<document>"]


def test_sections_outside_plugins_in_plugins_shape() -> None:
    errs = errors(json.dumps({"version": 1, "plugins": {}, "net": {"interfaces": []}}))
    assert [e.path for e in errs] == ["net"]
    assert '"plugins"' in errs[0].message


def test_version_must_be_one() -> None:
    for bad in (2, True, 1.0, "1"):
        errs = errors(json.dumps({"version": bad, "plugins": {}}))
        assert [e.path for e in errs] == ["version"], bad


def test_missing_plugins() -> None:
    errs = errors('{"version": 1}')
    assert [(e.path, e.message) for e in errs] == [("plugins", "is required")]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"\xff\xfe{}", "UTF-8"),
        (b'{"net": ', "not valid JSON"),
        (b"[1, 2]", "mapping"),
        (b'"just a string"', "mapping"),
        (b"42", "mapping"),
        (b"null", "mapping"),
        (b"a: [1\nb: 2", "neither JSON nor valid YAML"),
        (b"---\na: 1\n---\nb: 2\n", "YAML"),
        (b"!!python/object:os.system {}", "YAML"),
    ],
)
def test_documents_that_are_not_state_files(data: bytes, needle: str) -> None:
    errs = errors(data, origin="state.json")
    assert [e.path for e in errs] == ["<document>"]
    assert needle in errs[0].message
    assert errs[0].message.startswith("state.json ")


def test_duplicate_key_in_json_object_is_refused_at_its_path() -> None:
    text = '{"systemd": {"units": {"a.service": {"enabled": true, "enabled": false}}}}'
    errs = errors(text)
    assert [(e.path, e.message) for e in errs] == [
        ('systemd.units["a.service"].enabled', "duplicate key")
    ]


def test_duplicate_key_in_yaml_is_refused() -> None:
    errs = errors("systemd:\n  units: {}\nsystemd:\n  units: {}\n")
    assert [e.path for e in errs] == ["systemd"]


def test_yaml_merge_keys_are_not_duplicates() -> None:
    text = """
systemd:
  units:
    a.service: &d {enabled: true, active_state: active}
    b.service:
      <<: *d
      enabled: false
"""
    units = parse_state(text).state.sections()["systemd"]["units"]
    assert units["b.service"] == {"enabled": False, "active_state": "active"}


def test_yaml_non_string_keys_are_refused() -> None:
    errs = errors("systemd:\n  units:\n    1: {}\n")
    assert [e.path for e in errs] == ["systemd.units"]
    assert "not a string" in errs[0].message


def test_yaml_alias_cycles_and_bombs_are_refused() -> None:
    cycle = errors("net: &a\n  interfaces: [*a]\n")
    assert cycle and all(e.path and e.message for e in cycle)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    errs = errors(bomb)
    assert [e.path for e in errs] == ["<document>"]
    assert "values" in errs[0].message


def test_deep_nesting_is_refused() -> None:
    errs = errors("[" * 5000 + "]" * 5000)
    assert [e.path for e in errs] == ["<document>"]
    errs = errors('{"net": ' * 100 + "1" + "}" * 100)
    assert "nested" in errs[0].message


def test_load_state_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(StateInputError) as info:
        load_state(tmp_path / "missing.json")
    assert info.value.errors[0].path == "<document>"
    assert "cannot read" in info.value.errors[0].message
    with pytest.raises(StateInputError):
        load_state(tmp_path)  # a directory


def test_load_state_from_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (EXAMPLES / "agent-mode.json").read_bytes()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    loaded = load_state("-")
    assert loaded.mode is Mode.AGENT


def test_all_errors_are_collected_and_str_has_one_line_each() -> None:
    doc = copy.deepcopy(FULL)
    doc["net"]["interfaces"][0]["ipv4"]["address"][0]["prefix"] = 33
    doc["lxc"]["containers"][1]["veth"] = "vi100"
    doc["systemd"]["units"]["openvswitch.service"]["enabled"] = "yes"
    with pytest.raises(StateInputError) as info:
        parse_state(json.dumps(doc))
    err = info.value
    assert {e.path for e in err.errors} == {
        "net.interfaces[0].ipv4.address[0].prefix",
        "lxc.containers[1].veth",
        'systemd.units["openvswitch.service"].enabled',
    }
    assert str(err).splitlines() == [f"{e.path}: {e.message}" for e in err.errors]


def test_lone_surrogate_escapes_are_refused_where_they_are() -> None:
    errs = errors('{"net": {"interfaces": [{"name": "br\\ud800", "type": "ovs-bridge"}]}}')
    assert [e.path for e in errs] == ["net.interfaces[0].name"]
    errs = errors('{"net": {"\\udc00": 1}}')
    assert [e.path for e in errs] == ["net"]
