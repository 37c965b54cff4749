"""Our own asyncio OVSDB client (RFC 7047), split the way OVS splits its own: framing.py (the
delimiter-less JSON stream), protocol.py (JSON-RPC without a socket: replies matched to
requests, monitor updates routed), client.py (connect, transact, monitor, reconnect).
What op-dbus does with the Open_vSwitch database is in native/vswitch.py.
"""

from op_dbus.native.ovsdb.client import (
    DEFAULT_TCP_PORT,
    DEFAULT_TIMEOUT,
    OvsdbClient,
    OvsdbLink,
    Target,
    parse_target,
)
from op_dbus.native.ovsdb.errors import (
    OvsdbConnectionError,
    OvsdbError,
    OvsdbOpError,
    OvsdbProtocolError,
    OvsdbRpcError,
    OvsdbTimeoutError,
)
from op_dbus.native.ovsdb.framing import JsonStreamDecoder
from op_dbus.native.ovsdb.protocol import Monitor

__all__ = [
    "DEFAULT_TCP_PORT",
    "DEFAULT_TIMEOUT",
    "JsonStreamDecoder",
    "Monitor",
    "OvsdbClient",
    "OvsdbConnectionError",
    "OvsdbError",
    "OvsdbLink",
    "OvsdbOpError",
    "OvsdbProtocolError",
    "OvsdbRpcError",
    "OvsdbTimeoutError",
    "Target",
    "parse_target",
]
