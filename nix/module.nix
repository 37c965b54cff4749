# services.op-dbus: the NixOS module of the seed (../shared/seed/proxmox-full-mode-dependencies.md).
#
# stateConfig becomes /etc/op-dbus/state.json, the daemon's (authoritative) state file; the unit
# `op-dbus` runs `op-dbus run` on it. What each option does is in nix/README.md.
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib)
    mkOption
    mkEnableOption
    mkIf
    mkMerge
    mkDefault
    types
    optional
    optionals
    optionalAttrs
    ;

  cfg = config.services.op-dbus;
  jsonFormat = pkgs.formats.json { };

  etcPath = "op-dbus/state.json";
  generatedFile = jsonFormat.generate "op-dbus-state.json" cfg.stateConfig;
  statePath = if cfg.stateFile != null then toString cfg.stateFile else "/etc/${etcPath}";

  # The modes and the sections each allows (src/op_dbus/model/modes.py).
  modeSections = {
    agent = [ "systemd" ];
    standalone = [
      "systemd"
      "net"
      "firewall"
    ];
    full = [
      "systemd"
      "net"
      "lxc"
      "firewall"
    ];
  };
  sectionMode = {
    systemd = "agent";
    net = "standalone";
    lxc = "full";
    firewall = "standalone";
  };
  usesOvs = cfg.mode != "agent";
  usesLxc = cfg.mode == "full";

  # Both documented shapes: the seed's (sections at top level) or {version; plugins}.
  sections =
    if cfg.stateConfig ? plugins then
      cfg.stateConfig.plugins
    else
      removeAttrs cfg.stateConfig [ "version" ];
  prefix =
    "services.op-dbus.stateConfig" + lib.optionalString (cfg.stateConfig ? plugins) ".plugins";

  units = (sections.systemd or { }).units or { };
  interfaces = lib.imap0 (i: iface: { inherit i iface; }) ((sections.net or { }).interfaces or [ ]);
  containers = lib.imap0 (i: ct: { inherit i ct; }) ((sections.lxc or { }).containers or [ ]);

  # Linux interface names: IFNAMSIZ is 16 bytes with the terminating NUL.
  ifnames =
    lib.concatMap (
      { i, iface }:
      optional (iface ? name) {
        path = "net.interfaces[${toString i}].name";
        value = iface.name;
      }
      ++ lib.imap0 (j: port: {
        path = "net.interfaces[${toString i}].ports[${toString j}]";
        value = port;
      }) (iface.ports or [ ])
    ) interfaces
    ++ lib.concatMap (
      { i, ct }:
      optional (ct ? veth) {
        path = "lxc.containers[${toString i}].veth";
        value = ct.veth;
      }
    ) containers;

  unitSuffixes = [
    "service"
    "socket"
    "target"
    "device"
    "mount"
    "automount"
    "swap"
    "timer"
    "path"
    "slice"
    "scope"
  ];
  hasUnitSuffix = name: lib.any (s: lib.hasSuffix ".${s}" name) unitSuffixes;

  # systemd's ExecStart quoting, as nixpkgs' utils.escapeSystemdExecArg (a JSON string with `%`
  # and `$` doubled) but only where needed, so extraArgs reach op-dbus as written.
  escapeExecArg =
    arg:
    if builtins.match "[A-Za-z0-9_@+=:,./-]+" arg != null then
      arg
    else
      lib.replaceStrings [ "%" "$" ] [ "%%" "$$" ] (builtins.toJSON arg);
  mcpHost = if lib.hasInfix ":" cfg.mcp.address then "[${cfg.mcp.address}]" else cfg.mcp.address;

  args = [
    "${cfg.package}/bin/op-dbus"
    "--mode"
    cfg.mode
  ]
  ++ optional (!cfg.enableBlockchain) "--no-ledger"
  ++ [
    "run"
    "--state-file"
    statePath
    "--policy"
    cfg.policy
  ]
  ++ optional (!cfg.enableCache) "--no-cache"
  ++ optionals cfg.mcp.enable (
    [
      "--mcp-http"
      "${mcpHost}:${toString cfg.mcp.port}"
    ]
    ++ optionals (cfg.mcp.tokenFile != null) [
      "--mcp-token-file"
      (toString cfg.mcp.tokenFile)
    ]
    ++ optional cfg.mcp.allowWrite "--mcp-allow-write"
  )
  ++ cfg.extraArgs;

  # Least privilege per mode. systemd authorizes unit management by the caller's CAP_SYS_ADMIN
  # (before asking polkit); net changes links, addresses and routes; liblxc (full) creates
  # namespaces, mounts, cgroups and veths for containers, as data/systemd/op-dbus.service says.
  capabilities = {
    agent = [ "CAP_SYS_ADMIN" ];
    standalone = [
      "CAP_SYS_ADMIN"
      "CAP_NET_ADMIN"
      "CAP_NET_RAW"
    ];
    full = [
      "CAP_NET_ADMIN"
      "CAP_NET_RAW"
      "CAP_SYS_ADMIN"
      "CAP_SYS_CHROOT"
      "CAP_SYS_RESOURCE"
      "CAP_SYS_PTRACE"
      "CAP_SETUID"
      "CAP_SETGID"
      "CAP_SETPCAP"
      "CAP_CHOWN"
      "CAP_FOWNER"
      "CAP_DAC_OVERRIDE"
      "CAP_KILL"
      "CAP_MKNOD"
      "CAP_AUDIT_WRITE"
    ];
  };
  confined = !usesLxc; # liblxc needs what these forbid: new namespaces, cgroups, setuid files
  stateDirectory = lib.removePrefix "/var/lib/" cfg.dataDir;
  inVarLib = lib.hasPrefix "/var/lib/" cfg.dataDir && stateDirectory != "";
