"""`op-dbus show`: the host's topology as a tree on the terminal, or as DOT, SVG or JSON.

Uplink -> bridges -> ports (VLAN tags, ofport state) -> containers (addresses, running,
owned or foreign). Given `--file`, each resource carries the drift the file's plan finds
(`+` missing, `~` differs, `-` to be deleted). The picture is `engine.topology`'s; SVG is
drawn by Graphviz's `dot` from the DOT text.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import typer

from op_dbus.cli.context import (
    JSON_OPT,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    stdout,
    with_api,
)
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from rich.tree import Tree

    from op_dbus.api import HostApi

FORMATS = ("tree", "dot", "svg", "json")
SECTIONS = ["net", "lxc"]
SIGN = {"create": ("+", "green"), "modify": ("~", "yellow"), "delete": ("-", "red")}
DOT_COLOUR = {"create": "darkgreen", "modify": "darkorange", "delete": "red"}
DOT_TIMEOUT = 30.0
ETHERNET_MTU = 1500
"""The MTU every device has unless set: shown only when it differs (vswitchd reports one for
every interface)."""
PORT_KIND = {
    "ovs-port": "port",
    "ovs-internal": "internal",
    "ovs-patch": "patch",
    "ovs-tunnel": "tunnel",
    "ovs-bond": "bond",
    "container": "veth, not attached",
}


def mark(drift: str | None) -> str:
    if drift is None:
        return ""
    sign, colour = SIGN[drift]
    return f"[bold {colour}]{sign}[/] "


def owner(owned: bool | None) -> str:
    return {True: "", False: " [magenta](foreign)[/]"}.get(owned, "")  # type: ignore[arg-type]


def port_state(port: dict[str, Any]) -> str:
    """ofport as vswitchd reports it: a number once realised, -1 or an error when it failed."""
    if port.get("error"):
        return f"[red]error: {port['error']}[/]"
    ofport = port.get("ofport")
    if isinstance(ofport, int) and ofport >= 0:
        return f"ofport {ofport}"
    return "[red]no ofport[/]" if port["type"] != "container" else ""


def port_details(port: dict[str, Any]) -> list[str]:
    """What a port carries, one phrase each: VLAN tag, trunks and mode, protected, patch peer,
    tunnel, bond, an MTU other than Ethernet's 1500 (the tree joins them with spaces, DOT
    puts each on its own line)."""
    found = []
    if port.get("vlan") is not None:
        found.append(f"vlan {port['vlan']}")
    if port.get("trunks"):
        found.append(f"trunks {','.join(str(t) for t in port['trunks'])}")
    if port.get("vlan_mode"):
        found.append(f"vlan_mode {port['vlan_mode']}")
    if port.get("protected"):
        found.append("protected")
    if port.get("peer"):
        found.append(f"peer {port['peer']}")
    if tunnel := port.get("tunnel"):
        key = f" key {tunnel['key']}" if tunnel.get("key") is not None else ""
        found.append(f"{tunnel.get('type')} to {tunnel.get('remote_ip')}{key}")
    if bond := port.get("bond"):
        extra = "".join(f" {k} {bond[k]}" for k in ("mode", "lacp") if bond.get(k))
        found.append(f"bond {'+'.join(bond.get('interfaces') or [])}{extra}")
    if port.get("mtu") not in (None, ETHERNET_MTU):
        found.append(f"mtu {port['mtu']}")
    return found


def bridge_details(bridge: dict[str, Any]) -> list[str]:
    """A bridge's MTU (other than 1500) and how many OpenFlow rules op-dbus keeps on it."""
    found = [f"mtu {bridge['mtu']}"] if bridge.get("mtu") not in (None, ETHERNET_MTU) else []
    if rules := bridge.get("openflow"):
        found.append(f"{rules} openflow rule{'s' if rules != 1 else ''}")
    return found


def container_text(container: dict[str, Any]) -> str:
    running = "[green]running[/]" if container.get("running") else "[dim]stopped[/]"
    ident = f" ({container['id']})" if container.get("id") else ""
    addresses = " ".join(container.get("addresses") or [])
    return (
        f"{mark(container.get('drift'))}[bold]{container['name']}[/]{ident} {running}"
        f"{' ' + addresses if addresses else ''}{owner(container.get('owned'))}"
    )


def tree_of(picture: dict[str, Any]) -> Tree:
    from rich.markup import escape
    from rich.tree import Tree

    uplinks = ", ".join(picture["uplinks"]) or "none"
    root = Tree(f"[bold]host[/] (uplink: {escape(uplinks)})")
    containers = {c["name"]: c for c in picture["containers"]}
    for bridge in picture["bridges"]:
        gateway = "".join(f" via {bridge[k]}" for k in ("gateway", "gateway6") if bridge.get(k))
        addresses = " ".join(bridge["addresses"])
        facts = "".join(f" {escape(d)}" for d in bridge_details(bridge))
        node = root.add(
            f"{mark(bridge['drift'])}[bold cyan]{escape(bridge['name'])}[/] bridge"
            f"{' ' + addresses if addresses else ''}{gateway}{facts}{owner(bridge['owned'])}"
        )
        for route in bridge.get("routes") or []:
            node.add(f"[dim]route[/] {escape(route)}")
        for port in bridge["ports"]:
            details = "".join(f" {escape(d)}" for d in port_details(port))
            role = " [bold]uplink[/]" if port["name"] in bridge["uplinks"] else ""
            kind = PORT_KIND.get(port["type"], port["type"])
            foreign = owner(port["owned"]) if port["container"] is None else ""
            text = (
                f"{mark(port['drift'])}{escape(port['name'])} {kind}{details}{role} "
                f"{port_state(port)}{foreign}"
            )
            branch = node.add(text.rstrip())
            for route in port.get("routes") or []:
                branch.add(f"[dim]route[/] {escape(route)}")
            container = containers.get(port["container"] or "")
            if container is not None:
                branch.add(container_text(container))
    detached = [containers[n] for n in picture["detached"] if n in containers]
    if detached:
        loose = root.add("[dim]not on a bridge[/]")
        for container in detached:
            loose.add(container_text(container))
    if picture["missing"]:
        wanted = root.add("[green]planned, not on the host[/]")
        for resource in picture["missing"]:
            wanted.add(f"[bold green]+[/] {escape(resource)}")
    return root


