"""RFC 9162 math: the transparency-dev vectors, and proofs checked against the RFC's definitions."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.ledger.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    levels_getter,
    node_hash,
    perfect_levels,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "vectors" / "merkle"
needs_vectors = pytest.mark.skipif(
    not VECTORS.is_dir(), reason=f"merkle test vectors not found at {VECTORS}"
)


def vector_files(kind: str) -> list[Path]:
    return sorted(VECTORS.glob(f"{kind}/*/*.json")) if VECTORS.is_dir() else []


def b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def run_vector(path: Path) -> bool:
    """Run one vector; True when our verifier accepted it."""
    v = json.loads(path.read_text())
    proof = [b64(p) for p in v["proof"] or []]
    try:
        if "leafIdx" in v:
            verify_inclusion(v["leafIdx"], v["treeSize"], b64(v["leafHash"]), proof, b64(v["root"]))
        else:
            verify_consistency(v["size1"], v["size2"], proof, b64(v["root1"]), b64(v["root2"]))
    except ProofError:
        return False
    return True


@needs_vectors
@pytest.mark.parametrize(
    "path",
    vector_files("inclusion") + vector_files("consistency"),
    ids=lambda p: "/".join(p.parts[-3:]),
)
def test_vector(path: Path) -> None:
    want_err = json.loads(path.read_text())["wantErr"]
    assert run_vector(path) is not want_err


@needs_vectors
def test_vectors_cover_both_outcomes() -> None:
    files = vector_files("inclusion") + vector_files("consistency")
    outcomes = {json.loads(p.read_text())["wantErr"] for p in files}
    assert len(files) > 100 and outcomes == {True, False}


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1 verbatim, over leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def leaves_of(n: int) -> list[bytes]:
    return [leaf_hash(str(i).encode()) for i in range(n)]


def test_known_roots() -> None:
    assert root(0, levels_getter([[]])) == hashlib.sha256(b"").digest()
    leaves = leaves_of(7)
    levels = perfect_levels(leaves)
    assert root(7, levels_getter(levels)) == node_hash(
        node_hash(node_hash(leaves[0], leaves[1]), node_hash(leaves[2], leaves[3])),
        node_hash(node_hash(leaves[4], leaves[5]), leaves[6]),
    )


@given(st.integers(1, 70), st.data())
def test_inclusion_round_trip(size: int, data: st.DataObject) -> None:
    leaves = leaves_of(size)
    get = levels_getter(perfect_levels(leaves))
    index = data.draw(st.integers(0, size - 1))
    assert root(size, get) == mth(leaves)
    proof = inclusion_proof(index, size, get)
    verify_inclusion(index, size, leaves[index], proof, mth(leaves))
    other = (index + 1) % size
    if size > 1:
        with pytest.raises(ProofError):
            verify_inclusion(other, size, leaves[index], proof, mth(leaves))


@given(st.integers(1, 70), st.data())
def test_consistency_round_trip(size2: int, data: st.DataObject) -> None:
    leaves = leaves_of(size2)
    get = levels_getter(perfect_levels(leaves))
    size1 = data.draw(st.integers(1, size2))
    proof = consistency_proof(size1, size2, get)
    verify_consistency(size1, size2, proof, mth(leaves[:size1]), mth(leaves))
    if size1 < size2:
        wrong = mth([*leaves[: size1 - 1], leaf_hash(b"forged")])
        with pytest.raises(ProofError):
            verify_consistency(size1, size2, proof, wrong, mth(leaves))


def test_verifiers_reject_bad_shapes() -> None:
    h = leaf_hash(b"x")
    with pytest.raises(ProofError):
        verify_inclusion(0, 1, h[:31], [], h[:31])
    with pytest.raises(ProofError):
        verify_consistency(2, 1, [], h, h)
    with pytest.raises(ProofError):
        verify_consistency(1, 2, [], h, h)
