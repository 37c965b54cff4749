"""The systemd section: units enabled, active, masked (over systemd's D-Bus Manager)."""
