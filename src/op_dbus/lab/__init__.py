"""The lab: a disposable sandbox of real components that op-dbus and its tests run against."""

from op_dbus.lab.errors import LabError
from op_dbus.lab.lab import DEFAULT_NAME, Lab, run_in_lab

__all__ = ["DEFAULT_NAME", "Lab", "LabError", "run_in_lab"]
