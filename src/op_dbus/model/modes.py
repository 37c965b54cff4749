"""The three run modes and which state sections each allows (the seed's dependency matrix).

Which section needs which mode is declared once, in the registry (op_dbus/registry.py).
"""

from enum import StrEnum

from op_dbus.registry import REGISTRY


class Mode(StrEnum):
    AGENT = "agent"
    STANDALONE = "standalone"
    FULL = "full"


SECTIONS_BY_MODE: dict[Mode, tuple[str, ...]] = {mode: REGISTRY.sections_for(mode) for mode in Mode}


def smallest_mode_for(sections: set[str]) -> Mode:
    """The least-privileged mode whose sections cover `sections` (what `--mode auto` picks)."""
    for mode in Mode:
        if sections <= set(SECTIONS_BY_MODE[mode]):
            return mode
    return Mode.FULL
