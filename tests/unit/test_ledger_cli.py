"""`op-dbus ledger ...` commands, run in-process on a ledger in a temp data dir."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from op_dbus.cli.context import CliContext
from op_dbus.cli.ledger import ledger_app
from op_dbus.endpoints import Endpoints
from op_dbus.ledger import merkle
from op_dbus.ledger.store import DB_NAME, KEY_NAME, PUBLIC_NAME, Ledger, LedgerError

app = typer.Typer()


@app.callback()
def main(ctx: typer.Context, data_dir: str = typer.Option(..., "--data-dir")) -> None:
    ctx.obj = {"cli": CliContext(endpoints=Endpoints(data_dir=data_dir), mode="auto")}


app.add_typer(ledger_app, name="ledger")


def apply_entries(apply_id: str, time: str, plugins: list[str]) -> list[dict]:
    header = {
        "type": "apply",
        "apply_id": apply_id,
        "time": time,
        "actor": "uid=0 command=op-dbus apply s.yaml",
        "result": {"exit_code": 0},
    }
    actions = [
        {
            "type": "action",
            "apply_id": apply_id,
            "time": time,
            "phase": "apply",
            "plugin": plugin,
            "kind": "create",
            "resource": f"r{i}",
            "result": "applied",
            "error": None,
        }
        for i, plugin in enumerate(plugins)
    ]
    return [header, *actions]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with Ledger.open(tmp_path) as ledger:
        ledger.append(apply_entries("aaaa1111", "2026-01-01T10:00:00.000000Z", ["net", "lxc"]))
        ledger.append(apply_entries("bbbb2222", "2026-02-01T10:00:00.000000Z", ["net"] * 3))
    return tmp_path


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--data-dir", str(data_dir), "ledger", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def run_json(data_dir: Path, *args: str) -> dict:
    code, out = run(data_dir, *args, "--json")
    assert code == 0, out
    return json.loads(out)


def test_log_filters(data_dir: Path) -> None:
    entries = run_json(data_dir, "log")["entries"]
    assert [e["index"] for e in entries] == list(range(7))
    net = run_json(data_dir, "log", "--plugin", "net", "-n", "2")["entries"]
    assert [e["index"] for e in net] == [5, 6]
    since = run_json(data_dir, "log", "--since", "2026-01-15")["entries"]
    assert {e["entry"]["apply_id"] for e in since} == {"bbbb2222"}
    code, out = run(data_dir, "log")
    assert code == 0 and "net:r1" in out and "bbbb2222" in out
    assert run(data_dir, "log", "--since", "yesterday")[0] == 2
    assert run(data_dir, "log", "--plugin", "nope")[0] == 2


def test_show_by_index_and_by_apply_id(data_dir: Path) -> None:
    one = run_json(data_dir, "show", "4")["entries"]
    assert one[0]["entry"]["resource"] == "r0" and one[0]["index"] == 4
    whole = run_json(data_dir, "show", "bbbb")["entries"]
    assert [e["index"] for e in whole] == [3, 4, 5, 6]
    assert run(data_dir, "show", "99")[0] == 2
    assert run(data_dir, "show", "zzzz")[0] == 2


def test_proofs_verify_against_the_printed_checkpoint(data_dir: Path) -> None:
    cp = run_json(data_dir, "checkpoint")
    assert cp["size"] == 7 and cp["note"].splitlines()[1] == "7"
    code, out = run(data_dir, "checkpoint")
    assert code == 0 and out == cp["note"]
    code, vkey = run(data_dir, "checkpoint", "--public-key")
    assert vkey.strip() == cp["public_key"]
    root = base64.b64decode(cp["root"])
    p = run_json(data_dir, "proof", "inclusion", "4")
    assert p["treeSize"] == 7
    proof = [base64.b64decode(h) for h in p["proof"]]
    merkle.verify_inclusion(4, 7, base64.b64decode(p["leafHash"]), proof, root)
    c = run_json(data_dir, "proof", "consistency", "3", "7")
    proof = [base64.b64decode(h) for h in c["proof"]]
    merkle.verify_consistency(3, 7, proof, base64.b64decode(c["root1"]), root)
    assert run(data_dir, "proof", "inclusion", "7")[0] == 2
    assert run(data_dir, "proof", "consistency", "5", "3")[0] == 2


def test_verify_names_the_first_bad_index(data_dir: Path) -> None:
    code, out = run(data_dir, "verify")
    assert code == 0 and "verified" in out and "7 entries" in out
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        conn.execute("UPDATE entries SET data = replace(data, 'r1', 'r7') WHERE idx = 5")
    conn.close()
    code, out = run(data_dir, "verify")
    assert code == 3 and "first bad index 5" in out
    assert run_json_code(data_dir, "verify") == (3, 5)


def test_verify_against_a_saved_checkpoint_and_a_pinned_key(data_dir: Path, tmp_path: Path) -> None:
    saved = tmp_path / "old.checkpoint"
    saved.write_text(run(data_dir, "checkpoint")[1])
    vkey = run(data_dir, "checkpoint", "--public-key")[1].strip()
    assert run(data_dir, "verify", "--checkpoint", str(saved), "--key", vkey)[0] == 0
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        conn.execute("DELETE FROM entries WHERE idx >= 3")
        conn.execute("DELETE FROM nodes WHERE ((idx + 1) << level) > 3")
        conn.execute("DELETE FROM checkpoints WHERE size > 3")
    conn.close()
    with Ledger.open(data_dir) as ledger:
        ledger.append(apply_entries("cccc3333", "2026-03-01T10:00:00.000000Z", ["lxc"] * 3))
    assert run(data_dir, "verify")[0] == 0
    code, out = run(data_dir, "verify", "--checkpoint", str(saved))
    assert code == 3 and "first bad index 3" in out
    assert run(data_dir, "verify", "--checkpoint", str(tmp_path / "missing"))[0] == 2
    other = vkey.rsplit("+", 1)[0] + "+" + base64.b64encode(b"\x01" + b"k" * 32).decode()
    assert run(data_dir, "verify", "--key", other)[0] == 3


def run_json_code(data_dir: Path, *args: str) -> tuple[int, int]:
    code, out = run(data_dir, *args, "--json")
    return code, json.loads(out)["first_bad_index"]


def test_export_verifies_offline_and_catches_tampering(data_dir: Path, tmp_path: Path) -> None:
    export = tmp_path / "audit.jsonl"
    code, out = run(data_dir, "export", str(export))
    assert code == 0 and "exported 7 entries" in out
    vkey = run(data_dir, "checkpoint", "--public-key")[1].strip()
    nowhere = tmp_path / "nowhere"  # verify-export needs no ledger at all
    report = run_json(nowhere, "verify-export", str(export), "--key", vkey)
    assert report["ok"] and report["size"] == 7 and report["verified_size"] == 7

    lines = export.read_text().splitlines()
    record = json.loads(lines[3])  # entry 2
    record["data"] = record["data"].replace("r1", "r2")
    lines[3] = json.dumps(record)
    forged = tmp_path / "forged.jsonl"
    forged.write_text("\n".join(lines) + "\n")
    assert run_json_code(nowhere, "verify-export", str(forged)) == (3, 0)

    lines = export.read_text().splitlines()
    del lines[5]  # entry 4
    forged.write_text("\n".join(lines) + "\n")
    assert run_json_code(nowhere, "verify-export", str(forged)) == (3, 4)

    other_key = vkey.rsplit("+", 1)[0] + "+" + base64.b64encode(b"\x01" + b"k" * 32).decode()
    assert run(nowhere, "verify-export", str(export), "--key", other_key)[0] == 2
    forged.write_text("not json\n")
    assert run(nowhere, "verify-export", str(forged))[0] == 2


def test_missing_ledger_is_exit_2_and_not_created(tmp_path: Path) -> None:
    code, out = run(tmp_path / "none", "log")
    assert code == 2 and "no ledger" in out
    assert not (tmp_path / "none").exists()


def rewrite_entry_and_tree(data_dir: Path, index: int) -> None:
    """The attack of issue 11: edit an entry and rebuild every stored hash to match."""
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        conn.execute("UPDATE entries SET data = replace(data, 'r0', 'r9') WHERE idx = ?", (index,))
        data = [d for (d,) in conn.execute("SELECT data FROM entries ORDER BY idx")]
        leaves = [merkle.leaf_hash(d.encode()) for d in data]
        conn.execute("DELETE FROM nodes")
        for level, hashes in enumerate(merkle.perfect_levels(leaves)):
            rows = [(level, i, h) for i, h in enumerate(hashes)]
            conn.executemany("INSERT INTO nodes VALUES (?, ?, ?)", rows)
    conn.close()


def tamper(data_dir: Path, statement: str) -> None:
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        conn.execute(statement)
    conn.close()


@pytest.mark.parametrize("removal", ["DELETE FROM checkpoints", "DROP TABLE checkpoints"])
def test_a_rewritten_log_with_its_checkpoints_removed_does_not_verify(
    data_dir: Path, removal: str
) -> None:
    rewrite_entry_and_tree(data_dir, 4)
    tamper(data_dir, removal)
    vkey = run(data_dir, "checkpoint", "--public-key")[1].strip()
    for args in ((), ("--key", vkey)):
        code, out = run(data_dir, "verify", *args)
        assert code == 3, out
        assert "entries 0..6 are covered by no signed checkpoint" in out
        assert ("checkpoints table is gone" in out) == removal.startswith("DROP")
    report = json.loads(run(data_dir, "verify", "--json")[1])
    assert not report["ok"] and report["first_bad_index"] == 0 and report["checkpoints"] == 0
    new = apply_entries("dddd4444", "2026-04-01T10:00:00.000000Z", ["net"])
    with (  # the next apply must not sign over the forgery
        pytest.raises(LedgerError, match=r"not appending|lost its checkpoints"),
        Ledger.open(data_dir) as ledger,
    ):
        ledger.append(new)
    assert run(data_dir, "verify")[0] == 3


def test_only_the_last_checkpoint_removed_does_not_verify(data_dir: Path) -> None:
    rewrite_entry_and_tree(data_dir, 4)  # entry 4 belongs to the second apply (3..6)
    tamper(data_dir, "DELETE FROM checkpoints WHERE size = 7")
    code, out = run(data_dir, "verify")
    assert code == 3 and "first bad index 3" in out
    assert "entries 3..6 are covered by no signed checkpoint" in out


def test_an_export_with_its_checkpoint_lines_removed_does_not_verify(
    data_dir: Path, tmp_path: Path
) -> None:
    export = tmp_path / "audit.jsonl"
    assert run(data_dir, "export", str(export))[0] == 0
    vkey = run(data_dir, "checkpoint", "--public-key")[1].strip()
    records = [json.loads(line) for line in export.read_text().splitlines()]
    for record in records:
        if record["type"] == "entry" and record["index"] == 4:
            record["data"] = record["data"].replace("r0", "r9")
    for keep in ([], [records[-2]]):  # no checkpoint at all; only the one of size 3
        lines = [r for r in records if r["type"] != "checkpoint"] + keep
        forged = tmp_path / "forged.jsonl"
        forged.write_text("".join(json.dumps(r) + "\n" for r in lines))
        for args in ((), ("--key", vkey)):
            code, out = run(tmp_path / "nowhere", "verify-export", str(forged), *args)
            assert code == 3, out
            assert "covered by no signed checkpoint" in out


def test_export_never_writes_through_a_symlink_at_its_partial_name(
    data_dir: Path, tmp_path: Path
) -> None:
    shared = tmp_path / "shared"  # a directory others can write, say /tmp
    shared.mkdir()
    precious = tmp_path / "precious"
    precious.write_text("root's file\n")
    (shared / "audit.jsonl.partial").symlink_to(precious)
    (shared / "audit.jsonl").symlink_to(tmp_path / "elsewhere")
    code, out = run(data_dir, "export", str(shared / "audit.jsonl"))
    assert code == 0, out
    assert precious.read_text() == "root's file\n"
    assert not (tmp_path / "elsewhere").exists()
    written = shared / "audit.jsonl"
    assert not written.is_symlink() and (written.stat().st_mode & 0o777) == 0o644
    assert run(tmp_path, "verify-export", str(written))[0] == 0
    assert sorted(os.listdir(shared)) == ["audit.jsonl", "audit.jsonl.partial"]


def files_in(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file's (mtime, mode, content): what a read-only command must leave as it was."""
    return {
        p.name: (p.stat().st_mtime_ns, p.stat().st_mode, p.read_bytes())
        for p in sorted(directory.iterdir())
    }


