"""The README and docs/ as a user reads them: every `op-dbus` command parses as written
(subcommands and options exist, values given), and every file they name exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer._click import exceptions as click_errors  # the click typer builds commands with

from op_dbus.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PROGRAM = re.compile(r"^(?:\.venv/bin/)?op-dbus(?= |$)")
INLINE = re.compile(r"`([^`\n]+)`")
PATH_LIKE = re.compile(
    r"^(?:src|docs|examples|scripts|nix|tests|man|schema|benchmarks|plugins|engine|native|"
    r"model|cli|daemon|api|ledger|lab|mcp|registry)/[\w./-]*$"
)
BARE_SOURCE = re.compile(r"^[\w-]+\.(?:py|md)$")
"""A module or page named without its directory (`plugin.py` on a plugin's page): it must
exist somewhere in the tree. Other bare names (`apply.lock`, `state.json`) are the user's
or made at run time."""
REPO_FILES = {"Makefile", "pyproject.toml", "flake.nix"}
SHELL_SYNTAX = {">", "<", "|", "&&", ";", "2>&1"}
PLACEHOLDER_DIRS = ("NAME/", "PATH/", "ROOTFS/", "DIR/")


def code_lines(text: str) -> list[str]:
    """Lines of fenced and indented code blocks, and inline code spans."""
    found: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            found.append(line.strip())
        found += INLINE.findall(line)
    return found


def commands(path: Path) -> list[str]:
    """The `op-dbus ...` command lines of a page, with their comments cut off."""
    found = []
    for line in code_lines(path.read_text()):
        line = line.split("  #", 1)[0].split(" # ", 1)[0].strip()
        if PROGRAM.match(line):
            found.append(line)
    return found


def parse(argv: list[str]) -> None:
    """Parse `argv` as the CLI would, down to the last subcommand, without running it."""
    command: Any = typer.main.get_command(app)
    context = None
    while True:
        context = command.make_context("op-dbus", list(argv), parent=context)
        rest = [*context._protected_args, *context.args] if hasattr(command, "commands") else []
        if not rest:
            return
        name, sub, argv = command.resolve_command(context, rest)
        assert sub is not None, f"no command {name}"
        command = sub


def words(line: str) -> list[str]:
    """The arguments of a documented command: usage brackets, ellipses, alternatives
    (`| ...`) and shell redirections dropped, a placeholder (`FILE`, `N`) given a value,
    and nothing after the word following `--` (that is another program's command line)."""
    text = PROGRAM.sub("", line.split(" | ", 1)[0], count=1)
    argv = shlex.split(re.sub(r"[\[\]]|\.\.\.", "", text))
    argv = ["1" if re.fullmatch(r"[A-Z][A-Z_]*", word) else word for word in argv]
    shell = next((i for i, word in enumerate(argv) if word in SHELL_SYNTAX), len(argv))
    argv = argv[:shell]
    return argv[: argv.index("--") + 2] if "--" in argv else argv


DOCUMENTED = [(path.relative_to(ROOT), line) for path in DOCS for line in commands(path)]


def test_the_docs_have_commands_to_check() -> None:
    assert len(DOCUMENTED) > 40


@pytest.mark.parametrize(("page", "line"), DOCUMENTED, ids=[f"{p}:{c}" for p, c in DOCUMENTED])
def test_every_documented_command_parses(page: Path, line: str) -> None:
    argv = words(line)
    try:
        parse(argv)
    except (typer.Exit, click_errors.NoArgsIsHelpError):  # --version; a bare group
        pass
    except click_errors.UsageError as err:
        last = argv[-1] if argv else ""
        if getattr(err, "option_name", None) == last:
            return  # prose naming an option (`op-dbus run --mcp-http`), its value described
        if isinstance(err, click_errors.MissingParameter) and len(argv) <= 2:
            return  # prose naming a command (`op-dbus apply`), its arguments described
        pytest.fail(f"{page}: `{line}` does not parse: {err.format_message()}")


def named_paths(path: Path) -> list[str]:
    """Files a page names in inline code, and in the arguments of its commands (all of
    them, another program's after `--` too: `lab exec -- op-dbus apply examples/x.json`)."""
    text = path.read_text()
    tokens = INLINE.findall(text) + [w for line in code_lines(text) for w in line.split()]
    return [
        token.rstrip(".,:")
        for token in tokens
        if " " not in token
        and (
            PATH_LIKE.match(token.rstrip(".,:")) or BARE_SOURCE.match(token) or token in REPO_FILES
        )
    ]


REFERENCED = sorted({(p.relative_to(ROOT), name) for p in DOCS for name in named_paths(p)})


@pytest.mark.parametrize(("page", "name"), REFERENCED, ids=[f"{p}:{n}" for p, n in REFERENCED])
def test_every_file_the_docs_name_exists(page: Path, name: str) -> None:
    if any(part in name for part in PLACEHOLDER_DIRS) or "*" in name:
        return
    if BARE_SOURCE.match(name):
        assert any(ROOT.glob(f"[!.]*/**/{name}")) or (ROOT / name).exists(), f"{page}: {name}"
        return
    bases = [ROOT, ROOT / "src" / "op_dbus", ROOT / "docs", ROOT / "nix"]
    assert any((base / name).exists() for base in bases), f"{page} names {name}"


def test_the_makefile_has_every_target_the_docs_name() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([\w-]+):", makefile, re.MULTILINE))
    for page in DOCS:
        for line in code_lines(page.read_text()):
            if line.startswith("make "):
                for target in line.split("#")[0].split()[1:]:
                    assert target in targets, f"{page.name}: make {target}"


def test_the_readme_puts_op_dbus_on_the_path_before_its_first_command() -> None:
    """After `make setup` op-dbus is .venv/bin/op-dbus, which a shell does not find by name."""
    use = (ROOT / "README.md").read_text().split("## Use", 1)[1]
    first = use.index("    op-dbus ")
    assert 'export PATH="$PWD/.venv/bin:$PATH"' in use[:first]
