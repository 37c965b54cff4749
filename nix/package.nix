# op-dbus built with python3Packages: the `op-dbus` command, its D-Bus policy under
# share/dbus-1/system.d (for services.dbus.packages), a reference unit and the docs under share/.
{
  lib,
  python3Packages,
}:

let
  pyproject = lib.importTOML ../pyproject.toml;
  # The checkout without what a build must not see (the venv, caches, git metadata).
  ignored = [
    ".git"
    ".venv"
    "build"
    ".pytest_cache"
    ".ruff_cache"
    ".hypothesis"
    "result"
  ];
in
python3Packages.buildPythonApplication {
  pname = pyproject.project.name;
  inherit (pyproject.project) version;
  pyproject = true;

  src = lib.cleanSourceWith {
    src = ../.;
    filter = path: _type: !(lib.elem (baseNameOf path) ignored) && !(lib.hasSuffix ".egg-info" path);
  };

  build-system = [ python3Packages.setuptools ];
  # pyproject.toml's [project] dependencies, by their nixpkgs names.
  dependencies = with python3Packages; [
    pydantic
    typer
    rich
    dbus-fast
    pyroute2
    pyyaml
    cryptography
    mcp
    aetcd
  ];

  # The test suite needs root and real OVS, systemd and LXC (the lab): `make test` runs it.
  doCheck = false;
  pythonImportsCheck = [ "op_dbus" ];

  postInstall = ''
    install -Dm644 data/dbus/org.opdbus.conf -t $out/share/dbus-1/system.d
    install -Dm644 docs/*.md -t $out/share/doc/op-dbus
    # The unit for hosts without the NixOS module (the module writes its own).
    install -Dm644 data/systemd/op-dbus.service -t $out/share/op-dbus/systemd
    substituteInPlace $out/share/op-dbus/systemd/op-dbus.service \
      --replace-fail /usr/bin/op-dbus $out/bin/op-dbus \
      --replace-fail /usr/share/doc/op-dbus $out/share/doc/op-dbus
    # The man page, once the build has one (generated from the CLI by a later change).
    if [ -e man/op-dbus.1 ]; then install -Dm644 man/op-dbus.1 -t $out/share/man/man1; fi
  '';

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.asl20;
    mainProgram = "op-dbus";
    platforms = lib.platforms.linux;
  };
}