AUDITS = (
    ("log",),
    ("show", "4"),
    ("show", "bbbb"),
    ("proof", "inclusion", "4"),
    ("proof", "consistency", "3", "7"),
    ("checkpoint",),
    ("checkpoint", "--public-key"),
    ("verify",),
    ("verify", "--json"),
)


WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
opened_for_writing: list[str] | None = None


def _watch_opens(event: str, args: tuple) -> None:
    """Audit hook: note every file this process opens for writing while a test watches."""
    if event == "open" and opened_for_writing is not None:
        path, _, flags = args
        if isinstance(path, str | os.PathLike) and flags & WRITE_FLAGS:
            opened_for_writing.append(os.fspath(path))


sys.addaudithook(_watch_opens)


@contextmanager
def writes_under(directory: Path) -> Iterator[list[str]]:
    """The files under `directory` opened for writing (or created) inside the block."""
    global opened_for_writing
    opened_for_writing = []
    seen = opened_for_writing
    try:
        yield seen
    finally:
        opened_for_writing = None
        seen[:] = [p for p in seen if Path(p).absolute().is_relative_to(directory.absolute())]


@contextmanager
def read_only_copy(data_dir: Path, copy: Path) -> Iterator[Path]:
    shutil.copytree(data_dir, copy)
    for path in (*copy.iterdir(), copy):
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        yield copy
    finally:
        for path in (copy, *copy.iterdir()):
            path.chmod(path.stat().st_mode | 0o200)


