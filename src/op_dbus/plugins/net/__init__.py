"""The net section: Open vSwitch bridges and ports (one OVSDB transaction), addresses and routes
(netlink)."""
