"""`op-dbus fleet`: desired state in etcd for many hosts, their status, rollouts and audit.

Every command validates what it stores before it connects; etcd errors read as ours (no
member answers: exit 6; a compare-and-swap lost or a rollout refused: exit 2).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from op_dbus.cli.context import (
    FILE_ARG,
    JSON_OPT,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    run_async,
    stdout,
)
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from op_dbus.fleet.store import EtcdClient, EtcdOptions

fleet_app = typer.Typer(add_completion=False, no_args_is_help=True)

HOST_OPT = typer.Option(None, "--host", help="The host the document is for.")
GROUP_OPT = typer.Option(None, "--group", help="The group the document is for.")


def etcd_options(
    etcd: str | None,
    cacert: Path | None,
    cert: Path | None,
    key: Path | None,
    user: str | None,
    password_file: Path | None,
) -> EtcdOptions:
    """The etcd options of `fleet` and `run --fleet`; exit 2 naming a bad one."""
    from op_dbus.errors import InvalidInput
    from op_dbus.fleet.store import EtcdOptions

    try:
        return EtcdOptions.parse(
            etcd, cacert=cacert, cert=cert, key=key, user=user, password_file=password_file
        )
    except InvalidInput as err:
        fail(ExitCode.INVALID_INPUT, err.message)


ETCD_OPT = typer.Option(
    None, "--etcd", metavar="URL[,URL...]", help="etcd endpoints (default: $OPDBUS_ETCD)."
)
CACERT_OPT = typer.Option(None, "--etcd-cacert", help="CA certificate (PEM) for https endpoints.")
CERT_OPT = typer.Option(None, "--etcd-cert", help="Client certificate (PEM).")
KEY_OPT = typer.Option(None, "--etcd-key", help="Client key (PEM).")
USER_OPT = typer.Option(None, "--etcd-user", help="etcd user (with --etcd-password-file).")
PASSWORD_OPT = typer.Option(None, "--etcd-password-file", help="File holding the password.")


@fleet_app.callback()
def fleet(
    ctx: typer.Context,
    etcd: str = ETCD_OPT,
    cacert: Path = CACERT_OPT,
    cert: Path = CERT_OPT,
    key: Path = KEY_OPT,
    user: str = USER_OPT,
    password_file: Path = PASSWORD_OPT,
) -> None:
    """Desired state for many hosts, kept in etcd v3."""
    ctx.obj["etcd"] = etcd_options(etcd, cacert, cert, key, user, password_file)


def _call(ctx: typer.Context, json_out: bool, work: Callable[[EtcdClient], Awaitable[Any]]) -> Any:
    """`work(client)` on a connected client; op-dbus errors become their exit codes."""
    from op_dbus.errors import OpError
    from op_dbus.fleet.store import connected

    async def call() -> Any:
        async with connected(ctx.obj["etcd"]) as client:
            return await work(client)

    try:
        return run_async(call())
    except OpError as err:
        if json_out:
            print_json({"error": err.message, "exit_code": int(err.code)})
            raise typer.Exit(int(err.code)) from None
        fail(err.code, err.message)


def _target(host: str | None, group: str | None) -> str:
    from op_dbus.errors import InvalidInput
    from op_dbus.fleet.admin import target_key

    try:
        return target_key(host, group)
    except InvalidInput as err:
        fail(ExitCode.INVALID_INPUT, err.message)


@fleet_app.command("put")
def put(
    ctx: typer.Context,
    file: str = FILE_ARG,
    host: str = HOST_OPT,
    group: str = GROUP_OPT,
    expect_revision: int = typer.Option(
        None, "--expect-revision", min=0, help="Store only if the key is still at this revision."
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Store a validated state document for a host or a group (compare-and-swap)."""
    from op_dbus.fleet.admin import put_document

    key = _target(host, group)
    sections = load_or_exit(file, cli_context(ctx), json_out=json_out).state.sections()
    reply = _call(ctx, json_out, lambda c: put_document(c, key, sections, expect_revision))
    if json_out:
        print_json(reply)
    else:
        stdout().print(f"stored {key} at revision {reply['revision']}")


def _membership(
    ctx: typer.Context, group: str, hosts: list[str], join: bool, json_out: bool
) -> None:
    from op_dbus.errors import InvalidInput
    from op_dbus.fleet.admin import set_membership

    async def work(client: EtcdClient) -> int:
        return await set_membership(client, group, hosts, join)

    try:
        revision = _call(ctx, json_out, work)
    except InvalidInput as err:
        if json_out:
            print_json({"error": err.message, "exit_code": int(ExitCode.INVALID_INPUT)})
            raise typer.Exit(int(ExitCode.INVALID_INPUT)) from None
        fail(ExitCode.INVALID_INPUT, err.message)
    verb = "joined" if join else "left"
    if json_out:
        print_json({"group": group, "hosts": hosts, verb: True, "revision": revision})
        return
    stdout().print(f"{', '.join(hosts)} {verb} {group} at revision {revision}")


@fleet_app.command("join")
def join(ctx: typer.Context, group: str, hosts: list[str], json_out: bool = JSON_OPT) -> None:
    """Make hosts members of a group (its state is laid under each host's own)."""
    _membership(ctx, group, hosts, True, json_out)


@fleet_app.command("leave")
def leave(ctx: typer.Context, group: str, hosts: list[str], json_out: bool = JSON_OPT) -> None:
    """Take hosts out of a group."""
    _membership(ctx, group, hosts, False, json_out)


