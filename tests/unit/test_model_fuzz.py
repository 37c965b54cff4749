"""Property tests: whatever the input, the loader answers with a state or StateInputError only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from op_dbus.model import LoadedState, StateInputError, parse_state

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FULL = json.loads((EXAMPLES / "full-mode.json").read_text())
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SEED_WORDS = [
    "net", "lxc", "systemd", "plugins", "version", "interfaces", "containers", "units", "name",
    "type", "ports", "ipv4", "address", "ip", "prefix", "gateway", "bridge", "veth", "id",
    "enabled", "masked", "active_state", "ovs-bridge", "ovs-port", "mesh", "openvswitch.service",
]  # fmt: skip

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(SEED_WORDS)
)
keys = st.sampled_from(SEED_WORDS) | st.text(max_size=12)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


def check(data: str | bytes) -> LoadedState | None:
    """Only StateInputError may escape, and every error says where and what."""
    try:
        loaded = parse_state(data)
    except StateInputError as exc:
        assert exc.errors
        for error in exc.errors:
            assert error.path and error.message
            assert "Input should" not in error.message and "https://" not in error.message
        assert str(exc).count("\n") == len(exc.errors) - 1
        return None
    # what loads can be written out and read back to the very same sections
    again = parse_state(json.dumps(loaded.state.sections()), mode=loaded.mode)
    assert again.state.sections() == loaded.state.sections()
    return loaded


def leaves(node: Any, loc: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [loc] + [x for k, v in node.items() for x in leaves(v, (*loc, k))]
    if isinstance(node, list):
        return [loc] + [x for i, v in enumerate(node) for x in leaves(v, (*loc, i))]
    return [loc]


SEED_LOCS = [loc for loc in leaves(FULL) if loc]


@st.composite
def mutated_seed(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(FULL)
    for loc in draw(st.lists(st.sampled_from(SEED_LOCS), min_size=1, max_size=4)):
        parent = doc
        try:
            for part in loc[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[loc[-1]] = draw(json_values)
            elif action == "delete":
                del parent[loc[-1]]
            elif isinstance(parent, dict):
                parent[draw(keys)] = draw(json_values)
            elif isinstance(parent, list):
                parent.append(draw(json_values))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this spot
    if draw(st.booleans()):
        doc = {"version": 1, "plugins": doc}
    return doc


@FUZZ
@given(json_values)
def test_arbitrary_json_documents(doc: Any) -> None:
    check(json.dumps(doc))


surrogate_text = st.text(st.characters() | st.sampled_from(["\ud800", "\udfff"]), max_size=8)


@FUZZ
@given(surrogate_text, st.dictionaries(surrogate_text, surrogate_text, max_size=3))
def test_lone_surrogates_anywhere(text: str, mapping: dict[str, str]) -> None:
    iface = {"name": text, "type": "ovs-bridge", "external_ids": mapping}
    check(json.dumps({"net": {"interfaces": [iface]}}))
    check(json.dumps({"systemd": {"units": {text: {}}}}))


@FUZZ
@given(mutated_seed())
def test_seed_with_mutated_leaves(doc: Any) -> None:
    check(json.dumps(doc))


@FUZZ
@given(mutated_seed())
def test_seed_with_mutated_leaves_as_yaml(doc: Any) -> None:
    loaded = check(yaml.safe_dump(doc, allow_unicode=True))
    if loaded is not None:  # YAML and JSON of the same content agree
        assert parse_state(json.dumps(doc)).state == loaded.state


@FUZZ
@given(st.binary(max_size=200))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


@FUZZ
@given(st.text(alphabet=st.sampled_from('{}[]:,"- \n\t&*!<>|#%@abc01.'), max_size=80))
def test_arbitrary_yamlish_text(text: str) -> None:
    check(text)


def test_the_seed_itself_survives_check() -> None:
    assert check(json.dumps(FULL)) is not None
