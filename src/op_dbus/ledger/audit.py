"""Full verification: recompute every hash from the entries and hold it against what was signed.

Shared by `Ledger.verify` (with the stored tree, to find the exact entry that changed) and by
the offline check of an export file (entries, checkpoints and key only). Every problem names
the first entry index it proves bad; a checkpoint mismatch can only narrow the change down to
the entries after the last checkpoint that still holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from op_dbus.ledger.checkpoint import CheckpointError, open_checkpoint, parse_verifier_key
from op_dbus.ledger.merkle import NodeGetter, leaf_hash, levels_getter, perfect_levels, root

MAX_LISTED = 20
MISSING_KEY = (
    "the public key is missing (neither ledger.key nor ledger.pub is in the data dir), so no "
    "checkpoint can be checked: pass the key kept off the host with --key"
)


@dataclass(frozen=True)
class Problem:
    """A bad entry `index`, or with `last` the first of a range a checkpoint proves changed."""

    index: int
    message: str
    last: int | None = None


@dataclass
class AuditReport:
    size: int = 0
    root: bytes = b""
    checkpoints: int = 0
    verified_size: int = 0
    """Entries [0, verified_size) are covered by a checkpoint whose signature and root hold."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad(self) -> int | None:
        """The first index proven bad; a range counts only when no exact problem falls in it."""
        exact = [p.index for p in self.problems if p.last is None]
        ranges = [
            p.index
            for p in self.problems
            if p.last is not None and not any(p.index <= i <= p.last for i in exact)
        ]
        return min(exact + ranges, default=None)

    def add(self, index: int, message: str, last: int | None = None) -> None:
        if len(self.problems) < MAX_LISTED:
            self.problems.append(Problem(index, message, last))


def _check_entry(report: AuditReport, position: int, index: int, data: bytes) -> None:
    if index != position:
        report.add(position, f"entry {position} is missing (the next stored one is {index})")
        return
    try:
        value = json.loads(data)
    except ValueError:
        report.add(position, f"entry {position} is not valid JSON")
        return
    if not isinstance(value, dict) or value.get("index") != position:
        said = value.get("index") if isinstance(value, dict) else None
        report.add(position, f"entry {position} says it is entry {said} (moved or swapped)")


def audit(
    rows: Iterable[tuple[int, bytes]],
    checkpoints: Sequence[str],
    vkey: str | None,
    *,
    trusted: Sequence[str] = (),
    stored_nodes: Iterable[tuple[int, int, bytes]] | None = None,
) -> AuditReport:
    """Verify entries `rows` (index, canonical bytes, in index order) against `checkpoints`.

    Every entry must be claimed by one of the log's own `checkpoints`: each append signs one
    in the same transaction, so an unclaimed entry means checkpoints were removed. `trusted`
    checkpoints (kept elsewhere) are checked too but cannot stand in for the log's own. With
    `stored_nodes` (level, index, hash) the stored tree is compared node by node too.
    """
    report = AuditReport()
    leaves: list[bytes] = []
    for position, (index, data) in enumerate(rows):
        if report.ok:
            _check_entry(report, position, index, data)
        leaves.append(leaf_hash(data))
    size = report.size = len(leaves)
    levels = perfect_levels(leaves)
    get = levels_getter(levels)
    report.root = root(size, get)
    if stored_nodes is not None:
        _compare_tree(report, levels, stored_nodes)
    if vkey is None:
        if size or checkpoints or trusted:
            report.add(0, MISSING_KEY)
        return report
    try:
        name, _ = parse_verifier_key(vkey)
    except CheckpointError as exc:
        report.add(0, f"public key: {exc}")
        return report
    claimed = _check_checkpoints(report, [*checkpoints, *trusted], vkey, name, get)
    own = max(claimed[: len(checkpoints)], default=0)
    if own < size:
        report.add(
            own,
            f"entries {own}..{size - 1} are covered by no signed checkpoint, yet every apply "
            "signs one with its entries: checkpoints were removed",
            last=size - 1,
        )
    return report


def _claimed_size(note: str) -> int:
    """The size line of a checkpoint whose signature failed (0 when unreadable)."""
    lines = note.split("\n")
    return int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else 0


def _check_checkpoints(
    report: AuditReport, checkpoints: Sequence[str], vkey: str, name: str, get: NodeGetter
) -> list[int]:
    """Check each checkpoint and return the size each claims; a failing one is blamed on the
    entries after the largest smaller checkpoint that holds, since only those can differ from
    what it signed."""
    size = report.size
    failures: list[tuple[int, str]] = []  # (size it claims, why); the range is added below
    holding: list[int] = []
    claims: list[int] = []
    for number, note in enumerate(checkpoints, 1):
        report.checkpoints += 1
        try:
            signed = open_checkpoint(note, vkey)
        except CheckpointError as exc:
            claims.append(_claimed_size(note))
            failures.append((claims[-1], f"checkpoint #{number}: {exc}"))
            continue
        claims.append(signed.size)
        if signed.origin != name:
            why = f"checkpoint #{number} has origin {signed.origin!r}, not {name!r}"
            failures.append((signed.size, why))
        elif signed.size > size:
            report.add(size, f"checkpoint #{number} signs {signed.size} entries, log has {size}")
            failures.append((size, ""))
        elif root(signed.size, get) != signed.root:
            why = f"checkpoint #{number} (size {signed.size}) does not match the entries"
            failures.append((signed.size, why))
        else:
            holding.append(signed.size)
    for claimed, why in failures:
        if why:
            first = max((h for h in holding if h < claimed), default=0)
            last = max(first, min(claimed, size) - 1)
            report.add(first, f"{why}: something in entries {first}..{last} changed", last=last)
    lowest_failure = min((claimed for claimed, _ in failures), default=None)
    report.verified_size = max(
        (h for h in holding if lowest_failure is None or h < lowest_failure), default=0
    )
    return claims


def _compare_tree(
    report: AuditReport, levels: list[list[bytes]], stored: Iterable[tuple[int, int, bytes]]
) -> None:
    """Compare the stored perfect subtrees with the recomputed ones; report the first of each."""
    size = len(levels[0])
    seen = [0] * len(levels)
    leaf_reported = node_reported = False
    for level, index, value in stored:
        first = index << level
        if level >= len(levels) or index >= len(levels[level]):
            if not node_reported:
                report.add(size, f"the stored tree covers entries beyond {size - 1}")
                node_reported = True
            continue
        seen[level] += 1
        if value == levels[level][index]:
            continue
        if level == 0 and not leaf_reported:
            report.add(index, f"entry {index} does not match its stored leaf hash (changed)")
            leaf_reported = True
        elif level > 0 and not node_reported:
            last = min(((index + 1) << level), size) - 1
            report.add(first, f"stored tree node over entries {first}..{last} is wrong", last)
            node_reported = True
    for level, count in enumerate(seen):
        if count != len(levels[level]) and not (leaf_reported or node_reported):
            missing = len(levels[level]) - count
            report.add(0, f"the stored tree lacks {missing} node(s) at level {level}")
            return
