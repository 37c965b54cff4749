"""What D-Bus `Apply`/`Plan` options may hold: prune, acknowledge and probe are bounded and
checked before anything is parsed or read; probe targets are IPv4 socket addresses only."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.daemon.dbus_api import _options
from op_dbus.engine.probe import Target, parse_target
from op_dbus.errors import InvalidInput


def test_options_carry_prune_consent_and_probes() -> None:
    text = json.dumps(
        {"prune": True, "acknowledge": ["delete net:bridge/mesh"], "probe": ["10.0.0.9:22"]}
    )
    options = _options(text)
    assert options["prune"] is True
    assert options["acknowledge"] == ["delete net:bridge/mesh"]
    assert options["probes"] == (Target("10.0.0.9", 22),)
    assert _options(json.dumps({"acknowledge": True}))["acknowledge"] is True
    assert _options("{}")["acknowledge"] is False and _options("{}")["prune"] is False


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"prune": "yes"}, "options.prune"),
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