def quoted(text: str) -> str:
    """A DOT string: every name comes from the host, so `"` and `\\` are escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_of(picture: dict[str, Any]) -> str:
    """The picture as a Graphviz digraph, left to right."""
    lines = [
        "digraph opdbus {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="sans-serif"];',
    ]

    def node(key: str, label: str, drift: str | None = None, **attrs: str) -> None:
        if drift is not None:
            sign = SIGN[drift][0]
            label = f"{sign} {label}"
            attrs["color"] = DOT_COLOUR[drift]
            attrs["penwidth"] = "2"
        extra = "".join(f", {k}={quoted(v)}" for k, v in attrs.items())
        lines.append(f"  {quoted(key)} [label={quoted(label)}{extra}];")

    def edge(a: str, b: str) -> None:
        lines.append(f"  {quoted(a)} -> {quoted(b)};")

    containers = {c["name"]: c for c in picture["containers"]}
    for uplink in picture["uplinks"]:
        node(f"uplink:{uplink}", f"uplink {uplink}", shape="cds", fillcolor="lightgrey")
    for bridge in picture["bridges"]:
        key = f"bridge:{bridge['name']}"
        foreign = "\n(foreign)" if bridge["owned"] is False else ""
        routes = [f"route {r}" for r in bridge.get("routes") or []]
        details = [*bridge["addresses"], *routes, *bridge_details(bridge)]
        text = "\n".join([bridge["name"], *details]) + foreign
        node(key, text, bridge["drift"], fillcolor="lightblue")
        for port in bridge["ports"]:
            port_key = f"port:{port['name']}"
            details = [port["name"], *port_details(port)]
            if isinstance(port.get("ofport"), int):
                details.append(f"ofport {port['ofport']}")
            if port.get("error"):
                details.append(f"error: {port['error']}")
            if port["name"] in bridge["uplinks"]:
                edge(f"uplink:{port['name']}", key)
                continue
            node(port_key, "\n".join(details), port["drift"])
            edge(key, port_key)
            container = containers.get(port["container"] or "")
            if container is not None:
                edge(port_key, f"container:{container['name']}")
    for container in picture["containers"]:
        state = "running" if container.get("running") else "stopped"
        details = [container["name"], state, *container.get("addresses", [])]
        if container.get("owned") is False:
            details.append("(foreign)")
        fill = "palegreen" if container.get("running") else "lightgrey"
        node(
            f"container:{container['name']}",
            "\n".join(details),
            container.get("drift"),
            fillcolor=fill,
        )
    for resource in picture["missing"]:
        node(f"missing:{resource}", resource, "create", style="dashed")
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg_of(dot: str) -> str:
    """Graphviz draws it (Debian: graphviz; NixOS: pkgs.graphviz)."""
    program = shutil.which("dot")
    if program is None:
        fail(
            ExitCode.COMPONENT_MISSING,
            "--format svg needs Graphviz's dot (Debian: apt-get install graphviz); "
            "--format dot prints the graph for another renderer",
        )
    try:
        done = subprocess.run(
            [program, "-Tsvg"], input=dot, capture_output=True, text=True, timeout=DOT_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        fail(ExitCode.UNEXPECTED, f"dot did not finish within {DOT_TIMEOUT:g} s")
    if done.returncode != 0:
        fail(ExitCode.UNEXPECTED, f"dot failed: {done.stderr.strip()}")
    return done.stdout


def show(
    ctx: typer.Context,
    file: str = typer.Option(
        None, "--file", "-f", help="Mark each resource's drift against this state file."
    ),
    form: str = typer.Option("tree", "--format", help="tree (default), dot, svg or json."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Read the host even when a daemon runs and caches it."
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Draw the host: uplink -> bridges -> ports -> containers (exit 6: a section unreadable)."""
    from op_dbus.engine.topology import topology

    if json_out:
        form = "json"
    if form not in FORMATS:
        fail(ExitCode.INVALID_INPUT, f"--format must be one of {', '.join(FORMATS)}, got {form!r}")
    cli = cli_context(ctx)
    sections = None
    if file is not None:
        loaded = load_or_exit(file, cli, json_out=form == "json")
        sections = {n: s for n, s in loaded.state.sections().items() if n in SECTIONS}

    async def work(api: HostApi) -> tuple[dict[str, Any], dict[str, Any] | None]:
        reply = await api.query(SECTIONS)
        return reply, (await api.plan(sections) if sections else None)

    reply, plan = with_api(cli, SECTIONS, work, daemon=not no_cache)
    picture = {**topology(reply["state"], plan), "skipped": reply["skipped"]}
    if form == "json":
        print_json(picture)
    elif form == "dot":
        typer.echo(dot_of(picture), nl=False)
    elif form == "svg":
        typer.echo(svg_of(dot_of(picture)), nl=False)
    else:
        from op_dbus.cli.render import explain

        console = stdout()
        console.print(tree_of(picture))
        for name, reason in reply["skipped"].items():
            console.print(f"[magenta]{name}: {explain(reason)}[/]", markup=True)
    if reply["skipped"]:
        raise typer.Exit(int(ExitCode.COMPONENT_MISSING))
