"""`op-dbus ledger` (alias `blockchain`): read, prove and audit the record of every change.

Exit codes: 0 fine; 2 bad input (no ledger in the data dir, unknown index, unreadable export);
3 the ledger or export does not verify, or cannot be checked for want of its public key (like
`op-dbus verify` finding drift). Every command but `export` (which writes FILE) opens the
ledger read-only: it creates and writes nothing, so it runs on a read-only copy too.
The ledger modules are imported inside the commands so that `op-dbus --help` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from op_dbus.cli.context import JSON_OPT, check_plugin_names, cli_context, fail, print_json, stdout
from op_dbus.exitcodes import ExitCode
from op_dbus.ledger.views import b64, entry_json, report_json

if TYPE_CHECKING:
    from op_dbus.ledger.audit import AuditReport
    from op_dbus.ledger.store import Ledger

ledger_app = typer.Typer(no_args_is_help=True, add_completion=False)
proof_app = typer.Typer(no_args_is_help=True, add_completion=False)
ledger_app.add_typer(proof_app, name="proof", help="Inclusion and consistency proofs (RFC 9162).")

KEY_OPT = typer.Option(
    None, "--key", help="Expected public key (verifier key string, as `checkpoint --public-key`)."
)


@contextmanager
def open_ledger(ctx: typer.Context) -> Iterator[Ledger]:
    """The ledger of the data dir, read-only; exit 2 when there is none or a request does not
    fit it."""
    import sqlite3

    from op_dbus.ledger.store import Ledger, LedgerError, LedgerMissing

    data_dir = cli_context(ctx).endpoints.data_dir
    try:
        ledger = Ledger.open(data_dir, readonly=True)
    except LedgerMissing:
        fail(ExitCode.INVALID_INPUT, f"no ledger in {data_dir} (nothing applied yet?)")
    except (OSError, sqlite3.Error) as err:
        fail(ExitCode.INVALID_INPUT, f"cannot open the ledger in {data_dir}: {err}")
    try:
        yield ledger
    except LedgerError as err:
        fail(ExitCode.INVALID_INPUT, str(err))
    except sqlite3.Error as err:
        fail(ExitCode.INVALID_INPUT, f"cannot read the ledger in {data_dir} ({err}); run verify")
    finally:
        ledger.close()


def require_key(ledger: Ledger) -> str:
    """The ledger's public key; exit 3 when it is missing, since nothing can be checked."""
    from op_dbus.ledger.audit import MISSING_KEY

    vkey = ledger.public_key()
    if vkey is None:
        fail(ExitCode.CHANGES_PENDING, f"{ledger.data_dir}: {MISSING_KEY}")
    return vkey


