"""The state reader's bounds: size before parsing, regular files only, a YAML pre-scan.

The CLI cases run the real console entry in a subprocess: a FIFO that blocked open(), or
/dev/zero read to exhaustion, shows up as the subprocess's timeout or as exit 1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from op_dbus.model import StateInputError, load_state, parse_state
from op_dbus.model import load as loader
from op_dbus.model.documents import MAX_NODES
from op_dbus.model.load import MAX_DOCUMENT_BYTES, read_document

STATE = {"version": 1, "plugins": {"systemd": {"units": {"ssh.service": {"enabled": True}}}}}


def op_dbus(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "op_dbus", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "OPDBUS_DATA_DIR": "/nonexistent/op-dbus-test"},
    )
    out, err = done.stdout.decode(), done.stderr.decode()
    assert "Traceback" not in out + err and "MemoryError" not in out + err
    return subprocess.CompletedProcess(done.args, done.returncode, out, err)


def refusal(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(StateInputError) as info:
        call(*args, **kwargs)
    return str(info.value)


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_without_waiting_for_a_writer(fifo: Path) -> None:
    done = op_dbus("validate", str(fifo))
    assert done.returncode == 2 and "is a FIFO, not a regular file" in done.stderr


def test_the_daemons_reader_returns_on_a_fifo_too(fifo: Path) -> None:
    """The daemon reloads through the same reader, in a worker thread it must get back."""
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(refusal(load_state, fifo)))
    reader.start()
    reader.join(timeout=30)
    if reader.is_alive():  # unblock the old open() so the test run can end
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join()
    assert outcome and "FIFO" in outcome[0]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/dev/zero", "a character device"),
        ("/dev/null", "a character device"),
        ("/", "a directory"),
    ],
)
def test_what_is_not_a_regular_file_is_refused(path: str, kind: str) -> None:
    done = op_dbus("validate", path)
    assert done.returncode == 2 and f"it is {kind}, not a regular file" in done.stderr


def test_fifty_megabytes_of_yaml_are_refused_naming_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    line = b"  - {name: p0000000, type: ovs-internal, bridge: br0}\n"
    with big.open("wb") as out:
        out.write(b"net:\n interfaces:\n")
        for _ in range(50 * 2**20 // (len(line) * 1024) + 1):
            out.write(line * 1024)
    assert big.stat().st_size > 50 * 10**6
    done = op_dbus("validate", str(big))
    assert done.returncode == 2 and "larger than the limit of 1 MiB" in done.stderr


def test_stdin_is_read_no_further_than_the_limit() -> None:
    done = op_dbus("validate", "-", stdin=b"# padding\n" * (MAX_DOCUMENT_BYTES // 5))
    assert done.returncode == 2 and "<stdin> is larger than the limit of 1 MiB" in done.stderr
    assert op_dbus("validate", "-", stdin=json.dumps(STATE).encode()).returncode == 0


@settings(max_examples=60, deadline=None)
@given(padding=st.integers(min_value=0, max_value=120), limit=st.integers(200, 260))
def test_the_limit_is_exact_for_files_and_documents(padding: int, limit: int) -> None:
    document = (json.dumps(STATE) + " " * padding).encode()
    fits = len(document) <= limit
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(document)
        file.flush()
        for read in (
            lambda: load_state(file.name, limit=limit),
            lambda: parse_state(document, limit=limit),
            lambda: parse_state(document.decode(), limit=limit),
        ):
            if fits:
                assert read().state.sections() == STATE["plugins"]
            else:
                assert f"larger than the limit of {limit} bytes" in refusal(read)


def test_a_file_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    """Even when the size the file reports is small: read() stops at the limit + 1."""
    path = tmp_path / "state.json"
    path.write_bytes(b" " * 100)
    assert len(read_document(path, limit=100)) == 100
    assert "limit of 99 bytes" in refusal(read_document, path, limit=99)


def bomb(breadth: int, depth: int) -> tuple[str, int]:
    """A YAML alias bomb, and the keys and values it expands to (counted, not built)."""
    lines = [f"a0: &a0 [{', '.join(['x'] * breadth)}]"]
    lists = [1 + breadth]  # a0: the list and its scalars
    for level in range(1, depth + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * breadth)}]")
        lists.append(1 + breadth * lists[-1])
    return "\n".join(lines) + "\n", 1 + sum(1 + size for size in lists)


def expanded(tree: Any) -> int:
    """Keys and values of a tree with every shared node counted where it appears."""
    if isinstance(tree, dict):
        return 1 + sum(expanded(k) + expanded(v) for k, v in tree.items())
    if isinstance(tree, list):
        return 1 + sum(expanded(v) for v in tree)
    return 1


@settings(max_examples=40, deadline=None)
@given(breadth=st.integers(2, 12), depth=st.integers(1, 9))
def test_alias_bombs_are_refused_before_they_are_built(breadth: int, depth: int) -> None:
    text, size = bomb(breadth, depth)
    if size < 1000:  # small enough to build: the count is what the loader builds
        assert size == expanded(yaml.safe_load(text))
    problem = loader.yaml_prescan(text)
    if size > MAX_NODES:
        assert problem is not None and "once its YAML aliases are expanded" in problem
        assert "aliases are expanded" in refusal(parse_state, text)
    else:
        assert problem is None


leaves = st.one_of(st.integers(), st.text(max_size=5), st.booleans(), st.none())


@st.composite
def shared_trees(draw: st.DrawFn) -> Any:
    """Trees that reuse subtrees: yaml.safe_dump writes those as anchors and aliases."""
    pool: list[Any] = []
    for _ in range(draw(st.integers(1, 8))):
        children = draw(st.lists(st.one_of(leaves, st.sampled_from(pool or [0])), max_size=5))
        node: Any = children
        if draw(st.booleans()):
            node = {f"k{i}": child for i, child in enumerate(children)}
        pool.append(node)
    return {"root": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=8))}


@settings(max_examples=150, deadline=None)
@given(tree=shared_trees(), bound=st.integers(1, 400))
def test_the_pre_scan_counts_exactly_what_the_aliases_expand_to(tree: Any, bound: int) -> None:
    text = yaml.safe_dump(tree)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loader, "MAX_NODES", bound)
        refused = loader.yaml_prescan(text) is not None
    assert refused == (expanded(tree) > bound)


def test_deep_nesting_is_refused_by_the_pre_scan() -> None:
    block = "".join(f"{'  ' * i}k{i}:\n" for i in range(100)) + "  " * 100 + "x\n"
    assert "nested more than 64 levels deep (line 65)" in refusal(parse_state, block)
    flow = "[" * 100_000 + "]" * 100_000  # too deep for either parser: refused, no RecursionError
    assert "nested too deeply" in refusal(parse_state, flow)


def test_ordinary_yaml_with_anchors_still_loads() -> None:
    text = (
        "version: 1\nplugins:\n  systemd:\n    units:\n"
        "      a.service: &on {enabled: true, active_state: active}\n"
        "      b.service: *on\n"
    )
    units = parse_state(text).state.sections()["systemd"]["units"]
    assert units["a.service"] == units["b.service"]
