# A `pkgs` for evaluating the module without nixpkgs: packages are store-path-shaped attrsets,
# formats.json is nixpkgs' type with a generate that keeps the JSON it would write (stubJSON),
# callPackage really calls (so nix/package.nix is evaluated against python3Packages below).
{ lib }:

let
  storePath = name: "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
  package = name: {
    type = "derivation";
    inherit name;
    outPath = storePath name;
  };
  pkgs = {
    inherit lib;

    formats.json =
      { }:
      {
        type =
          let
            valueType =
              lib.types.nullOr (
                lib.types.oneOf [
                  lib.types.bool
                  lib.types.int
                  lib.types.float
                  lib.types.str
                  lib.types.path
                  (lib.types.attrsOf valueType)
                  (lib.types.listOf valueType)
                ]
              )
              // {
                description = "JSON value";
              };
          in
          valueType;
        generate =
          name: value:
          let
            json = builtins.toJSON value;
          in
          package name
          // {
            outPath = storePath "${builtins.hashString "sha256" json}-${name}";
            stubJSON = json;
          };
      };

    callPackage =
      fn: overrides:
      let
        f = if builtins.isFunction fn then fn else import fn;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);

    python3Packages =
      lib.genAttrs [
        "setuptools"
        "pydantic"
        "typer"
        "rich"
        "dbus-fast"
        "pyroute2"
        "pyyaml"
        "cryptography"
        "mcp"
        "aetcd"
      ] package
      // {
        buildPythonApplication =
          attrs:
          package "${attrs.pname}-${attrs.version}"
          // {
            inherit (attrs) pname version meta;
            dependencyNames = map (p: p.name) attrs.dependencies;
            postInstall = attrs.postInstall;
          };
      };
  }
  // lib.genAttrs [
    "coreutils"
    "util-linux"
    "ethtool"
    "lxc"
    "lxcfs"
    "nftables"
    "openvswitch"
    "vim"
    "git"
    "curl"
    "htop"
  ] package;
in
pkgs