in
{
  options.services.op-dbus = {
    enable = mkEnableOption "op-dbus, which keeps the host converged to its declared state";

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ./package.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ./package.nix { }";
      description = "The op-dbus package.";
    };

    mode = mkOption {
      type = types.enum [
        "agent"
        "standalone"
        "full"
      ];
      default = "agent";
      description = ''
        agent: systemd units only; standalone: + Open vSwitch bridges (net); full: + LXC
        containers (lxc). A stateConfig section the mode does not allow is an assertion error.
        standalone and full enable virtualisation.vswitch, full also virtualisation.lxc
        (mkDefault).
      '';
    };

    stateConfig = mkOption {
      type = jsonFormat.type;
      default = { };
      example = lib.literalExpression ''
        {
          net.interfaces = [ { name = "mesh"; type = "ovs-bridge"; ports = [ ]; } ];
          systemd.units."ovs-vswitchd.service" = { enabled = true; active_state = "active"; };
        }
      '';
      description = ''
        The state op-dbus keeps: the plugin sections (systemd, net, lxc) at top level, as in
        the seed, or {version = 1; plugins = {...};}. Written to /etc/op-dbus/state.json; the
        daemon applies it at start and on every change (reload, no restart).
      '';
    };

    stateFile = mkOption {
      type = types.nullOr types.path;
      default = null;
      example = "/var/lib/op-dbus-state/state.json";
      description = ''
        A state file to use instead of stateConfig (JSON or YAML, kept outside Nix). The
        daemon re-applies it when it changes on disk.
      '';
    };

    enableBlockchain = mkOption {
      type = types.bool;
      default = true;
      description = "Record every change in the tamper-evident ledger (off: `--no-ledger`).";
    };

    enableCache = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Answer queries (D-Bus QueryState) from the daemon's in-memory state; off
        (`--no-cache`): every query reads the host.
      '';
    };

    dataDir = mkOption {
      type = types.path;
      default = "/var/lib/op-dbus";
      description = "Where the daemon keeps its ledger and lock (OPDBUS_DATA_DIR).";
    };

    policy = mkOption {
      type = types.enum [
        "enforce"
        "observe"
      ];
      default = "enforce";
      description = "On drift: enforce (repair it) or observe (report and record it only).";
    };

    mcp = {
      enable = mkEnableOption "the MCP server of the daemon (`op-dbus run --mcp-http`)";
      address = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = "Address the MCP server listens on.";
      };
      port = mkOption {
        type = types.port;
        default = 9573;
        description = "TCP port of the MCP server.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open mcp.port in the firewall (only when mcp.enable).";
      };
      tokenFile = mkOption {
        type = types.nullOr types.path;
        default = null;
        description = ''
          File holding the bearer token MCP clients must send (kept outside the Nix store);
          null: the token op-dbus creates in dataDir.
        '';
      };
      allowWrite = mkOption {
        type = types.bool;
        default = false;
        description = "Let MCP clients change the host (read-only otherwise).";
      };
    };

    extraArgs = mkOption {
      type = types.listOf types.str;
      default = [ ];
      example = [
        "--poll-interval"
        "60"
      ];
      description = "Extra arguments of `op-dbus run`, appended to ExecStart.";
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions =
        lib.concatMap (
          name:
          optional (!(lib.elem name modeSections.${cfg.mode}) && sectionMode ? ${name}) {
            assertion = false;
            message =
              "${prefix}.${name}: mode \"${cfg.mode}\" does not allow the ${name} section "
              + "(${name} needs services.op-dbus.mode = \"${
                if sectionMode.${name} == "standalone" then "standalone\" or \"full" else "full"
              }\")";
          }
        ) (lib.attrNames sections)
        ++ map (
          { path, value }:
          {
            assertion = builtins.stringLength value <= 15;
            message =
              "${prefix}.${path}: \"${value}\" is ${toString (builtins.stringLength value)} bytes; "
              + "Linux interface names have at most 15";
          }
        ) (lib.filter ({ value, ... }: builtins.isString value) ifnames)
        ++ map (name: {
          assertion = hasUnitSuffix name;
          message =
            "${prefix}.systemd.units.\"${name}\": a unit name needs its type suffix "
            + "(e.g. \"${name}.service\"; one of ${lib.concatStringsSep ", " unitSuffixes})";
        }) (lib.attrNames units)
        ++ [
          {
            assertion = cfg.stateFile == null || cfg.stateConfig == { };
            message = "services.op-dbus: set stateConfig or stateFile, not both";
          }
        ];

      warnings = optional (units ? "openvswitch.service") (
        "${prefix}.systemd.units.\"openvswitch.service\": NixOS runs Open vSwitch as "
        + "ovsdb.service and ovs-vswitchd.service, and has no openvswitch.service of its own. "
        + (
          if config.virtualisation.vswitch.enable then
            "The op-dbus module provides openvswitch.service as a unit that only requires those "
            + "two (like Debian's openvswitch-switch.service); "
          else
            "With virtualisation.vswitch.enable off, nothing provides it; "
        )
        + "name \"ovsdb.service\" and \"ovs-vswitchd.service\" instead to manage the daemons "
        + "themselves."
      );

      environment.systemPackages = [ cfg.package ];
      services.dbus.packages = [ cfg.package ];
      environment.etc = optionalAttrs (cfg.stateFile == null) {
        ${etcPath}.source = generatedFile;
      };
      systemd.tmpfiles.rules = optional (!inVarLib) "d ${toString cfg.dataDir} 0700 root root - -";

      systemd.services.op-dbus = {
        description = "op-dbus: keep the host converged to its declared state";
        documentation = [ "file://${cfg.package}/share/doc/op-dbus/daemon.md" ];
        wantedBy = [ "multi-user.target" ];
        # The boot-time apply brings OVS bridges back, before the network comes up.
        wants = [ "network-pre.target" ] ++ optional usesOvs "ovs-vswitchd.service";
        before = [ "network.target" ];
        after = [
          "dbus.service"
        ]
        ++ optionals usesOvs [
          "ovsdb.service"
          "ovs-vswitchd.service"
        ];
        path =
          optional (sections ? firewall) pkgs.nftables # the firewall section drives `nft -j`
          ++ optionals usesLxc [
            pkgs.lxc
            config.virtualisation.vswitch.package
            pkgs.util-linux
            pkgs.ethtool
          ];
        environment.OPDBUS_DATA_DIR = toString cfg.dataDir;
        # Only the state changed: SIGHUP re-reads and applies it; the daemon is not stopped.
        reloadTriggers = optional (cfg.stateFile == null) generatedFile;
        stopIfChanged = false;
        serviceConfig = {
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = lib.concatMapStringsSep " " escapeExecArg args;
          ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
          Restart = "on-failure";
          RestartSec = "2s";
          # 2: invalid state file or usage. Restarting cannot fix it; the journal says why.
          RestartPreventExitStatus = 2;
          WatchdogSec = "30s";
          TimeoutStopSec = "90s";
          UMask = "0077";

          CapabilityBoundingSet = capabilities.${cfg.mode};
          NoNewPrivileges = confined; # liblxc switches the container's AppArmor profile
          ProtectSystem = "strict";
          # "-": a path that does not exist (yet) is skipped instead of failing the start.
          ReadWritePaths = [
            (toString cfg.dataDir)
          ]
          ++ optional usesOvs "-/run/openvswitch"
          ++ optionals usesLxc [
            "-/var/lib/lxc"
            "-/run/lxc"
            "-/var/cache/lxc"
          ];
          ProtectHome = true;
          PrivateTmp = true;
          PrivateDevices = confined;
          ProtectKernelModules = true;
          ProtectKernelLogs = true;
          # The firewall section writes net.ipv4.ip_forward under /proc/sys.
          ProtectKernelTunables = confined && !(sections ? firewall);
          ProtectControlGroups = confined;
          ProtectClock = true;
          ProtectHostname = confined;
          RestrictNamespaces = confined;
          RestrictSUIDSGID = confined;
          RestrictRealtime = true;
          LockPersonality = true;
          SystemCallArchitectures = "native";
          RestrictAddressFamilies = [
            "AF_UNIX"
            "AF_NETLINK"
            "AF_INET"
            "AF_INET6"
          ];
        }
        // optionalAttrs inVarLib {
          StateDirectory = stateDirectory;
          StateDirectoryMode = "0700";
        };
      };

      virtualisation.vswitch.enable = mkIf usesOvs (mkDefault true);
      virtualisation.lxc.enable = mkIf usesLxc (mkDefault true);

      networking.firewall.allowedTCPPorts = mkIf (cfg.mcp.enable && cfg.mcp.openFirewall) [
        cfg.mcp.port
      ];
    }

    # The seed names openvswitch.service (Debian's name) in its state and defines
    # `systemd.services.openvswitch` with only enable/wantedBy, which on its own is a unit with no
    # ExecStart that systemd refuses to load. Give it a body: active exactly while NixOS's two OVS
    # daemons are, so the seed's state converges and its own line merges into a working unit.
    (mkIf (units ? "openvswitch.service" && config.virtualisation.vswitch.enable) {
      systemd.services.openvswitch = {
        description = "Open vSwitch (ovsdb.service and ovs-vswitchd.service)";
        # NixOS's /etc/systemd is read-only: an "enabled" unit is NixOS's to enable, not op-dbus's.
        wantedBy = mkIf (units."openvswitch.service".enabled or false) (mkDefault [
          "multi-user.target"
        ]);
        requires = [
          "ovsdb.service"
          "ovs-vswitchd.service"
        ];
        after = [
          "ovsdb.service"
          "ovs-vswitchd.service"
        ];
        partOf = [ "ovs-vswitchd.service" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = "${pkgs.coreutils}/bin/true";
        };
      };
    })
  ]);
}
