"""What is generated from the command table and the models: the man page and the schema
(committed, and kept current here), completion scripts, --version, and --json everywhere."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import typer.main

from op_dbus.cli.main import app
from op_dbus.cli.manpage import man_page, version
from op_dbus.model.schema import state_json_schema

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = "regenerate it with `make man schema`"


def op_dbus(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "op_dbus", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def leaf_commands() -> dict[str, object]:
    found: dict[str, object] = {}

    def walk(command: object, path: list[str]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            if hasattr(sub, "commands"):
                walk(sub, [*path, name])
            else:
                found[" ".join([*path, name])] = sub

    walk(typer.main.get_command(app), [])
    return found


def test_the_committed_man_page_is_current_and_names_every_command() -> None:
    committed = (ROOT / "man" / "op-dbus.1").read_text()
    assert committed == man_page(), f"man/op-dbus.1 is stale: {REGENERATE}"
    for path, command in leaf_commands().items():
        if not getattr(command, "hidden", False) and not path.startswith("blockchain"):
            assert f".SS op\\-dbus {path.replace('-', chr(92) + '-')}" in committed, path


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders_the_page_without_warnings() -> None:
    shown = subprocess.run(
        ["man", "--warnings", "-l", str(ROOT / "man" / "op-dbus.1")],
        capture_output=True,
        text=True,
        env={**os.environ, "MANWIDTH": "80"},
        check=False,
    )
    assert shown.returncode == 0 and "EXIT STATUS" in shown.stdout
    assert shown.stderr == ""


def test_the_published_schema_is_current_and_takes_both_shapes() -> None:
    published = json.loads((ROOT / "schema" / "op-dbus.schema.json").read_text())
    assert published == state_json_schema(), f"schema/op-dbus.schema.json is stale: {REGENERATE}"
    assert json.loads(op_dbus("schema").stdout) == published
    validator = jsonschema.Draft202012Validator(published)
    validator.check_schema(published)
    for example in sorted((ROOT / "examples").glob("*.json")):
        errors = [e.message for e in validator.iter_errors(json.loads(example.read_text()))]
        assert errors == [], f"{example.name}: {errors}"
    seed = json.loads((ROOT / "examples" / "full-mode.json").read_text())
    assert "plugins" not in seed, "the flagship example is the NixOS stateConfig shape"
    assert validator.is_valid({"version": 1, "plugins": seed})
    assert not validator.is_valid({"net": {"interfaces": [{"name": "x", "type": "bridge"}]}})
    assert not validator.is_valid({"version": 1, "plugins": {}, "net": {}}), "shapes never mix"


def test_version_prints_the_installed_version() -> None:
    result = op_dbus("--version")
    assert result.returncode == 0 and result.stdout == f"op-dbus {version()}\n"
    assert version() != "unknown"


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_and_the_completions_they_ask_for(shell: str) -> None:
    script = op_dbus("completion", shell)
    assert script.returncode == 0 and "_OP_DBUS_COMPLETE" in script.stdout
    if shell == "bash":
        assert shutil.which("bash") is not None
        syntax = subprocess.run(["bash", "-n"], input=script.stdout, text=True, check=False)
        assert syntax.returncode == 0
    asked = op_dbus(
        env={"_OP_DBUS_COMPLETE": "complete_bash", "COMP_WORDS": "op-dbus qu", "COMP_CWORD": "1"}
    )
    assert asked.stdout.split() == ["query"]
    options = op_dbus(
        env={
            "_OP_DBUS_COMPLETE": "complete_bash",
            "COMP_WORDS": "op-dbus show --for",
            "COMP_CWORD": "2",
        }
    )
    assert options.stdout.split() == ["--format"]


def test_completion_of_an_unknown_shell_is_a_usage_error() -> None:
    result = op_dbus("completion", "tcsh")
    assert result.returncode == 2 and "bash, zsh, fish" in result.stderr


def test_every_command_takes_json() -> None:
    without = [
        path
        for path, command in leaf_commands().items()
        if "--json" not in {o for p in command.params for o in getattr(p, "opts", [])}
        and not command.hidden  # try-keeper: started by apply, never by a person
    ]
    assert without == []
