"""`python -m op_dbus` runs the CLI (tests use it to run inside the lab's netns)."""

from op_dbus.cli.main import run

run()
