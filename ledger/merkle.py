"""The RFC 9162 Merkle tree over the ledger's entries: hashes, proofs and their verification.

Only *perfect* subtrees (2^level leaves, aligned) are ever stored, keyed `(level, index)`:
every hash a proof needs is a perfect subtree or a right-edge range made of at most log2(n)
of them, so a proof for a tree of any size costs O(log n) stored hashes, fetched at once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence

Node = tuple[int, int]  # (level, index): leaves [index * 2**level, (index + 1) * 2**level)
Fetch = Callable[[Iterable[Node]], dict[Node, bytes]]
# Perfect nodes side by side on one level: (level, index of the first, their hashes).
Run = tuple[int, int, list[bytes]]

EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = hashlib.sha256(b"\x00")


def leaf_hash(entry: bytes) -> bytes:
    """RFC 9162 leaf hash: SHA-256(0x00 || entry bytes)."""
    hashed = _LEAF_PREFIX.copy()  # the prefix hashed once, not the entry copied behind it
    hashed.update(entry)
    return hashed.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def root(size: int, fetch: Fetch) -> bytes:
    """The root hash of the first `size` leaves."""
    return _Ranges(fetch, [(0, size)]).hash(0, size) if size else EMPTY_ROOT


def inclusion_path(index: int, size: int, fetch: Fetch) -> list[bytes]:
    """RFC 9162 §2.1.3.1 audit path of leaf `index` in the tree of `size` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    ranges = list(_inclusion_ranges(index, 0, size))
    resolved = _Ranges(fetch, ranges)
    return [resolved.hash(start, end) for start, end in ranges]


def consistency_path(old: int, new: int, fetch: Fetch) -> list[bytes]:
    """RFC 9162 §2.1.4.1 consistency proof between tree sizes `old` and `new`."""
    if not 0 <= old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old == 0 or old == new:
        return []
    ranges = list(_consistency_ranges(old, 0, new, True))
    resolved = _Ranges(fetch, ranges)
    return [resolved.hash(start, end) for start, end in ranges]


def verify_inclusion(
    leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does `path` prove leaf hash `leaf` is at `index` under `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, old_root: bytes, new_root: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2: does `path` prove the tree of size `new` extends that of `old`?"""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not path and old_root == new_root
    if old == 0:
        return not path and old_root == EMPTY_ROOT
    if not path:
        return False
    proof = list(path)
    if old & (old - 1) == 0:  # a power of two: the old root is the first node
        proof.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


class Frontier:
    """The right edge of a growing tree: the perfect subtrees that make up its current size.

    Appending a leaf returns the perfect nodes it completes, for the caller to store; memory is
    O(log n).
    """

    def __init__(self, size: int = 0, fetch: Fetch | None = None) -> None:
        self.size = size
        pieces = perfect_pieces(0, size)
        known = fetch(pieces) if fetch is not None and pieces else {}
        self._stack: list[tuple[int, bytes]] = [(level, known[(level, i)]) for level, i in pieces]

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns every (level, index, hash) it completes, the leaf first."""
        completed = [(0, self.size, leaf)]
        stack = self._stack
        stack.append((0, leaf))
        self.size += 1
        while len(stack) > 1 and stack[-1][0] == stack[-2][0]:
            level, right = stack.pop()
            _, left = stack.pop()
            merged = node_hash(left, right)
            stack.append((level + 1, merged))
            completed.append((level + 1, (self.size >> (level + 1)) - 1, merged))
        return completed

    def extend(self, leaves: Sequence[bytes]) -> list[Run]:
        """Add many leaf hashes at once; returns the perfect nodes they complete, level by level:
        a run `(level, index of the first, hashes)` per level that gained any, leaves first.

        The same nodes as `append` would give one leaf at a time, hashed a level at a time
        (over twice as fast in bulk).
        """
        runs: list[Run] = []
        stack, kept = self._stack, []
        row, first, level = list(leaves), self.size, 0
        self.size += len(row)
        sha256 = hashlib.sha256
        while row:
            runs.append((level, first, row))
            if stack and stack[-1][0] == level:  # the left sibling of this level's first node
                row = [stack.pop()[1], *row]
                first -= 1
            if len(row) & 1:  # the last node waits for its right sibling
                kept.append((level, row[-1]))
            pairs = iter(row)  # zipped with itself: (row[0], row[1]), (row[2], row[3]), ...
            row = [
                sha256(b"\x01" + left + right).digest()
                for left, right in zip(pairs, pairs, strict=False)
            ]
            first >>= 1
            level += 1
        stack.extend(reversed(kept))
        return runs

    def root(self) -> bytes:
        """The root hash of the tree as it stands."""
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1][1]
        for _, hash_ in reversed(self._stack[:-1]):
            result = node_hash(hash_, result)
        return result


def perfect_pieces(start: int, end: int) -> list[Node]:
    """The aligned perfect subtrees that make up leaves [start, end), largest first."""
    pieces = []
    while start < end:
        level = (end - start).bit_length() - 1
        size = 1 << level
        if start % size:
            raise ValueError(f"[{start}, {end}) is not a range of an RFC 9162 tree")
        pieces.append((level, start >> level))
        start += size
    return pieces


class _Ranges:
    """Hashes of tree ranges, from the perfect subtrees they decompose into (fetched at once)."""

    def __init__(self, fetch: Fetch, ranges: Iterable[tuple[int, int]]) -> None:
        needed = {piece for start, end in ranges for piece in perfect_pieces(start, end)}
        self._nodes = fetch(needed) if needed else {}
        missing = needed - self._nodes.keys()
        if missing:
            raise LookupError(f"the tree has no stored node {min(missing)}")

    def hash(self, start: int, end: int) -> bytes:
        pieces = [self._nodes[piece] for piece in perfect_pieces(start, end)]
        result = pieces[-1]
        for piece in reversed(pieces[:-1]):
            result = node_hash(piece, result)
        return result


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _inclusion_ranges(m: int, start: int, end: int) -> Iterable[tuple[int, int]]:
    n = end - start
    if n == 1:
        return
    k = _split(n)
    if m < k:
        yield from _inclusion_ranges(m, start, start + k)
        yield (start + k, end)
    else:
        yield from _inclusion_ranges(m - k, start + k, end)
        yield (start, start + k)


def _consistency_ranges(m: int, start: int, end: int, whole: bool) -> Iterable[tuple[int, int]]:
    n = end - start
    if m == n:
        if not whole:
            yield (start, end)
        return
    k = _split(n)
    if m <= k:
        yield from _consistency_ranges(m, start, start + k, whole)
        yield (start + k, end)
    else:
        yield from _consistency_ranges(m - k, start + k, end, False)
        yield (start, start + k)
