"""op-dbus: declarative host state for Open vSwitch, LXC and systemd over native protocols."""

__version__ = "0.1.0"
