"""Every .nix file of the checkout parses (`nix-instantiate --parse`)."""

from __future__ import annotations

import subprocess

import pytest
from nix_eval import ROOT, nix_instantiate

NIX_FILES = sorted(
    p.relative_to(ROOT)
    for p in ROOT.rglob("*.nix")
    if ".venv" not in p.parts and ".git" not in p.parts
)


def test_the_checkout_has_the_module_package_and_flake() -> None:
    names = {str(p) for p in NIX_FILES}
    assert {"flake.nix", "nix/module.nix", "nix/package.nix"} <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=str)
def test_parses(path) -> None:
    tool = nix_instantiate()
    if tool is None:
        pytest.skip("nix-instantiate not installed (Debian: apt-get install nix-bin)")
    done = subprocess.run([tool, "--parse", str(ROOT / path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
