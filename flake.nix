{
  description = "op-dbus: declarative host state for Open vSwitch, LXC and systemd";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forEachSystem = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forEachSystem (pkgs: {
        default = pkgs.callPackage ./nix/package.nix { };
      });

      # services.op-dbus; its package defaults to nix/package.nix built with the host's pkgs.
      nixosModules.default = import ./nix/module.nix;
    };
}