def parse_since(since: str | None) -> str | None:
    """An ISO 8601 date or time (UTC unless it says otherwise) in the entries' time format."""
    if since is None:
        return None
    from datetime import UTC, datetime

    from op_dbus.ledger.entries import TIME_FORMAT

    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        fail(ExitCode.INVALID_INPUT, f"--since: not an ISO 8601 date or time: {since!r}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def summary(value: dict[str, Any]) -> tuple[str, str, str]:
    """(what, subject, outcome) columns of one entry for the log table."""
    kind = value.get("type")
    if kind == "apply":
        result = value.get("result", {})
        outcome = f"exit {result.get('exit_code')}"
        if value.get("recovers"):
            outcome += f", rolls back {str(value['recovers'])[:8]}"
        return "apply", str(value.get("actor", "")), outcome
    if kind == "intent":  # written before the host is touched; its result follows
        return "intent", str(value.get("actor", "")), f"{value.get('actions')} action(s) ahead"
    if kind == "confirm":
        return "confirm", str(value.get("actor", "")), f"kept {str(value.get('apply_id'))[:8]}"
    phase = "rollback " if value.get("phase") == "rollback" else ""
    subject = f"{value.get('plugin')}:{value.get('resource')}"
    outcome = str(value.get("result", ""))
    if value.get("error"):
        outcome += f": {value['error']}"
    return f"{phase}{value.get('kind', value.get('type'))}", subject, outcome


@ledger_app.command("log")
def log(
    ctx: typer.Context,
    count: int = typer.Option(20, "-n", min=1, help="How many of the latest entries."),
    plugin: str = typer.Option(None, "--plugin", help="Only this plugin's actions."),
    since: str = typer.Option(None, "--since", help="Only entries at or after this ISO time."),
    json_out: bool = JSON_OPT,
) -> None:
    """The latest entries: applies (who, mode, result) and their actions."""
    check_plugin_names([plugin] if plugin is not None else None)
    after = parse_since(since)
    with open_ledger(ctx) as ledger:
        entries = ledger.search(last=count, plugin=plugin, since=after)
    if json_out:
        print_json({"entries": [entry_json(e) for e in entries]})
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("#", "time (UTC)", "apply"):
        table.add_column(column, no_wrap=True)
    for column in ("what", "subject", "result"):
        table.add_column(column)
    for entry in entries:
        value = entry.value
        what, subject, outcome = summary(value)
        failed = outcome.startswith("failed") or outcome.startswith(("exit 4", "exit 5"))
        colour = "red" if failed else ""
        table.add_row(
            str(entry.index),
            str(value.get("time", ""))[:19].replace("T", " "),
            str(value.get("apply_id", ""))[:8],
            what,
            subject,
            f"[{colour}]{outcome}[/]" if colour else outcome,
        )
    stdout().print(table if entries else "no entries")


@ledger_app.command("show")
def show(
    ctx: typer.Context,
    ident: str = typer.Argument(..., metavar="ID", help="Entry index, or an apply id (prefix)."),
    json_out: bool = JSON_OPT,
) -> None:
    """One entry by index, or every entry of one apply."""
    with open_ledger(ctx) as ledger:
        entries = [ledger.entry(int(ident))] if ident.isdigit() else ledger.apply_entries(ident)
    if not entries:
        fail(ExitCode.INVALID_INPUT, f"no entry and no apply with id {ident!r}")
    if json_out:
        print_json({"entries": [entry_json(e) for e in entries]})
        return
    import yaml
    from rich.markup import escape

    console = stdout()
    for entry in entries:  # as YAML: the entry's own fields, no Python repr
        console.print(f"[bold]entry {entry.index}[/] leaf {b64(entry.leaf_hash)}")
        text = yaml.safe_dump(entry.value, sort_keys=False, default_flow_style=False, width=100)
        console.print(escape(text.rstrip()), markup=True)


def print_report(report: AuditReport, what: str, json_out: bool) -> None:
    """Print an audit; exit 3 when it failed."""
    if json_out:
        print_json(report_json(report))
    elif report.ok:
        console = stdout()
        console.print(
            f"[green]verified[/]: {what}: {report.size} entries, root {b64(report.root)}, "
            f"{report.checkpoints} signed checkpoint(s), latest covers {report.verified_size}"
        )
    else:
        console = stdout()
        console.print(f"[bold red]{what} does not verify[/]: first bad index {report.first_bad}")
        for problem in report.problems:
            console.print(f"  [red]✗[/] {problem.message}")
    if not report.ok:
        raise typer.Exit(int(ExitCode.CHANGES_PENDING))


@ledger_app.command("verify")
def verify(
    ctx: typer.Context,
    checkpoints: list[Path] = typer.Option(
        [], "--checkpoint", help="A checkpoint saved earlier (file); repeatable."
    ),
    key: str = KEY_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Recompute every hash and check it against every signed checkpoint (exit 3 if not).

    Every entry must be covered by a checkpoint of the ledger's own (each apply signs one in
    the same transaction). With the key files missing, pass `--key` or it exits 3."""
    try:
        trusted = [path.read_text() for path in checkpoints]
    except OSError as err:
        fail(ExitCode.INVALID_INPUT, f"{err.filename}: {err.strerror}")
    with open_ledger(ctx) as ledger:
        vkey = ledger.public_key()
        pinned = key.strip() if key is not None else None
        report = ledger.verify(trusted, key=pinned)
        where = str(ledger.data_dir)
    if pinned is not None and vkey is not None and pinned != vkey:
        fail(ExitCode.CHANGES_PENDING, f"the ledger is signed by {vkey}, not by {pinned}")
    print_report(report, f"ledger in {where}", json_out)


@ledger_app.command("checkpoint")
def checkpoint(
    ctx: typer.Context,
    public_key: bool = typer.Option(False, "--public-key", help="Print the signer's key instead."),
    json_out: bool = JSON_OPT,
) -> None:
    """Print the latest signed checkpoint (C2SP tlog-checkpoint signed note)."""
    from op_dbus.ledger.checkpoint import CheckpointError, open_checkpoint

    with open_ledger(ctx) as ledger:
        if ledger.size() == 0 and ledger.public_key() is None:
            fail(ExitCode.INVALID_INPUT, "the ledger has no key yet: the first apply makes it")
        vkey = require_key(ledger)
        if public_key and not json_out:
            print(vkey)
            return
        note = ledger.latest_checkpoint()
    if note is None:
        fail(ExitCode.INVALID_INPUT, "the ledger has no checkpoint yet")
    try:
        signed = open_checkpoint(note, vkey)
    except CheckpointError as err:
        fail(ExitCode.CHANGES_PENDING, f"the latest checkpoint does not verify: {err}")
    if json_out:
        root = b64(signed.root)
        print_json({"note": note, "size": signed.size, "root": root, "public_key": vkey})
    else:
        print(note, end="")


@proof_app.command("inclusion")
def inclusion(
    ctx: typer.Context,
    index: int = typer.Argument(..., help="Entry index."),
    size: int = typer.Option(None, "--size", help="Tree size (default: the latest checkpoint's)."),
    json_out: bool = JSON_OPT,
) -> None:
    """Prove entry INDEX is in the tree of the given size; checked before it is printed."""
    from op_dbus.ledger import merkle

    with open_ledger(ctx) as ledger:
        if size is None:
            size = ledger.checkpoint_size()
        proof = ledger.inclusion_proof(index, size)
        leaf, root = ledger.entry(index).leaf_hash, ledger.root(size)
    data = {"leafIdx": index, "treeSize": size, "leafHash": b64(leaf), "root": b64(root)}
    check = partial(merkle.verify_inclusion, index, size, leaf, proof, root)
    print_proof(check, data, proof, json_out)


@proof_app.command("consistency")
def consistency(
    ctx: typer.Context,
    size1: int = typer.Argument(..., metavar="M", help="The older tree size."),
    size2: int = typer.Argument(..., metavar="N", help="The newer tree size."),
    json_out: bool = JSON_OPT,
) -> None:
    """Prove the tree of size M is a prefix of the tree of size N; checked before printing."""
    from op_dbus.ledger import merkle

    with open_ledger(ctx) as ledger:
        proof = ledger.consistency_proof(size1, size2)
        root1, root2 = ledger.root(size1), ledger.root(size2)
    data = {"size1": size1, "size2": size2, "root1": b64(root1), "root2": b64(root2)}
    check = partial(merkle.verify_consistency, size1, size2, proof, root1, root2)
    print_proof(check, data, proof, json_out)


def print_proof(
    check: Callable[[], None], fields: dict[str, Any], proof: list[bytes], json_out: bool
) -> None:
    """Check the proof against the stored roots (a failure means the stored tree is damaged),
    then print it: JSON in the field names of the transparency-dev test vectors, or lines."""
    from op_dbus.ledger import merkle
    from op_dbus.ledger.store import encode_proof

    try:
        check()
    except merkle.ProofError as err:
        fail(ExitCode.CHANGES_PENDING, f"the stored tree is damaged ({err}); run `ledger verify`")
    data = {**fields, "proof": encode_proof(proof)}
    if json_out:
        print_json(data)
        return
    console = stdout()
    for key, value in data.items():
        if key != "proof":
            console.print(f"[bold]{key}[/]: {value}")
    console.print(f"[bold]proof[/] ({len(data['proof'])} hashes):")
    for item in data["proof"]:
        console.print(f"  {item}")


@ledger_app.command("export")
def export(
    ctx: typer.Context,
    file: str = typer.Argument(..., help="Where to write the JSONL export."),
    json_out: bool = JSON_OPT,
) -> None:
    """Write entries, checkpoints and the public key to FILE, for an offline audit."""
    from op_dbus.ledger.export import export_ledger

    with open_ledger(ctx) as ledger:
        vkey = require_key(ledger)
        try:
            count = export_ledger(ledger, file, vkey)
        except OSError as err:
            fail(ExitCode.INVALID_INPUT, f"{file}: {err.strerror}")
    if json_out:
        print_json({"file": file, "entries": count, "public_key": vkey})
    else:
        stdout().print(f"exported {count} entries to {file}; signed by {vkey}")


@ledger_app.command("verify-export")
def verify_export_cmd(
    file: str = typer.Argument(..., help="An export written by `ledger export`."),
    key: str = KEY_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Verify an export offline with nothing but the file (exit 3 if it does not verify)."""
    from op_dbus.ledger.export import ExportError, verify_export

    try:
        report = verify_export(file, key=key)
    except ExportError as err:
        fail(ExitCode.INVALID_INPUT, str(err))
    print_report(report, file, json_out)
