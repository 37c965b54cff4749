"""RFC 9162 Merkle tree math: hashes, proofs and the auditors' verifiers. Pure, no storage.

Proof generation takes a `node(level, index)` callback that returns the hash of the perfect
subtree covering leaves [index << level, (index + 1) << level); any subtree a proof needs is
folded from O(log n) of those, so a store that keeps every perfect subtree answers in
O(log n) reads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeGetter = Callable[[int, int], bytes]


class ProofError(ValueError):
    """A proof, root or size does not check out."""


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(start: int, end: int, node: NodeGetter) -> bytes:
    """MTH(D[start:end]) for a range whose start is aligned as in RFC 9162's recursion."""
    if start >= end:
        return EMPTY_ROOT
    parts = []
    while start < end:
        level = (end - start).bit_length() - 1
        while start & ((1 << level) - 1):
            level -= 1
        parts.append(node(level, start >> level))
        start += 1 << level
    acc = parts[-1]
    for part in reversed(parts[:-1]):
        acc = node_hash(part, acc)
    return acc


def root(size: int, node: NodeGetter) -> bytes:
    return range_hash(0, size, node)


def inclusion_proof(index: int, size: int, node: NodeGetter) -> list[bytes]:
    """PATH(index, D[0:size]) (RFC 9162 2.1.3.1), leaf side first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            proof.append(range_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(range_hash(start, start + k, node))
            start += k
    proof.reverse()
    return proof


def consistency_proof(size1: int, size2: int, node: NodeGetter) -> list[bytes]:
    """SUBPROOF(size1, D[0:size2], true) (RFC 9162 2.1.4.1); empty when size1 is 0 or size2."""
    if not 0 <= size1 <= size2:
        raise ProofError(f"no consistency proof from size {size1} to size {size2}")
    if size1 in (0, size2):
        return []
    proof: list[bytes] = []
    m, start, end, whole = size1, 0, size2, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            proof.append(range_hash(start + k, end, node))
            end = start + k
        else:
            proof.append(range_hash(start, start + k, node))
            m, start, whole = m - k, start + k, False
    if not whole:
        proof.append(range_hash(start, end, node))
    proof.reverse()
    return proof


def perfect_levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every perfect subtree hash, bottom up: levels[L][i] is node(L, i). For full recomputes."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node_hash(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])
    return levels


def levels_getter(levels: list[list[bytes]]) -> NodeGetter:
    return lambda level, index: levels[level][index]


def _check_hashes(**hashes: bytes) -> None:
    for name, value in hashes.items():
        if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
            raise ProofError(f"{name} is not a {HASH_SIZE}-byte hash")


def _check_proof(proof: Sequence[bytes]) -> None:
    for i, item in enumerate(proof):
        _check_hashes(**{f"proof[{i}]": item})


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `leaf_hash` is leaf `leaf_index` of the tree of `tree_size` with `root`.

    RFC 9162 2.1.3.2. Returns None; raises ProofError on any failure.
    """
    proof = list(proof or [])
    _check_hashes(leaf_hash=leaf_hash, root=root)
    _check_proof(proof)
    if not 0 <= leaf_index < tree_size:
        raise ProofError(f"leaf index {leaf_index} is outside a tree of size {tree_size}")
    fn, sn, r = leaf_index, tree_size - 1, bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is too short")
    if r != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree of `size1` with `root1` is a prefix of the one of `size2` with `root2`.

    RFC 9162 2.1.4.2. Returns None; raises ProofError on any failure.
    """
    proof = list(proof or [])
    _check_hashes(root1=root1, root2=root2)
    _check_proof(proof)
    if not 0 <= size1 <= size2:
        raise ProofError(f"size1 {size1} must be between 0 and size2 {size2}")
    if size1 == size2:
        if proof:
            raise ProofError("trees of equal size need an empty proof")
        if root1 != root2:
            raise ProofError("trees of equal size have different roots")
        return
    if size1 == 0:
        if proof:
            raise ProofError("consistency with the empty tree needs an empty proof")
        return
    if not proof:
        raise ProofError("consistency proof is empty")
    if size1 & (size1 - 1) == 0:
        proof.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise ProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is too short")
    if fr != root1:
        raise ProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise ProofError("consistency proof does not lead to root2")