@fleet_app.command("status")
def status(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Each host: alive (lease held), desired and applied revisions, exit code, message."""
    from op_dbus.fleet.admin import fleet_status

    reply = _call(ctx, json_out, fleet_status)
    if json_out:
        print_json(reply)
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table("host", "alive", "state", "desired", "applied", "exit", "message")
    for h in reply["hosts"]:
        table.add_row(
            escape(h["host"]),
            "yes" if h["alive"] else "[red]no[/]",
            h["state"],
            str(h["etcd_revision"]),
            str(h["applied_revision"]),
            str(h["exit_code"]),
            escape(str(h["message"] or ""))[:80],
        )
    stdout().print(table)


@fleet_app.command("diff")
def diff(
    ctx: typer.Context,
    file: str = FILE_ARG,
    host: str = HOST_OPT,
    group: str = GROUP_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """What storing FILE would change in the stored document (exit 3: it differs)."""
    import difflib
    import json

    from op_dbus.fleet.admin import read_key

    key = _target(host, group)
    sections = load_or_exit(file, cli_context(ctx), json_out=json_out).state.sections()
    value, revision = _call(ctx, json_out, lambda c: read_key(c, key))
    stored = json.loads(value).get("plugins", {}) if value else {}
    before = json.dumps(stored, indent=2, sort_keys=True).splitlines()
    after = json.dumps(sections, indent=2, sort_keys=True).splitlines()
    lines = list(difflib.unified_diff(before, after, f"{key}@{revision}", file, lineterm=""))
    if json_out:
        print_json({"key": key, "revision": revision, "differs": bool(lines), "diff": lines})
    else:
        out = stdout()
        for line in lines or [f"{key} at revision {revision} already holds {file}"]:
            out.print(line, markup=False)
    raise typer.Exit(int(ExitCode.CHANGES_PENDING if lines else ExitCode.OK))


@fleet_app.command("history")
def history(
    ctx: typer.Context, host: str = HOST_OPT, group: str = GROUP_OPT, json_out: bool = JSON_OPT
) -> None:
    """The stored versions of a host's or group's document (back to etcd's last
    compaction) and, for a group, its rollouts."""
    from op_dbus.fleet import admin

    key = _target(host, group)

    async def work(client: EtcdClient) -> dict[str, Any]:
        versions = await admin.history(client, key)
        rollouts = await admin.rollouts_of(client, group) if group else []
        for r in rollouts:
            r.pop("state", None)
        return {"key": key, "versions": versions, "rollouts": rollouts}

    reply = _call(ctx, json_out, work)
    if json_out:
        print_json(reply)
        return
    out = stdout()
    for v in reply["versions"]:
        out.print(
            f"revision {v['revision']}  version {v['version']}  {v['bytes']} bytes  "
            f"{v['sha256']}  {', '.join(v['sections'])}",
            markup=False,
        )
    for r in reply["rollouts"]:
        out.print(f"rollout {r['id']} {r['status']} (started {r['started']})", markup=False)


def _print_rollout(record: dict[str, Any]) -> None:
    out = stdout()
    out.print(f"rollout {record['id']} of {record['group']}: {record['status']}", markup=False)
    for host, c in record["hosts"].items():
        extra = f" ({c['message']})" if c.get("message") else ""
        out.print(f"  {host}: {c['condition']}{extra}", markup=False)


@fleet_app.command("rollout")
def rollout(
    ctx: typer.Context,
    file: str = FILE_ARG,
    group: str = typer.Option(..., "--group", help="The group to roll the state out to."),
    max_unavailable: int = typer.Option(
        1, "--max-unavailable", min=1, help="Hosts changing at once."
    ),
    timeout: float = typer.Option(
        180.0, "--timeout", min=1.0, help="Seconds a batch may take before it counts as failed."
    ),
    replace: bool = typer.Option(
        False, "--replace", help="Take over from a running rollout whose command died."
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Roll a group's new state out in batches; a failing host rolls itself back and halts
    the rollout (exit 4), later hosts stay untouched."""
    from op_dbus.fleet.rollout import rollout as run_rollout

    sections = load_or_exit(file, cli_context(ctx), json_out=json_out).state.sections()

    def progress(record: dict[str, Any]) -> None:
        if not json_out:
            done = sum(c["condition"] == "Available" for c in record["hosts"].values())
            stdout().print(f"{record['status']}: {done}/{len(record['hosts'])} available")

    record = _call(
        ctx,
        json_out,
        lambda c: run_rollout(
            c,
            group,
            sections,
            max_unavailable=max_unavailable,
            timeout=timeout,
            replace=replace,
            on_change=progress,
        ),
    )
    if json_out:
        print_json(record)
    else:
        _print_rollout(record)
    raise typer.Exit(int(ExitCode.OK if record["status"] == "complete" else ExitCode.ROLLED_BACK))


@fleet_app.command("audit")
def audit(
    ctx: typer.Context,
    key: list[str] = typer.Option(
        [], "--key", metavar="HOST=VKEY", help="Trust this verifier key for HOST."
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Check every host's published checkpoints: signatures, and that each extends the one
    before (exit 3 naming the hosts whose ledger does not verify, like `ledger verify`)."""
    from op_dbus.fleet.audit import audit_fleet

    trusted = {}
    for item in key:
        host, sep, vkey = item.partition("=")
        if not sep or not host or not vkey:
            fail(ExitCode.INVALID_INPUT, f"--key {item!r}: give HOST=VKEY")
        trusted[host] = vkey
    reply = _call(ctx, json_out, lambda c: audit_fleet(c, trusted))
    if json_out:
        print_json(reply)
    else:
        out = stdout()
        for h in reply["hosts"]:
            verdict = "ok" if h["ok"] else "REWRITTEN"
            out.print(f"{h['host']}: {verdict}, {h['checkpoints']} checkpoint(s)", markup=False)
            for problem in h["problems"]:
                out.print(f"  {problem}", markup=False)
    raise typer.Exit(int(ExitCode.OK if reply["ok"] else ExitCode.CHANGES_PENDING))
