"""Evaluating nix/ without NixOS: nixpkgs' lib, nix-instantiate, and eval.nix's one-run JSON.

nixpkgs' lib comes from `$NIXPKGS_LIB`, else `<nixpkgs/lib>` when NIX_PATH has nixpkgs, else
`../shared/nix/nixpkgs-lib` beside the checkout (where CI puts it). None found, or no
nix-instantiate: the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
NIX_DIR = ROOT / "nix"
SHARED_LIB = ROOT.parent / "shared" / "nix" / "nixpkgs-lib"


def nix_instantiate() -> str | None:
    return shutil.which("nix-instantiate")


def find_nixpkgs_lib() -> Path | None:
    if os.environ.get("NIXPKGS_LIB"):
        return Path(os.environ["NIXPKGS_LIB"])
    tool = nix_instantiate()
    if tool and os.environ.get("NIX_PATH"):
        found = subprocess.run(
            [tool, "--find-file", "nixpkgs/lib"], capture_output=True, text=True, check=False
        )
        if found.returncode == 0 and found.stdout.strip():
            return Path(found.stdout.strip())
    return SHARED_LIB if (SHARED_LIB / "default.nix").is_file() else None


def why_not() -> str | None:
    """Why the module cannot be evaluated here, or None when it can."""
    if nix_instantiate() is None:
        return "nix-instantiate not installed (Debian: apt-get install nix-bin)"
    if find_nixpkgs_lib() is None:
        return (
            "nixpkgs lib not found: set NIXPKGS_LIB, put nixpkgs on NIX_PATH, "
            f"or provide {SHARED_LIB}"
        )
    return None


@functools.cache
def evaluation() -> dict[str, Any]:
    """Every scenario of nix/tests/scenarios.nix and the flake and package checks, in one run."""
    argv = [
        str(nix_instantiate()),
        "--eval",
        "--strict",
        "--json",
        "--readonly-mode",  # nothing is built or copied into the store
        str(NIX_DIR / "tests" / "eval.nix"),
        "--arg",
        "nixpkgsLib",
        str(find_nixpkgs_lib()),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def scenario(name: str) -> dict[str, Any]:
    return evaluation()["scenarios"][name]


def unit(name: str) -> dict[str, Any]:
    """The `op-dbus` systemd service of a scenario, as the module defines it."""
    return scenario(name)["services"]["op-dbus"]


def exec_argv(exec_start: str) -> list[str]:
    """Split an ExecStart line as systemd does for what the module writes (plain words and
    JSON-quoted ones, with `%%` and `$$` for `%` and `$`)."""
    return [a.replace("%%", "%").replace("$$", "$") for a in shlex.split(exec_start)]
