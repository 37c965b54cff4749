"""The CLI as a user meets it: exit codes, error paths on stderr, --json, no tracebacks.

These run the real console entry (`python -m op_dbus`) in a subprocess, with endpoints pointed
at sockets that do not exist, so nothing here can reach or change the host.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOWHERE = {
    "OPDBUS_OVSDB": "unix:/nonexistent/op-dbus-test/db.sock",
    "OPDBUS_SYSTEM_BUS": "unix:path=/nonexistent/op-dbus-test/bus",
    "OPDBUS_LXC_PATH": "/nonexistent/op-dbus-test/lxc",
    "OPDBUS_DATA_DIR": "/nonexistent/op-dbus-test/data",
    "PATH": "/usr/bin:/bin",
}


def op_dbus(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    raw = subprocess.run(
        [sys.executable, "-m", "op_dbus", *args],
        input=stdin,
        capture_output=True,
        env=NOWHERE,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        raw.args, raw.returncode, raw.stdout.decode(), raw.stderr.decode()
    )


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("name", ["full-mode", "standalone-mode", "agent-mode"])
def test_examples_validate(name: str) -> None:
    result = op_dbus("validate", str(EXAMPLES / f"{name}.json"), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["mode"] == name.removesuffix("-mode")


def test_bad_field_names_its_path_and_exits_2() -> None:
    doc = {
        "plugins": {
            "net": {
                "interfaces": [
                    {
                        "name": "ovsbr0",
                        "type": "ovs-bridge",
                        "ipv4": {"address": [{"ip": "10.0.0.1", "prefix": 33}]},
                    }
                ]
            }
        }
    }
    result = op_dbus("validate", "-", stdin=json.dumps(doc).encode())
    assert result.returncode == 2
    assert "plugins.net.interfaces[0].ipv4.address[0].prefix" in result.stderr
    assert_clean(result)


def test_a_value_that_looks_like_console_markup_or_emoji_is_printed_as_it_is() -> None:
    container = {"id": "100", "veth": "[/]x", "template": "[bold]busybox"}
    bridge = {"name": "mesh", "type": "ovs-bridge", "external_ids": {"a :smile:": "x"}}
    doc = {"net": {"interfaces": [bridge]}, "lxc": {"containers": [container]}}
    result = op_dbus("validate", "-", stdin=json.dumps(doc).encode())
    assert result.returncode == 2, result.stderr
    assert "lxc.containers[0].veth: must be 1 to 15 characters" in result.stderr
    assert '"[/]x"' in result.stderr and '"[bold]busybox"' in result.stderr
    assert '"a :smile:"' in result.stderr
    assert_clean(result)


def test_json_errors_go_to_stdout_as_json() -> None:
    result = op_dbus("validate", "-", "--json", stdin=b'{"lxc": {"containers": [{"id": 100}]}}')
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert any(e["path"] == "lxc.containers[0].id" for e in report["errors"])


@pytest.mark.parametrize(
    "payload", [b"\xff\xfe\x00garbage", b"[1, 2", b"- just\n- a list\n", b"", b"null"]
)
def test_garbage_is_a_clean_input_error(payload: bytes) -> None:
    result = op_dbus("validate", "-", stdin=payload)
    assert result.returncode == 2
    assert result.stderr.strip()
    assert_clean(result)


def test_missing_file_exits_2() -> None:
    result = op_dbus("diff", "/nonexistent/state.json")
    assert result.returncode == 2
    assert "cannot read /nonexistent/state.json" in result.stderr
    assert_clean(result)


def test_missing_file_with_json_prints_the_json_error_document() -> None:
    result = op_dbus("validate", "/nonexistent/state.json", "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["file"] == "/nonexistent/state.json"
    assert "cannot read /nonexistent/state.json" in report["errors"][0]["message"]


def test_mode_that_forbids_a_section_exits_2_naming_it() -> None:
    result = op_dbus("--mode", "agent", "validate", str(EXAMPLES / "standalone-mode.json"))
    assert result.returncode == 2
    assert "plugins.net" in result.stderr


def test_unknown_mode_is_a_usage_error() -> None:
    result = op_dbus("--mode", "turbo", "validate", str(EXAMPLES / "agent-mode.json"))
    assert result.returncode == 2
    assert_clean(result)


def test_schema_is_json_schema_of_the_plugins_shape() -> None:
    result = op_dbus("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert "plugins" in schema["properties"]


def test_diff_reports_sections_it_cannot_handle_and_exits_6() -> None:
    result = op_dbus("diff", str(EXAMPLES / "full-mode.json"), "--json")
    assert result.returncode == 6
    plan = json.loads(result.stdout)
    assert [p["name"] for p in plan["plugins"]] == ["systemd", "net", "lxc"]
    # every backend points at a socket that does not exist: nothing can be read
    assert {p["status"] for p in plan["plugins"]} == {"unavailable"}
    assert all(p["reason"] for p in plan["plugins"])
    assert plan["pending"] is False


def test_apply_refuses_unhandled_sections_with_exit_6() -> None:
    result = op_dbus("apply", str(EXAMPLES / "full-mode.json"))
    assert result.returncode == 6
    assert "nothing changed" in result.stdout + result.stderr
    assert_clean(result)


def test_apply_plugin_without_its_section_is_usage_error() -> None:
    result = op_dbus("apply", str(EXAMPLES / "agent-mode.json"), "--plugin", "lxc")
    assert result.returncode == 2


def test_init_writes_a_file_that_validates(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    assert op_dbus("--mode", "standalone", "init", "-o", str(target)).returncode == 0
    assert set(json.loads(target.read_text())["plugins"]) == {"systemd", "net", "firewall"}
    assert op_dbus("validate", str(target)).returncode == 0
    again = op_dbus("init", "-o", str(target))
    assert again.returncode == 2, "init must not overwrite without --force"


def test_init_never_writes_through_a_symlink_at_the_output(tmp_path: Path) -> None:
    """A dangling symlink planted at `-o` (e.g. in a directory others can write) is not
    followed: without --force it counts as existing, with --force it is replaced."""
    planted_target = tmp_path / "etc-file"
    link = tmp_path / "state.json"
    link.symlink_to(planted_target)
    refused = op_dbus("--mode", "standalone", "init", "-o", str(link))
    assert refused.returncode == 2 and "exists" in refused.stderr
    assert not planted_target.exists() and link.is_symlink()
    assert op_dbus("--mode", "standalone", "init", "-o", str(link), "--force").returncode == 0
    assert not planted_target.exists()
    assert not link.is_symlink() and json.loads(link.read_text())["version"] == 1
    assert (link.stat().st_mode & 0o777) == 0o644


def test_doctor_without_any_backend_exits_6() -> None:
    result = op_dbus("doctor", "--mode", "agent", "--json")
    assert result.returncode == 6
    assert_clean(result)


def test_plugin_option_narrows_the_plan_and_repeats() -> None:
    full = str(EXAMPLES / "full-mode.json")
    result = op_dbus("diff", full, "--plugin", "lxc", "--plugin", "systemd", "--json")
    assert [p["name"] for p in json.loads(result.stdout)["plugins"]] == ["systemd", "lxc"]
    bad = op_dbus("diff", full, "--plugin", "ovs")
    assert bad.returncode == 2
    assert "--plugin must be one of" in bad.stderr
