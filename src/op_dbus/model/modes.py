"""The three run modes and which state sections each allows (the seed's dependency matrix)."""

from enum import StrEnum


class Mode(StrEnum):
    AGENT = "agent"
    STANDALONE = "standalone"
    FULL = "full"


SECTIONS_BY_MODE: dict[Mode, tuple[str, ...]] = {
    Mode.AGENT: ("systemd",),
    Mode.STANDALONE: ("systemd", "net"),
    Mode.FULL: ("systemd", "net", "lxc"),
}


def smallest_mode_for(sections: set[str]) -> Mode:
    """The least-privileged mode whose sections cover `sections` (what `--mode auto` picks)."""
    for mode in (Mode.AGENT, Mode.STANDALONE, Mode.FULL):
        if sections <= set(SECTIONS_BY_MODE[mode]):
            return mode
    return Mode.FULL
