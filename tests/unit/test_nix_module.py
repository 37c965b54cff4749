"""nix/module.nix (`services.op-dbus`) evaluated with nixpkgs' lib against stub NixOS options.

One nix-instantiate run (nix/tests/eval.nix) evaluates every scenario of nix/tests/scenarios.nix;
each test reads its part. The seed's whole configuration.nix is one of them.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from nix_eval import ROOT, exec_argv, scenario, unit, why_not

from op_dbus.model import Mode, load_state

pytestmark = pytest.mark.skipif(why_not() is not None, reason=str(why_not()))

SEED_DOC = ROOT.parent / "shared" / "seed" / "proxmox-full-mode-dependencies.md"
SEED_NIX = ROOT / "nix" / "tests" / "seed-configuration.nix"
FULL_MODE = json.loads((ROOT / "examples" / "full-mode.json").read_text())
ETC = "op-dbus/state.json"


def args(name: str) -> list[str]:
    return exec_argv(unit(name)["serviceConfig"]["ExecStart"])


def run_args(name: str) -> list[str]:
    """The arguments after `run`."""
    argv = args(name)
    return argv[argv.index("run") + 1 :]


def global_args(name: str) -> list[str]:
    """The arguments between the program and `run`."""
    argv = args(name)
    return argv[1 : argv.index("run")]


def generated(name: str) -> Any:
    return json.loads(scenario(name)["etc"][ETC]["json"])


# -- the seed ------------------------------------------------------------------------------------
@pytest.mark.skipif(not SEED_DOC.is_file(), reason=f"the seed is not at {SEED_DOC}")
def test_the_seed_configuration_here_is_the_seeds_own_but_for_its_imports() -> None:
    part = SEED_DOC.read_text().split("## Complete NixOS Configuration for Full Mode", 1)[1]
    block = re.search(r"```nix\n(.*?)```", part, re.S)
    assert block is not None
    expected = block.group(1).replace("    ./hardware-configuration.nix\n", "")
    expected = expected.replace("/path/to/operation-dbus/nix/module.nix", "../module.nix")
    ours = "".join(line for line in SEED_NIX.read_text().splitlines(True) if line[:1] != "#")
    assert ours == expected


def test_the_seed_evaluates_without_failed_assertions() -> None:
    seed = scenario("seed")
    assert seed["assertions"] == []
    assert seed["services"]["op-dbus"]["enable"] is True


def test_the_seeds_state_file_is_examples_full_mode_json() -> None:
    assert generated("seed") == FULL_MODE


def test_the_generated_state_file_is_valid_for_op_dbus_in_full_mode(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(scenario("seed")["etc"][ETC]["json"])
    loaded = load_state(path, mode=Mode.FULL)
    assert set(loaded.state.sections()) == {"net", "lxc", "systemd"}


def test_the_seed_gets_ovs_lxc_the_dbus_policy_and_its_firewall() -> None:
    seed = scenario("seed")
    assert (seed["vswitch"], seed["lxc"]) == (True, True)
    assert seed["firewallTCP"] == [22, 9573]
    assert seed["package"] in seed["dbusPackages"]
    assert "op-dbus-0.1.0" in seed["systemPackages"]
    assert global_args("seed") == ["--mode", "full"]
    assert run_args("seed") == [
        "--state-file",
        "/etc/op-dbus/state.json",
        "--policy",
        "enforce",
    ]
    assert args("seed")[0] == f"{seed['package']}/bin/op-dbus"


def test_the_seeds_openvswitch_service_is_warned_about_and_made_real() -> None:
    seed = scenario("seed")
    (warning,) = seed["warnings"]
    assert '"openvswitch.service"' in warning
    assert "ovsdb.service" in warning and "ovs-vswitchd.service" in warning
    assert "provides openvswitch.service" in warning
    ovs = seed["services"]["openvswitch"]
    assert ovs["wantedBy"] == ["multi-user.target"], "the seed's own line merges in"
    assert ovs["requires"] == ["ovsdb.service", "ovs-vswitchd.service"]
    assert ovs["serviceConfig"]["Type"] == "oneshot"
    assert ovs["serviceConfig"]["RemainAfterExit"] is True
    assert ovs["serviceConfig"]["ExecStart"].endswith("/bin/true")


def test_an_openvswitch_service_the_state_enables_is_enabled_by_nixos() -> None:
    ovs = scenario("openvswitchNamedOnly")["services"]["openvswitch"]
    assert ovs["wantedBy"] == ["multi-user.target"]
    assert ovs["requires"] == ["ovsdb.service", "ovs-vswitchd.service"]


def test_without_ovs_on_no_openvswitch_service_is_made_up() -> None:
    case = scenario("openvswitchWithoutVswitch")
    assert "openvswitch" not in case["services"]
    (warning,) = case["warnings"]
    assert "With virtualisation.vswitch.enable off, nothing provides it" in warning


# -- the unit ------------------------------------------------------------------------------------
def test_the_unit_is_notify_hardened_and_never_restarts_on_invalid_input() -> None:
    config = unit("seed")["serviceConfig"]
    assert config["Type"] == "notify"
    assert config["RestartPreventExitStatus"] == 2
    assert config["Restart"] == "on-failure"
    assert config["ProtectSystem"] == "strict"
    assert config["ProtectHome"] is True and config["PrivateTmp"] is True
    assert config["ProtectKernelModules"] is True
    assert config["RestrictAddressFamilies"] == ["AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6"]
    assert re.fullmatch(r"/nix/store/\S+/bin/kill -HUP \$MAINPID", config["ExecReload"])
    assert "/var/lib/op-dbus" in config["ReadWritePaths"]


@pytest.mark.parametrize(
    ("name", "mode", "caps", "confined"),
    [
        ("defaults", "agent", ["CAP_SYS_ADMIN"], True),
        ("standalone", "standalone", ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_NET_RAW"], True),
        ("seed", "full", None, False),
    ],
)
def test_capabilities_and_confinement_follow_the_mode(
    name: str, mode: str, caps: list[str] | None, confined: bool
) -> None:
    config = unit(name)["serviceConfig"]
    assert global_args(name)[:2] == ["--mode", mode]
    if caps is not None:
        assert config["CapabilityBoundingSet"] == caps
    else:  # liblxc's needs, the same set as data/systemd/op-dbus.service
        debian = (ROOT / "data" / "systemd" / "op-dbus.service").read_text()
        line = re.search(r"^CapabilityBoundingSet=(.*)$", debian, re.M)
        assert line is not None and config["CapabilityBoundingSet"] == line.group(1).split()
    for key in ("NoNewPrivileges", "ProtectControlGroups", "RestrictNamespaces", "PrivateDevices"):
        assert config[key] is confined, key


def test_ovs_modes_order_after_nixos_ovs_units_and_agent_does_not() -> None:
    for name in ("seed", "standalone"):
        assert {"ovsdb.service", "ovs-vswitchd.service"} <= set(unit(name)["after"])
        assert "ovs-vswitchd.service" in unit(name)["wants"]
        assert "-/run/openvswitch" in unit(name)["serviceConfig"]["ReadWritePaths"]
    assert unit("defaults")["after"] == ["dbus.service"]
    assert "openvswitch.service" not in unit("seed")["after"]


def test_full_mode_has_the_tools_liblxc_and_the_hooks_call_on_its_path() -> None:
    writable = unit("seed")["serviceConfig"]["ReadWritePaths"]
    assert writable == ["/var/lib/op-dbus", "-/run/openvswitch", "-/var/lib/lxc", "-/run/lxc",
                        "-/var/cache/lxc"]  # fmt: skip
    names = {p.split("-", 1)[1] for p in unit("seed")["path"]}
    assert names == {"lxc", "openvswitch", "util-linux", "ethtool"}
    assert unit("standalone")["path"] == []


def test_a_firewall_section_puts_nft_on_the_path_and_lets_it_set_ip_forward() -> None:
    assert [p.split("-", 1)[1] for p in unit("standaloneFirewall")["path"]] == ["nftables"]
    assert unit("standaloneFirewall")["serviceConfig"]["ProtectKernelTunables"] is False
    assert unit("standalone")["serviceConfig"]["ProtectKernelTunables"] is True
    assert generated("standaloneFirewall")["firewall"]["forward"] is True


def test_only_a_state_change_reloads_the_unit_without_stopping_it() -> None:
    before, after = unit("seed"), unit("seedStateChanged")
    assert before["stopIfChanged"] is False
    assert before["serviceConfig"]["ExecStart"] == after["serviceConfig"]["ExecStart"]
    assert before["reloadTriggers"] == [scenario("seed")["etc"][ETC]["source"]]
    assert before["reloadTriggers"] != after["reloadTriggers"]
    assert len(generated("seedStateChanged")["lxc"]["containers"]) == 2


# -- each option ---------------------------------------------------------------------------------
def test_disabled_the_module_adds_nothing() -> None:
    case = scenario("disabled")
    assert case["services"] == {} and case["etc"] == {}
    assert case["dbusPackages"] == [] and case["systemPackages"] == []
    assert (case["vswitch"], case["lxc"]) == (False, False)


def test_defaults_are_agent_mode_an_empty_state_ledger_and_cache_on() -> None:
    assert generated("defaults") == {}
    assert global_args("defaults") == ["--mode", "agent"]
    assert run_args("defaults") == [
        "--state-file",
        "/etc/op-dbus/state.json",
        "--policy",
        "enforce",
    ]
    assert unit("defaults")["environment"] == {"OPDBUS_DATA_DIR": "/var/lib/op-dbus"}
    assert unit("defaults")["serviceConfig"]["StateDirectory"] == "op-dbus"
    assert (scenario("defaults")["vswitch"], scenario("defaults")["lxc"]) == (False, False)


def test_blockchain_cache_policy_data_dir_and_extra_args() -> None:
    assert global_args("options") == ["--mode", "agent", "--no-ledger"]
    assert run_args("options") == [
        "--state-file",
        "/etc/op-dbus/state.json",
        "--policy",
        "observe",
        "--no-cache",
        "--poll-interval",
        "60",
    ]
    case = unit("options")
    assert case["environment"]["OPDBUS_DATA_DIR"] == "/srv/op-dbus"
    assert "StateDirectory" not in case["serviceConfig"]
    assert "/srv/op-dbus" in case["serviceConfig"]["ReadWritePaths"]
    assert scenario("options")["tmpfiles"] == ["d /srv/op-dbus 0700 root root - -"]


def test_the_package_option_is_what_runs_and_what_is_installed() -> None:
    custom = "/nix/store/00000000000000000000000000000000-op-dbus-custom"
    case = scenario("customPackage")
    assert args("customPackage")[0] == f"{custom}/bin/op-dbus"
    assert (case["package"], case["dbusPackages"], case["systemPackages"]) == (
        custom,
        [custom],
        ["op-dbus-custom"],
    )


def test_a_data_dir_under_var_lib_is_a_state_directory() -> None:
    config = unit("dataDirUnderVarLib")["serviceConfig"]
    assert (config["StateDirectory"], config["StateDirectoryMode"]) == ("opd/state", "0700")
    assert scenario("dataDirUnderVarLib")["tmpfiles"] == []


def test_extra_args_are_quoted_for_systemd() -> None:
    exec_start = unit("extraArgsQuoted")["serviceConfig"]["ExecStart"]
    assert exec_start.endswith('--state-file "/srv/50%% of $$HOME.json"')
    assert run_args("extraArgsQuoted")[-2:] == ["--state-file", "/srv/50% of $HOME.json"]


def test_a_state_file_replaces_the_generated_one() -> None:
    assert scenario("stateFile")["etc"] == {}
    assert run_args("stateFile")[:2] == ["--state-file", "/srv/op-dbus/state.yaml"]
    assert unit("stateFile")["reloadTriggers"] == []


def test_the_plugins_shape_is_written_as_given() -> None:
    assert generated("pluginsShape")["plugins"]["systemd"]["units"]["sshd.service"]
    assert scenario("pluginsShape")["assertions"] == []


def test_standalone_enables_ovs_and_not_lxc_by_default_only() -> None:
    assert (scenario("standalone")["vswitch"], scenario("standalone")["lxc"]) == (True, False)
    assert scenario("standaloneVswitchOff")["vswitch"] is False


def test_mcp_options_make_the_arguments_and_open_the_firewall() -> None:
    assert run_args("mcp")[-5:] == [
        "--mcp-http",
        "0.0.0.0:9999",
        "--mcp-token-file",
        "/run/keys/op-dbus-mcp",
        "--mcp-allow-write",
    ]
    assert scenario("mcp")["firewallTCP"] == [9999]
    assert run_args("mcpDefaults")[-2:] == ["--mcp-http", "127.0.0.1:9573"]
    assert scenario("mcpDefaults")["firewallTCP"] == []
    assert run_args("mcpIpv6")[-2:] == ["--mcp-http", "[::1]:9573"]
    assert scenario("mcpFirewallOnly")["firewallTCP"] == []
    assert "--mcp-http" not in run_args("mcpFirewallOnly")


@pytest.mark.parametrize("name", ["mcp", "mcpDefaults", "mcpIpv6"])
def test_the_cli_takes_the_mcp_arguments_the_module_generates(name: str, tmp_path: Path) -> None:
    """Each generated `run` argument is one the CLI has: `run --oneshot` without a state file
    parses them, reads nothing and exits 0 (an unknown flag would exit 2)."""
    from typer.testing import CliRunner

    from op_dbus.cli.main import app

    argv = run_args(name)
    if "--state-file" in argv:
        at = argv.index("--state-file")
        del argv[at : at + 2]
    token = tmp_path / "token"
    token.write_text("x" * 32)
    token.chmod(0o600)
    argv = [str(token) if a == "/run/keys/op-dbus-mcp" else a for a in argv]
    done = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "run", "--oneshot", *argv])
    assert done.exit_code == 0, done.output


# -- assertions ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "messages"),
    [
        (
            "sectionsBeyondAgent",
            [
                'services.op-dbus.stateConfig.lxc: mode "agent" does not allow the lxc section '
                '(lxc needs services.op-dbus.mode = "full")',
                'services.op-dbus.stateConfig.net: mode "agent" does not allow the net section '
                '(net needs services.op-dbus.mode = "standalone" or "full")',
            ],
        ),
        (
            "lxcInStandalone",
            [
                'services.op-dbus.stateConfig.lxc: mode "standalone" does not allow the lxc '
                'section (lxc needs services.op-dbus.mode = "full")'
            ],
        ),
        (
            "longIfnames",
            [
                f'services.op-dbus.stateConfig.{path}: "{name}" is 16 bytes; '
                "Linux interface names have at most 15"
                for path, name in [
                    ("net.interfaces[0].name", "sixteen-bytes-br"),
                    ("net.interfaces[0].ports[1]", "sixteen-bytes-pt"),
                    ("lxc.containers[0].veth", "veth-of-16-bytes"),
                ]
            ],
        ),
        ("fifteenByteIfnames", []),
        (
            "unitWithoutSuffix",
            [
                'services.op-dbus.stateConfig.systemd.units."sshd": a unit name needs its type '
                'suffix (e.g. "sshd.service"; one of service, socket, target, device, mount, '
                "automount, swap, timer, path, slice, scope)"
            ],
        ),
        ("stateFileAndConfig", ["services.op-dbus: set stateConfig or stateFile, not both"]),
    ],
)
def test_assertions_fire_with_their_messages(name: str, messages: list[str]) -> None:
    assert scenario(name)["assertions"] == messages


def test_the_loader_refuses_the_names_the_module_asserts_on(tmp_path: Path) -> None:
    """What the module refuses at build time, op-dbus refuses at start, at the same paths."""
    from op_dbus.model import StateInputError

    path = tmp_path / "long.json"
    path.write_text(scenario("longIfnames")["etc"][ETC]["json"])
    with pytest.raises(StateInputError) as refused:
        load_state(path, mode=Mode.FULL)
    long_names = {e.path for e in refused.value.errors if "15 bytes" in e.message}
    asserted = {m.split(": ")[0].removeprefix("services.op-dbus.stateConfig.")
                for m in scenario("longIfnames")["assertions"]}  # fmt: skip
    assert long_names == asserted
    path.write_text(scenario("fifteenByteIfnames")["etc"][ETC]["json"])
    load_state(path, mode=Mode.FULL)


def test_values_their_types_refuse_fail_the_evaluation() -> None:
    from nix_eval import evaluation

    assert evaluation()["refused"] == {
        "mode": True,
        "policy": True,
        "port": True,
        "stateConfig": True,
    }


# -- flake and package ---------------------------------------------------------------------------
def test_the_flake_exposes_the_module_and_the_package() -> None:
    from nix_eval import evaluation

    flake = evaluation()["flake"]
    assert set(flake["packages"]) == {"x86_64-linux", "aarch64-linux"}
    assert flake["packages"]["x86_64-linux"] == scenario("defaults")["package"]
    assert flake["moduleExecStart"] == unit("defaults")["serviceConfig"]["ExecStart"]


def test_the_package_depends_on_what_pyproject_declares_and_installs_its_files() -> None:
    from nix_eval import evaluation

    package = evaluation()["package"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [re.split(r"[<>=!~ ]", dep, maxsplit=1)[0] for dep in project["dependencies"]]
    assert package["dependencies"] == wanted
    assert (package["pname"], package["version"]) == (project["name"], project["version"])
    assert package["mainProgram"] == "op-dbus"
    script = package["postInstall"]
    assert "data/dbus/org.opdbus.conf -t $out/share/dbus-1/system.d" in script
    for source in re.findall(r"install -Dm644 (\S+) -t", script):
        if "*" not in source and source != "man/op-dbus.1":  # the man page: when the build has one
            assert (ROOT / source).is_file(), source
    unit_text = (ROOT / "data" / "systemd" / "op-dbus.service").read_text()
    for replaced in re.findall(r"--replace-fail (\S+) ", script):
        assert replaced in unit_text, f"{replaced} is not in the unit: the build would fail"


# -- the units as systemd reads them -------------------------------------------------------------
UNIT_KEYS = {"after": "After", "wants": "Wants", "requires": "Requires", "before": "Before",
             "partOf": "PartOf", "bindsTo": "BindsTo"}  # fmt: skip


def unit_file(service: dict[str, Any]) -> str:
    """The unit file NixOS writes for a service (its attrsToSection: a list is repeated lines),
    with store programs replaced by the host's /bin/true so that systemd can check it here."""

    def text(value: Any) -> str:
        return ("true" if value else "false") if isinstance(value, bool) else str(value)

    lines = ["[Unit]", f"Description={service['description']}"]
    lines += [f"{key}={' '.join(service[k])}" for k, key in UNIT_KEYS.items() if service[k]]
    lines.append("[Service]")
    for key, value in service["serviceConfig"].items():
        lines += [f"{key}={text(item)}" for item in (value if isinstance(value, list) else [value])]
    lines += [f"Environment={key}={value}" for key, value in service["environment"].items()]
    return re.sub(r'"?/nix/store/[^/\s"]+/bin/\S+?"?(?=\s|$)', "/bin/true", "\n".join(lines) + "\n")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize(
    ("name", "service"),
    [
        ("seed", "op-dbus"),
        ("seed", "openvswitch"),
        ("defaults", "op-dbus"),
        ("standalone", "op-dbus"),
        ("options", "op-dbus"),
        ("mcp", "op-dbus"),
        ("mcpIpv6", "op-dbus"),
        ("extraArgsQuoted", "op-dbus"),
        ("dataDirUnderVarLib", "op-dbus"),
    ],
)
def test_systemd_accepts_every_directive_of_the_unit(
    tmp_path: Path, name: str, service: str
) -> None:
    for nixos_ovs in ("ovsdb", "ovs-vswitchd"):  # what virtualisation.vswitch would add
        (tmp_path / f"{nixos_ovs}.service").write_text("[Service]\nExecStart=/bin/true\n")
    path = tmp_path / f"{service}.service"
    path.write_text(unit_file(scenario(name)["services"][service]))
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stderr) == (0, ""), path.read_text()
