"""Parsing `ovs-vsctl --db` style targets."""

import pytest

from op_dbus.native.ovsdb import DEFAULT_TCP_PORT, Target, parse_target


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:/run/openvswitch/db.sock", Target("unix", path="/run/openvswitch/db.sock")),
        ("unix:relative/db.sock", Target("unix", path="relative/db.sock")),
        ("tcp:127.0.0.1:6641", Target("tcp", host="127.0.0.1", port=6641)),
        ("tcp:10.0.0.1", Target("tcp", host="10.0.0.1", port=DEFAULT_TCP_PORT)),
        ("tcp:[::1]:6642", Target("tcp", host="::1", port=6642)),
        ("tcp:[fe80::1]", Target("tcp", host="fe80::1", port=DEFAULT_TCP_PORT)),
    ],
)
def test_accepted_targets(text: str, expected: Target) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("/run/openvswitch/db.sock", "expected unix:PATH or tcp:IP:PORT"),
        ("unix:", "expected unix:PATH or tcp:IP:PORT"),
        ("ssl:127.0.0.1:6640", "unsupported method 'ssl'"),
        ("punix:/tmp/db.sock", "unsupported method 'punix'"),
        ("ptcp:6640", "unsupported method 'ptcp'"),
        ("tcp::6640", "missing host"),
        ("tcp:127.0.0.1:http", "port must be a number"),
        ("tcp:127.0.0.1:0", "port must be a number"),
        ("tcp:127.0.0.1:70000", "port must be a number"),
        ("tcp:[::1", "malformed IPv6"),
        ("tcp:[::1]6640", "malformed IPv6"),
    ],
)
def test_refused_targets_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_target(text)
    assert repr(text) in str(caught.value)
