"""Which characters show as themselves on screen, and how the others are spelled in messages.

A state file's names are ASCII allowlists (fields.py); its free text (external_ids) may hold
any character that prints as itself. Everything else (controls, bidi overrides, zero-width
and other format characters, separators but the plain space, unassigned code points, and the
few letters that render as blank) could make a plan or an error read differently from what
the document holds, so it is refused in text and escaped wherever a message quotes it.
"""

from __future__ import annotations

BLANK_LOOKING = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")
"""Printable by Unicode's categories, yet drawn as nothing: a combining grapheme joiner,
Hangul and halfwidth fillers, Khmer inherent vowels, the blank Braille pattern."""


def is_visible(char: str) -> bool:
    """True for a character that prints as itself (the plain space included)."""
    return char.isprintable() and char not in BLANK_LOOKING


def escaped(char: str) -> str:
    """`char` itself when visible, else its code point as `\\uXXXX` (or `\\UXXXXXXXX`)."""
    if is_visible(char):
        return char
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def first_invisible(text: str) -> str | None:
    """The first character of `text` that does not print as itself, or None."""
    return next((c for c in text if not is_visible(c)), None)
