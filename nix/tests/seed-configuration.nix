# The seed's complete configuration.nix for Full mode (../shared/seed/proxmox-full-mode-
# dependencies.md), verbatim but for its imports: no hardware-configuration.nix, and the module
# from this checkout. tests/unit/test_nix_module.py checks that it still matches the seed.
{ config, pkgs, ... }:

{
  imports = [
    ../module.nix
  ];

  # System packages
  environment.systemPackages = with pkgs; [
    openvswitch
    lxc
    vim
    git
    curl
    htop
  ];

  # Enable OpenVSwitch
  virtualisation.vswitch = {
    enable = true;
    resetOnStart = false;
  };

  systemd.services.openvswitch = {
    enable = true;
    wantedBy = [ "multi-user.target" ];
  };

  # Enable LXC containers
  virtualisation.lxc = {
    enable = true;
    lxcfs.enable = true;
  };

  # Enable D-Bus (already default in NixOS)
  services.dbus.enable = true;

  # Enable op-dbus in Full (Proxmox) mode
  services.op-dbus = {
    enable = true;
    mode = "full";

    stateConfig = {
      # Network bridges
      net = {
        interfaces = [
          {
            name = "ovsbr0";
            type = "ovs-bridge";
            ports = [ "eth0" ];  # Your physical interface
            ipv4 = {
              enabled = true;
              dhcp = false;
              address = [
                { ip = "192.168.1.10"; prefix = 24; }
              ];
              gateway = "192.168.1.1";
            };
          }
          {
            name = "mesh";
            type = "ovs-bridge";
            ports = [];
            ipv4 = {
              enabled = true;
              dhcp = false;
              address = [
                { ip = "10.0.0.1"; prefix = 24; }
              ];
            };
          }
        ];
      };

      # LXC containers
      lxc = {
        containers = [
          {
            id = "100";
            name = "gateway";
            veth = "vi100";
            bridge = "mesh";
            running = true;
          }
          {
            id = "101";
            name = "warp";
            veth = "vi101";
            bridge = "mesh";
            running = true;
          }
          {
            id = "102";
            name = "xray-client";
            veth = "vi102";
            bridge = "mesh";
            running = true;
          }
        ];
      };

      # Systemd services
      systemd = {
        units = {
          "openvswitch.service" = {
            enabled = true;
            active_state = "active";
          };
        };
      };
    };

    enableBlockchain = true;
    enableCache = true;
  };

  # Network configuration
  networking = {
    hostName = "ghostbridge";
    useDHCP = false;
    # OpenVSwitch will manage interfaces
  };

  # Firewall
  networking.firewall = {
    enable = true;
    allowedTCPPorts = [ 22 9573 ];  # SSH and MCP
    trustedInterfaces = [ "ovsbr0" "mesh" ];
  };

  system.stateVersion = "24.05";
}
