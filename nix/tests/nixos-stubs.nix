# Declarations of the NixOS options that nix/module.nix and the seed's configuration.nix touch,
# named and typed as nixpkgs declares them (simplified where only the shape matters), so that
# lib.evalModules can evaluate the module without NixOS.
{ lib, pkgs, ... }:

let
  inherit (lib) mkOption types;
  # nixpkgs' unitOption: scalars must agree, lists concatenate.
  unitAtom = types.oneOf [
    types.bool
    types.int
    types.str
    types.path
    types.package
  ];
  unitOption = types.either unitAtom (types.listOf unitAtom);
  units = types.listOf types.str;
  unitList = mkOption {
    type = units;
    default = [ ];
  };

  service = types.submodule {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      description = mkOption {
        type = types.str;
        default = "";
      };
      documentation = unitList;
      wantedBy = unitList;
      requiredBy = unitList;
      wants = unitList;
      requires = unitList;
      bindsTo = unitList;
      partOf = unitList;
      after = unitList;
      before = unitList;
      path = mkOption {
        type = types.listOf (types.either types.package types.str);
        default = [ ];
      };
      environment = mkOption {
        type = types.attrsOf (
          types.nullOr (
            types.oneOf [
              types.str
              types.path
              types.package
            ]
          )
        );
        default = { };
      };
      restartTriggers = mkOption {
        type = types.listOf types.unspecified;
        default = [ ];
      };
      reloadTriggers = mkOption {
        type = types.listOf unitOption;
        default = [ ];
      };
      stopIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
      serviceConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      unitConfig = mkOption {
        type = types.attrsOf unitOption;
        default = { };
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
    };
  };

  etcFile = types.submodule (
    { name, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        target = mkOption {
          type = types.str;
          default = name;
        };
        text = mkOption {
          type = types.nullOr types.lines;
          default = null;
        };
        source = mkOption { type = types.path; };
        mode = mkOption {
          type = types.str;
          default = "symlink";
        };
      };
    }
  );
in
{
  options = {
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    environment.etc = mkOption {
      type = types.attrsOf etcFile;
      default = { };
    };

    services.dbus.enable = mkOption {
      type = types.bool;
      default = true;
    };
    services.dbus.packages = mkOption {
      type = types.listOf types.path;
      default = [ ];
    };

    systemd.services = mkOption {
      type = types.attrsOf service;
      default = { };
    };
    systemd.tmpfiles.rules = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    virtualisation.vswitch = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      resetOnStart = mkOption {
        type = types.bool;
        default = false;
      };
      package = mkOption {
        type = types.package;
        default = pkgs.openvswitch;
      };
    };
    virtualisation.lxc = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      lxcfs.enable = mkOption {
        type = types.bool;
        default = false;
      };
      systemConfig = mkOption {
        type = types.lines;
        default = "";
      };
      defaultConfig = mkOption {
        type = types.lines;
        default = "";
      };
    };

    networking.hostName = mkOption {
      type = types.str;
      default = "nixos";
    };
    networking.useDHCP = mkOption {
      type = types.bool;
      default = true;
    };
    networking.firewall = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      allowedTCPPorts = mkOption {
        type = types.listOf types.port;
        default = [ ];
      };
      trustedInterfaces = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
    };

    system.stateVersion = mkOption { type = types.str; };
  };
}
