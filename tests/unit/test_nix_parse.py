"""Every .nix file of the checkout parses (`nix-instantiate --parse`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nix_eval
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
def test_parses(path: Path) -> None:
    tool = nix_instantiate()
    if tool is None:
        pytest.skip("nix-instantiate not installed (Debian: apt-get install nix-bin)")
    done = subprocess.run([tool, "--parse", str(ROOT / path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_nixpkgs_lib_comes_from_the_environment_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NIXPKGS_LIB", "/somewhere/lib")
    assert nix_eval.find_nixpkgs_lib() == Path("/somewhere/lib")


def test_without_any_nixpkgs_lib_the_tests_say_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NIXPKGS_LIB", raising=False)
    monkeypatch.delenv("NIX_PATH", raising=False)
    monkeypatch.setattr(nix_eval, "SHARED_LIB", tmp_path / "missing")
    monkeypatch.setattr(nix_eval, "nix_instantiate", lambda: "/usr/bin/nix-instantiate")
    assert nix_eval.find_nixpkgs_lib() is None
    reason = nix_eval.why_not()
    assert reason is not None and "NIXPKGS_LIB" in reason and "NIX_PATH" in reason
    monkeypatch.setattr(nix_eval, "nix_instantiate", lambda: None)
    assert "apt-get install nix-bin" in str(nix_eval.why_not())


def test_nixpkgs_on_nix_path_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if nix_instantiate() is None:
        pytest.skip("nix-instantiate not installed (Debian: apt-get install nix-bin)")
    (tmp_path / "lib").mkdir()
    monkeypatch.delenv("NIXPKGS_LIB", raising=False)
    monkeypatch.setenv("NIX_PATH", f"nixpkgs={tmp_path}")
    assert nix_eval.find_nixpkgs_lib() == tmp_path / "lib"
