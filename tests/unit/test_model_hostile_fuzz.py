"""Property tests: no name or template that passes validation carries shell or config syntax.

Generated values mix shell metacharacters, `$()`, backticks, quotes, newlines, `=`, `#`,
options, bidi and zero-width characters and long runs. Whatever validation lets through is
checked against where it goes: liblxc's hook command line (run by `sh -c`), the config
lines op-dbus writes, and the argv of lxc-create.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from op_dbus.model import StateInputError, parse_state
from op_dbus.native.lxc_config import Spec, parse, render

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADDRESSED = json.loads((EXAMPLES / "full-mode-addressed.json").read_text())
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
TEMPLATE_WORD = re.compile(r"[A-Za-z0-9._/=:,+@-]+")
FRAGMENTS = [
    "$(id)", "$(id>q)", "`id`", "${IFS}", "$0", "'", '"', "\\", "\n", "\r", "\t", " ", ";",
    "|", "&", ">", "<", "=", "#", "*", "?", "~", "!", "%", "{", "}", "[", "]", "(", ")", ",",
    ":", "/", "@", "+", ".", "..", "-", "--", "-n", "-p", "--name", "--rootfs=/", "--ro", "-P",
    "\x00", "\x1b", "\x7f", "\u202e", "\u2066", "\u200b", "\u200d", "\u200e", "\ufeff", "\u2028",
    "\u00a0", "\u3164", "é", "\u0430", "lo", "busybox", "download", "vi100", "lxc.hook.pre-start",
    "a" * 20, "x" * 600,
]  # fmt: skip
NAME_PARTS = ["a", "Z", "0", "9", "-", "_", ".", "vi", "mesh", "eth0"]
TEMPLATE_PARTS = [
    "busybox", "download", " ", " -d", " debian", " -r", " bookworm", " --busybox-path",
    " /bin/busybox", " --dist=debian", "=", ":", ",", "+", "@", "/", "-", "a", "0",
]  # fmt: skip


def hostile(benign: list[str]) -> st.SearchStrategy[str]:
    """Mostly `benign` parts (so that a fair share passes and is checked), some hostile."""
    parts = st.sampled_from(benign)
    part = st.one_of(parts, parts, parts, st.sampled_from(FRAGMENTS), st.text(max_size=3))
    return st.lists(part, max_size=8).map("".join)


hostile_names, hostile_templates = hostile(NAME_PARTS), hostile(TEMPLATE_PARTS)


def accepted(loc: tuple[Any, ...], value: Any) -> dict[str, Any] | None:
    """The addressed Full-mode example's sections with `value` at `loc`, or None if refused."""
    doc = copy.deepcopy(ADDRESSED)
    node: Any = doc
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value
    try:
        return parse_state(json.dumps(doc)).state.sections()
    except StateInputError as exc:
        for error in exc.errors:  # and the refusal itself prints as it reads
            assert all(c.isprintable() for c in error.path + error.message), error
        return None


def assert_inert_in_a_shell(word: str) -> None:
    """A shell reads `word` as that one word: nothing to expand, split, quote or redirect."""
    assert shlex.quote(word) == word, word
    assert shlex.split(f"hook ct net up veth {word}") == ["hook", "ct", "net", "up", "veth", word]


OWNED = ("name", "path", "rootfs", "lxcpath", "template", "config", "mapped-uid", "mapped-gid")


def takes_over(word: str) -> bool:
    """Would set, or hide, an option op-dbus passes to lxc-create or the template (getopt
    takes abbreviated long options and `-pVALUE`)."""
    if word == "--":
        return True
    if word.startswith("--"):
        name = word[2:].split("=", 1)[0]
        return any(option.startswith(name) for option in OWNED)
    return word.startswith("-") and (len(word) > 2 or word[1:] in ("n", "p", "P", "t", "f"))


def config_block(**fields: Any) -> list[str]:
    spec = Spec(name="gateway", id="100", **fields)
    return render("", spec, Path("/var/lib/lxc/gateway"), cgroup_v1=False).splitlines()


NAME_FIELDS = [
    ("lxc", "containers", 0, "veth"),
    ("lxc", "containers", 0, "bridge"),
    ("net", "interfaces", 1, "name"),
    ("net", "interfaces", 0, "ports", 0),
]


@FUZZ
@given(st.sampled_from(NAME_FIELDS), hostile_names)
def test_names_that_pass_are_inert_everywhere_they_go(loc: tuple[Any, ...], name: str) -> None:
    if accepted(loc, name) is None:
        return
    assert IFNAME.fullmatch(name), name
    assert name not in (".", "..", "lo") and not name.startswith("-")
    assert_inert_in_a_shell(name)
    lines = config_block(veth=name, bridge=name)
    assert len(lines) == len(config_block(veth="vi100", bridge="mesh"))  # no line of its own
    back = parse("\n".join(lines))
    assert (back.veth, back.bridge) == (name, name)


@FUZZ
@given(hostile_templates)
def test_templates_that_pass_are_inert_everywhere_they_go(template: str) -> None:
    sections = accepted(("lxc", "containers", 0, "template"), template)
    if sections is None:
        return
    kept = sections["lxc"]["containers"][0]["template"]
    assert "\n" not in kept and "\r" not in kept
    words = shlex.split(kept)  # never raises: nothing to unbalance
    assert words == kept.split() and shlex.join(words) == kept
    for word in words:
        assert TEMPLATE_WORD.fullmatch(word), word
        assert_inert_in_a_shell(word)
    assert not any(takes_over(word) for word in words[1:]), words
    lines = config_block(template=kept)
    assert len(lines) == len(config_block())
    assert parse("\n".join(lines)).template == kept


@FUZZ
@given(hostile([*NAME_PARTS, " "]), hostile([*NAME_PARTS, " ", "é", "東京"]))
def test_external_ids_that_pass_hold_no_invisible_or_control_character(
    key: str, value: str
) -> None:
    sections = accepted(("net", "interfaces", 0, "external_ids"), {key: value})
    if sections is None:
        return
    ((kept_key, kept_value),) = sections["net"]["interfaces"][0]["external_ids"].items()
    for char in kept_key + kept_value:
        assert char.isprintable(), repr(char)
        assert unicodedata.category(char) not in ("Cc", "Cf", "Zl", "Zp")
    assert " " not in kept_key and len(kept_key.encode()) <= 256
    assert len(kept_value.encode()) <= 4096
