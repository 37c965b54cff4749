"""The lxc section: LXC containers, each wired by a veth into an Open vSwitch bridge."""
