# Configurations that tests/unit/test_nix_module.py evaluates in one run (eval.nix), each a list
# of modules on top of the option stubs. Names say what each one shows.
let
  seedState = (import ./seed-configuration.nix { config = { }; pkgs = { }; }).services.op-dbus.stateConfig;
  enabled = extra: [ { services.op-dbus = { enable = true; } // extra; } ];
  ovsUnit = { enabled = true; active_state = "active"; };
in
{
  seed = [ ./seed-configuration.nix ];
  # The seed with only its state changed (a container fewer): the unit reloads, no restart.
  seedStateChanged = [
    ./seed-configuration.nix
    ({ lib, ... }: {
      services.op-dbus.stateConfig = lib.mkForce (
        seedState // { lxc.containers = lib.take 2 seedState.lxc.containers; }
      );
    })
  ];
  disabled = [ { services.op-dbus.stateConfig.systemd.units."sshd.service" = ovsUnit; } ];
  defaults = enabled { };
  standalone = enabled {
    mode = "standalone";
    stateConfig.net.interfaces = [ { name = "ovsbr0"; type = "ovs-bridge"; ports = [ ]; } ];
  };
  # A firewall section: nft on the unit's path, /proc/sys writable for ip_forward.
  standaloneFirewall = enabled {
    mode = "standalone";
    stateConfig.firewall = { forward = true; masquerade = [ { source = "10.0.0.0/24"; } ]; };
  };
  # The user turns OVS off although the mode would enable it (mkDefault yields).
  standaloneVswitchOff = enabled { mode = "standalone"; } ++ [
    { virtualisation.vswitch.enable = false; }
  ];
  options = enabled {
    enableBlockchain = false;
    enableCache = false;
    policy = "observe";
    dataDir = "/srv/op-dbus";
    extraArgs = [ "--poll-interval" "60" ];
  };
  # The same options on a state the lab can apply (tests/lab/test_nix_execstart.py).
  optionsOnLab = enabled {
    enableBlockchain = false;
    enableCache = false;
    policy = "observe";
    extraArgs = [ "--poll-interval" "60" ];
    stateConfig.systemd.units."openvswitch.service" = ovsUnit;
  };
  # An argument with a space, `%` and `$` reaches op-dbus as written.
  extraArgsQuoted = enabled { extraArgs = [ "--state-file" "/srv/50% of $HOME.json" ]; };
  customPackage = enabled {
    package = {
      type = "derivation";
      name = "op-dbus-custom";
      outPath = "/nix/store/00000000000000000000000000000000-op-dbus-custom";
    };
  };
  dataDirUnderVarLib = enabled { dataDir = "/var/lib/opd/state"; };
  stateFile = enabled { stateFile = "/srv/op-dbus/state.yaml"; };
  pluginsShape = enabled {
    stateConfig = { version = 1; plugins.systemd.units."sshd.service" = ovsUnit; };
  };
  mcp = enabled {
    mcp = {
      enable = true;
      address = "0.0.0.0";
      port = 9999;
      openFirewall = true;
      tokenFile = "/run/keys/op-dbus-mcp";
      allowWrite = true;
    };
  };
  mcpDefaults = enabled { mcp.enable = true; };
  mcpIpv6 = enabled { mcp = { enable = true; address = "::1"; }; };
  # openFirewall without the server opens nothing.
  mcpFirewallOnly = enabled { mcp.openFirewall = true; };

  # Assertions and warnings.
  sectionsBeyondAgent = enabled { stateConfig = { inherit (seedState) net lxc; }; };
  lxcInStandalone = enabled {
    mode = "standalone";
    stateConfig = { inherit (seedState) lxc; };
  };
  longIfnames = enabled {
    mode = "full";
    stateConfig = {
      net.interfaces = [
        { name = "sixteen-bytes-br"; type = "ovs-bridge"; ports = [ "fifteen-bytes-p" "sixteen-bytes-pt" ]; }
      ];
      lxc.containers = [ { id = "100"; name = "c"; veth = "veth-of-16-bytes"; bridge = "b"; } ];
    };
  };
  fifteenByteIfnames = enabled {
    mode = "full";
    stateConfig = {
      net.interfaces = [ { name = "fifteen-bytes-b"; type = "ovs-bridge"; ports = [ "fifteen-bytes-p" ]; } ];
      lxc.containers = [ { id = "100"; name = "c"; veth = "fifteen-bytes-v"; bridge = "b"; } ];
    };
  };
  unitWithoutSuffix = enabled { stateConfig.systemd.units = { sshd = ovsUnit; "cron.timer" = ovsUnit; }; };
  stateFileAndConfig = enabled {
    stateFile = "/srv/state.json";
    stateConfig.systemd.units."sshd.service" = ovsUnit;
  };
  # Named, OVS on, without the seed's own systemd.services.openvswitch line.
  openvswitchNamedOnly = enabled {
    mode = "standalone";
    stateConfig.systemd.units."openvswitch.service" = ovsUnit;
  };
  # Named without OVS on: no openvswitch.service is made up, the warning stays.
  openvswitchWithoutVswitch = enabled { stateConfig.systemd.units."openvswitch.service" = ovsUnit; };
}