def test_audit_commands_run_on_a_read_only_copy_and_change_nothing(
    data_dir: Path, tmp_path: Path
) -> None:
    with read_only_copy(data_dir, tmp_path / "copy") as copy:
        before = files_in(copy)
        with writes_under(copy) as writes:
            for args in AUDITS:
                code, out = run(copy, *args)
                assert code == 0, (args, out)
            export = tmp_path / "audit.jsonl"
            assert run(copy, "export", str(export))[0] == 0
            assert run(copy, "verify-export", str(export))[0] == 0
        assert writes == []  # not even the lock file (root ignores the modes of the copy)
        assert files_in(copy) == before
        assert sorted(before) == ["ledger.db", "ledger.key", "ledger.lock", "ledger.pub"]


def test_with_the_key_files_missing_verify_says_so_and_creates_no_key(
    data_dir: Path, tmp_path: Path
) -> None:
    vkey = (data_dir / PUBLIC_NAME).read_text().strip()
    (data_dir / PUBLIC_NAME).unlink()
    assert run(data_dir, "verify")[0] == 0  # the public key comes from the signing key
    (data_dir / PUBLIC_NAME).write_text(vkey + "\n")
    (data_dir / KEY_NAME).unlink()
    assert run(data_dir, "verify")[0] == 0  # ...or from ledger.pub
    (data_dir / PUBLIC_NAME).unlink()
    before = files_in(data_dir)
    code, out = run(data_dir, "verify")
    assert code == 3 and "public key is missing" in out and "--key" in out
    assert run(data_dir, "checkpoint")[0] == 3
    assert run(data_dir, "export", str(tmp_path / "audit.jsonl"))[0] == 3
    assert run(data_dir, "verify", "--key", vkey)[0] == 0
    assert files_in(data_dir) == before
    assert not (data_dir / KEY_NAME).exists() and not (data_dir / PUBLIC_NAME).exists()


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root for a bind mount"
)
def test_audit_commands_run_on_a_read_only_bind_mount(data_dir: Path, tmp_path: Path) -> None:
    """Root ignores file modes; a read-only mount refuses even root's writes (EROFS)."""
    copy = tmp_path / "ro"
    shutil.copytree(data_dir, copy)
    before = files_in(copy)
    audit = "; ".join(
        f"{sys.executable} -m op_dbus ledger {' '.join(args)} >/dev/null || exit 9"
        for args in AUDITS
    )
    script = f"mount --bind {copy} {copy} && mount -o remount,bind,ro {copy} && {{ {audit}; }}"
    env = {"OPDBUS_DATA_DIR": str(copy), "PATH": "/usr/bin:/bin:/usr/sbin:/sbin"}
    env |= {k: v for k, v in os.environ.items() if k == "PYTHONPATH"}
    done = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], env=env, capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()
    assert files_in(copy) == before


def test_show_for_people_is_yaml_not_a_python_repr(data_dir: Path) -> None:
    import yaml

    code, out = run(data_dir, "show", "4")
    assert code == 0
    body = out.split("\n", 1)[1]
    assert "'resource'" not in out and "True" not in out, "no Python repr"
    assert yaml.safe_load(body)["resource"] == "r0"
