"""What D-Bus `Apply`/`Plan` options may hold: prune, acknowledge and probe are bounded and
checked before anything is parsed or read; probe targets are IPv4 socket addresses only. The
JSON the API sends (`ApplyOptions.to_json`) is read back as the same options."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.daemon.dbus_api import MAX_OPTIONS, _options_object
from op_dbus.engine.options import ApplyOptions
from op_dbus.engine.probe import Target, parse_target
from op_dbus.errors import InvalidInput


def _options(text: str) -> ApplyOptions:
    return ApplyOptions.from_json(json.loads(text), mode="full")


def test_options_carry_prune_consent_and_probes() -> None:
    text = json.dumps(
        {"prune": True, "acknowledge": ["delete net:bridge/mesh"], "probe": ["10.0.0.9:22"]}
    )
    options = _options(text)
    assert options.prune is True
    assert options.acknowledge == ("delete net:bridge/mesh",)
    assert options.probes == (Target("10.0.0.9", 22),)
    assert _options(json.dumps({"acknowledge": True})).acknowledge is True
    assert _options("{}").acknowledge is False and _options("{}").prune is False
    assert _options("{}").repair is False and _options("{}").mode == "full"


HEX64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
TARGETS = st.builds(
    Target,
    st.ip_addresses(v=4).map(str),
    st.none() | st.integers(min_value=1, max_value=65535),
)


@given(
    actor=st.text(max_size=64).filter(str.isprintable),
    seconds=st.none() | st.integers(min_value=1, max_value=86400),
    revision=st.none() | HEX64,
    prune=st.booleans(),
    acknowledge=st.booleans()
    | st.lists(st.text(min_size=1, max_size=40).filter(str.isprintable), max_size=4).map(tuple),
    probes=st.lists(TARGETS, max_size=4).map(tuple),
)
def test_what_the_api_sends_is_read_back_as_the_same_options(
    actor: str,
    seconds: int | None,
    revision: str | None,
    prune: bool,
    acknowledge: bool | tuple[str, ...],
    probes: tuple[Target, ...],
) -> None:
    sent = ApplyOptions(actor, "full", seconds, revision, prune, acknowledge or False, probes)
    assert _options(json.dumps(sent.to_json())) == sent


def test_an_options_argument_is_bounded_before_it_is_parsed() -> None:
    with pytest.raises(InvalidInput, match="options is larger than the limit of 256 KiB"):
        _options_object(" " * (MAX_OPTIONS + 1))
    with pytest.raises(InvalidInput, match="options must be a JSON object"):
        _options_object("[]")


def test_the_wire_form_leaves_mode_and_repair_to_the_daemon() -> None:
    sent = ApplyOptions("me", "agent", repair=True).to_json()
    assert "mode" not in sent and "repair" not in sent


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"prune": "yes"}, "options.prune"),
        ({"actor": "a\nb"}, "options.actor"),
        ({"actor": "x" * 1025}, "options.actor"),
        ({"confirm_within": True}, "options.confirm_within"),
        ({"confirm_within": 1.5}, "options.confirm_within"),
        ({"expect_revision": "abc"}, "options.expect_revision"),
        ({"acknowledge": "all"}, "options.acknowledge"),
        ({"acknowledge": ["x"] * 257}, "options.acknowledge"),
        ({"acknowledge": ["\n"]}, "options.acknowledge"),
        ({"probe": "10.0.0.1"}, "options.probe"),
        ({"probe": ["example.org"]}, "probe"),
        ({"probe": ["10.0.0.1:0"]}, "probe"),
        ({"probe": ["10.0.0.1:-1"]}, "probe"),
    ],
)
def test_bad_options_are_invalid_input_naming_the_option(options: dict, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        _options(json.dumps(options))


@given(st.text(max_size=40))
def test_a_probe_target_is_an_ipv4_address_with_an_optional_port_or_refused(text: str) -> None:
    try:
        target = parse_target(text)
    except InvalidInput as err:
        assert err.message.startswith("probe ")
    else:
        assert text.startswith(target.address)
        assert target.port is None or 1 <= target.port <= 65535
