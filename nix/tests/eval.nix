# One evaluation of every scenario in scenarios.nix, as JSON for tests/unit/test_nix_module.py:
#   nix-instantiate --eval --strict --json --readonly-mode nix/tests/eval.nix --arg nixpkgsLib PATH
{ nixpkgsLib }:

let
  lib = import nixpkgsLib;
  pkgs = import ./pkgs-stub.nix { inherit lib; };

  evaluate =
    modules:
    (lib.evalModules {
      modules = [
        ./nixos-stubs.nix
        ../module.nix
        { _module.args.pkgs = pkgs; }
      ]
      ++ modules;
    }).config;

  # Errors of one part (a type error, a failing default) show as {error = true;}, not as the
  # whole evaluation failing.
  safely =
    value:
    let
      tried = builtins.tryEval (builtins.deepSeq value value);
    in
    if tried.success then tried.value else { error = true; };

  service =
    s:
    s
    // {
      path = map toString s.path;
      reloadTriggers = map toString s.reloadTriggers;
      restartTriggers = map toString s.restartTriggers;
    };

  summary = config: {
    assertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
    warnings = config.warnings;
    services = safely (lib.mapAttrs (_: service) config.systemd.services);
    etc = safely (
      lib.mapAttrs (_: file: {
        source = toString file.source;
        json = file.source.stubJSON or null;
        inherit (file) mode;
      }) config.environment.etc
    );
    systemPackages = map (p: p.name) config.environment.systemPackages;
    dbusPackages = map toString config.services.dbus.packages;
    tmpfiles = config.systemd.tmpfiles.rules;
    firewallTCP = config.networking.firewall.allowedTCPPorts;
    vswitch = config.virtualisation.vswitch.enable;
    lxc = config.virtualisation.lxc.enable;
    package = safely (toString config.services.op-dbus.package);
  };

  # An option value its type refuses: the evaluation of the unit and its files fails.
  refused =
    extra:
    let
      config = evaluate [ { services.op-dbus = { enable = true; } // extra; } ];
      unit = config.systemd.services.op-dbus;
      parts = [
        unit.serviceConfig
        (map toString unit.reloadTriggers)
        config.networking.firewall.allowedTCPPorts
      ];
    in
    !(builtins.tryEval (builtins.deepSeq parts true)).success;

  flake =
    let
      outputs = (import ../../flake.nix).outputs {
        self = outputs;
        nixpkgs = {
          inherit lib;
          legacyPackages = lib.genAttrs [ "x86_64-linux" "aarch64-linux" ] (_: pkgs);
        };
      };
      # The flake's module alone (not ../module.nix by path) gives the same unit.
      viaFlake = lib.evalModules {
        modules = [
          ./nixos-stubs.nix
          outputs.nixosModules.default
          { _module.args.pkgs = pkgs; }
          { services.op-dbus.enable = true; }
        ];
      };
    in
    {
      packages = lib.mapAttrs (_: p: toString p.default) outputs.packages;
      moduleExecStart = viaFlake.config.systemd.services.op-dbus.serviceConfig.ExecStart;
    };

  package = pkgs.callPackage ../package.nix { };
in
{
  scenarios = lib.mapAttrs (_: modules: summary (evaluate modules)) (import ./scenarios.nix);
  refused = {
    mode = refused { mode = "proxmox"; };
    policy = refused { policy = "repair"; };
    port = refused { mcp = { enable = true; port = 70000; }; };
    stateConfig = refused { stateConfig.net = x: x; };
  };
  inherit flake;
  package = {
    inherit (package) pname version postInstall;
    dependencies = package.dependencyNames;
    mainProgram = package.meta.mainProgram;
  };
}
