"""The RFC 9162 Merkle tree: roots and proofs from stored perfect subtrees agree with
a literal reading of RFC 9162 §2.1 and with published test vectors, and verification is strict."""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TypeAlias

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import Frontier, Node

# --- An independent reference: RFC 9162 §2.1 read literally, over leaf ranges [start, end). ---

Range: TypeAlias = tuple[int, int]
# The structure of a hash computation: a leaf's index, or (left, right) for an interior node.
Shape: TypeAlias = "int | tuple[Shape, Shape]"

EMPTY = hashlib.sha256(b"").digest()
MAX_LEAVES = 300
# Distinct, so equal hashes mean equal trees; one spare leaf to grow the largest tree by.
ENTRIES = [b"entry %d" % i for i in range(MAX_LEAVES + 1)]
GARBAGE = hashlib.sha256(b"not a node of this tree").digest()


def ref_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(entries: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH(D[n])."""
    if not entries:
        return EMPTY
    if len(entries) == 1:
        return ref_leaf(entries[0])
    k = split_point(len(entries))
    return ref_node(mth(entries[:k]), mth(entries[k:]))


@functools.cache
def mth_of(start: int, end: int) -> bytes:
    """MTH(ENTRIES[start:end]), by the same definition, memoised."""
    if end - start == 0:
        return EMPTY
    if end - start == 1:
        return ref_leaf(ENTRIES[start])
    k = split_point(end - start)
    return ref_node(mth_of(start, start + k), mth_of(start + k, end))


def path_ranges(m: int, start: int, end: int) -> list[Range]:
    """RFC 9162 §2.1.3.1 PATH(m, D[start:end]), as the ranges whose MTHs it lists."""
    n = end - start
    if n == 1:
        return []
    k = split_point(n)
    if m < k:
        return [*path_ranges(m, start, start + k), (start + k, end)]
    return [*path_ranges(m - k, start + k, end), (start, start + k)]


def proof_ranges(m: int, start: int, end: int, whole: bool = True) -> list[Range]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[start:end], b), as the ranges whose MTHs it lists."""
    n = end - start
    if m == n:
        return [] if whole else [(start, end)]
    k = split_point(n)
    if m <= k:
        return [*proof_ranges(m, start, start + k, whole), (start + k, end)]
    return [*proof_ranges(m - k, start + k, end, False), (start, start + k)]


def reference_path(index: int, size: int) -> list[bytes]:
    return [mth_of(start, end) for start, end in path_ranges(index, 0, size)]


def reference_proof(old: int, new: int) -> list[bytes]:
    if old in (0, new):
        return []
    return [mth_of(start, end) for start, end in proof_ranges(old, 0, new)]


def perfect_nodes(leaf_hashes: Sequence[bytes]) -> dict[Node, bytes]:
    """Every perfect subtree (level, index) of the tree over these leaf hashes, level by level."""
    nodes: dict[Node, bytes] = {}
    row, level = list(leaf_hashes), 0
    while row:
        nodes.update(((level, index), hash_) for index, hash_ in enumerate(row))
        row = [ref_node(row[2 * i], row[2 * i + 1]) for i in range(len(row) // 2)]
        level += 1
    return nodes


PERFECT = perfect_nodes([ref_leaf(entry) for entry in ENTRIES])


# --- Which sizes a proof can be read under: the structure of the computation, without hashing. ---


@functools.cache
def shape(start: int, end: int) -> Shape:
    if end - start == 1:
        return start
    k = split_point(end - start)
    return (shape(start, start + k), shape(start + k, end))


def shape_over(start: int, end: int, atoms: Mapping[Range, Shape]) -> Shape | None:
    """The computation a verifier does for [start, end) when handed these ranges' hashes."""
    if (start, end) in atoms:
        return atoms[(start, end)]
    if end - start <= 1:
        return None
    k = split_point(end - start)
    left, right = shape_over(start, start + k, atoms), shape_over(start + k, end, atoms)
    return None if left is None or right is None else (left, right)


def inclusion_reads_as(index: int, size: int, other_index: int, other_size: int) -> bool:
    """Would the proof of `index` in `size` (with its leaf and root) verify as `other_index` in
    `other_size`? Exactly when the verifier's computation then hashes the same tree."""
    if not 0 <= other_index < other_size:
        return False
    claimed, actual = path_ranges(other_index, 0, other_size), path_ranges(index, 0, size)
    if len(claimed) != len(actual):
        return False
    atoms: dict[Range, Shape] = {(other_index, other_index + 1): index}
    atoms.update(zip(claimed, (shape(*r) for r in actual), strict=True))
    return shape_over(0, other_size, atoms) == shape(0, size)


def consistency_reads_as(old: int, new: int, other_old: int, other_new: int) -> bool:
    """Would the (non-empty) proof from `old` to `new` with their roots verify between
    `other_old` and `other_new`? Exactly when both recomputed roots hash the same trees."""
    if not 0 < other_old < other_new:
        return False  # these need an empty proof, and this one is not
    claimed = proof_ranges(other_old, 0, other_new)
    given = [shape(*r) for r in proof_ranges(old, 0, new)]
    if other_old & (other_old - 1) == 0:  # the verifier starts from the old root it was given
        claimed, given = [(0, other_old), *claimed], [shape(0, old), *given]
    if len(claimed) != len(given):
        return False
    atoms = dict(zip(claimed, given, strict=True))
    return shape_over(0, other_old, atoms) == shape(0, old) and shape_over(
        0, other_new, atoms
    ) == shape(0, new)


# --- Test doubles and helpers. ---


class CountingStore:
    """Stored perfect-subtree hashes; remembers every request the code under test makes."""

    def __init__(self, nodes: Mapping[Node, bytes]) -> None:
        self.nodes = nodes
        self.requests: list[set[Node]] = []

    def fetch(self, keys: Iterable[Node]) -> dict[Node, bytes]:
        wanted = set(keys)
        self.requests.append(wanted)
        return {key: self.nodes[key] for key in wanted if key in self.nodes}

    @property
    def requested(self) -> set[Node]:
        return set().union(*self.requests)


def flip(hash_: bytes) -> bytes:
    return bytes([hash_[0] ^ 0x10]) + hash_[1:]


def tamperings(path: Sequence[bytes], *extras: bytes) -> Iterator[list[bytes]]:
    """Every proof one edit away: an element changed, dropped, or added anywhere."""
    for i in range(len(path)):
        yield [*path[:i], flip(path[i]), *path[i + 1 :]]
        yield [*path[:i], *path[i + 1 :]]
    for i in range(len(path) + 1):
        for added in (GARBAGE, b"", *path, *extras):
            yield [*path[:i], added, *path[i:]]


def log_budget(size: int) -> float:
    return 2 * math.log2(size) + 2 if size else 0


def assert_fetched_cheaply(store: CountingStore, size: int, *, expect_request: bool) -> None:
    """At most ~2·log2(size)+2 nodes, in a single request, all inside the first `size` leaves."""
    assert len(store.requests) == (1 if expect_request else 0)
    assert len(store.requested) <= log_budget(size)
    assert all((index + 1) << level <= size for level, index in store.requested)


def inclusion_probes(index: int, size: int) -> set[tuple[int, int]]:
    indices = {index - 1, index + 1, index ^ 1, index ^ 2, size - 1 - index, -1, size}
    sizes = {size - 1, size + 1, 2 * size, size // 2, index, index + 1, 0}
    return (
        {(i, size) for i in indices}
        | {(index, s) for s in sizes}
        | {(index + 1, size + 1), (2 * index, 2 * size)}
    ) - {(index, size)}


def consistency_probes(old: int, new: int) -> set[tuple[int, int]]:
    olds = {old - 1, old + 1, old ^ 1, old ^ 2, 2 * old, old // 2, 0, new}
    news = {new - 1, new + 1, 2 * new, new // 2, old}
    return (
        {(o, new) for o in olds}
        | {(old, n) for n in news}
        | {(old + 1, new + 1), (2 * old, 2 * new), (new, old)}
    ) - {(old, new)}


def check_inclusion(index: int, size: int, probes: Iterable[tuple[int, int]] = ()) -> None:
    store = CountingStore(PERFECT)
    path = merkle.inclusion_path(index, size, store.fetch)
    assert path == reference_path(index, size)
    assert_fetched_cheaply(store, size, expect_request=bool(path))

    leaf, root = ref_leaf(ENTRIES[index]), mth_of(0, size)
    assert merkle.verify_inclusion(leaf, index, size, path, root)
    for tampered in tamperings(path, leaf, root):
        assert not merkle.verify_inclusion(leaf, index, size, tampered, root), tampered
    for wrong_leaf in (flip(leaf), ENTRIES[index], ref_node(b"", ENTRIES[index]), root):
        if wrong_leaf != root or size > 1:
            assert not merkle.verify_inclusion(wrong_leaf, index, size, path, root)
    for wrong_root in (flip(root), EMPTY, mth_of(0, size - 1), mth_of(0, size + 1), leaf):
        if wrong_root != leaf or size > 1:
            assert not merkle.verify_inclusion(leaf, index, size, path, wrong_root)
    for other_index, other_size in probes:
        expected = inclusion_reads_as(index, size, other_index, other_size)
        verified = merkle.verify_inclusion(leaf, other_index, other_size, path, root)
        assert verified is expected, (other_index, other_size)


def check_consistency(old: int, new: int, probes: Iterable[tuple[int, int]] = ()) -> None:
    store = CountingStore(PERFECT)
    proof = merkle.consistency_path(old, new, store.fetch)
    assert proof == reference_proof(old, new)
    assert_fetched_cheaply(store, new, expect_request=bool(proof))

    old_root, new_root = mth_of(0, old), mth_of(0, new)
    assert merkle.verify_consistency(old, new, old_root, new_root, proof)
    for tampered in tamperings(proof, old_root, new_root):
        assert not merkle.verify_consistency(old, new, old_root, new_root, tampered), tampered
    if old != new:
        assert not merkle.verify_consistency(old, new, new_root, old_root, proof)
    if old != 0:
        assert not merkle.verify_consistency(old, new, flip(old_root), new_root, proof)
        assert not merkle.verify_consistency(old, new, old_root, flip(new_root), proof)
        assert not merkle.verify_consistency(old, new, mth_of(0, old - 1), new_root, proof)
    else:
        assert not merkle.verify_consistency(0, new, flip(EMPTY), new_root, proof)
    if proof:
        assert not merkle.verify_consistency(old, new, old_root, new_root, [])
        for other_old, other_new in probes:
            expected = consistency_reads_as(old, new, other_old, other_new)
            verified = merkle.verify_consistency(other_old, other_new, old_root, new_root, proof)
            assert verified is expected, (other_old, other_new)


# --- The reference itself, held to published values before anything is measured against it. ---

# transparency-dev/merkle testonly/constants.go (the certificate-transparency reference data):
# LeafInputs(), NodeHashes() (every perfect subtree, by level then index) and RootHashes().
CT_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_NODES: dict[Node, bytes] = {
    (level, index): bytes.fromhex(h)
    for level, row in enumerate(
        [
            [
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
                "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
            ],
            [
                "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            ],
            [
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
            ["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
        ]
    )
    for index, h in enumerate(row)
}
CT_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]

# transparency-dev/merkle proof/verify_test.go, inclusionProofs and consistencyProofs (the same
# vectors as certificate-transparency-go's, generated from the C++ reference implementation).
# There the leaf is numbered from 1; here it is the 0-based index.
CT_INCLUSION: list[tuple[int, int, list[str]]] = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
CT_CONSISTENCY: list[tuple[int, int, list[str]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

# transparency-dev/merkle proof/proof_test.go, TestInclusion and TestConsistency: the stored
# nodes (compact.NewNodeID(level, index)) each proof is made of, including the right-edge nodes
# that are rehashed into one proof element.
TD_INCLUSION_NODES: list[tuple[int, int, set[Node]]] = [
    (1, 0, set()),
    (2, 0, {(0, 1)}),
    (2, 1, {(0, 0)}),
    (3, 1, {(0, 0), (0, 2)}),
    (7, 0, {(0, 1), (1, 1), (0, 6), (1, 2)}),
    (7, 1, {(0, 0), (1, 1), (0, 6), (1, 2)}),
    (7, 2, {(0, 3), (1, 0), (0, 6), (1, 2)}),
    (7, 3, {(0, 2), (1, 0), (0, 6), (1, 2)}),
    (7, 4, {(0, 5), (0, 6), (2, 0)}),
    (7, 5, {(0, 4), (0, 6), (2, 0)}),
    (7, 6, {(1, 2), (2, 0)}),
    (4, 2, {(0, 3), (1, 0)}),
    (5, 3, {(0, 2), (1, 0), (0, 4)}),
    (6, 3, {(0, 2), (1, 0), (1, 2)}),
    (6, 4, {(0, 5), (2, 0)}),
    (15, 10, {(0, 11), (1, 4), (0, 14), (1, 6), (3, 0)}),
    (31, 24, {(0, 25), (1, 13), (0, 30), (1, 14), (3, 2), (4, 0)}),
    (95, 81, {(0, 80), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)}),
]
TD_CONSISTENCY_NODES: list[tuple[int, int, set[Node]]] = [
    (1, 2, {(0, 1)}),
    (1, 4, {(0, 1), (1, 1)}),
    (1, 6, {(0, 1), (1, 1), (1, 2)}),
    (2, 3, {(0, 2)}),
    (2, 8, {(1, 1), (2, 1)}),
    (3, 7, {(0, 2), (0, 3), (1, 0), (0, 6), (1, 2)}),
    (4, 7, {(0, 6), (1, 2)}),
    (5, 7, {(0, 4), (0, 5), (0, 6), (2, 0)}),
    (6, 7, {(1, 2), (0, 6), (2, 0)}),
    (7, 8, {(0, 6), (0, 7), (1, 2), (2, 0)}),
    *((size, size, set()) for size in (1, 2, 3, 4, 5, 7, 8)),
    (2, 4, {(1, 1)}),
    (3, 5, {(0, 2), (0, 3), (1, 0), (0, 4)}),
    (3, 6, {(0, 2), (0, 3), (1, 0), (1, 2)}),
    (4, 6, {(1, 2)}),
    (1, 7, {(0, 1), (1, 1), (0, 6), (1, 2)}),
    (10, 15, {(1, 4), (1, 5), (0, 14), (1, 6), (3, 0)}),
    (24, 31, {(3, 2), (0, 30), (1, 14), (2, 6), (4, 0)}),
    (81, 95, {(0, 80), (0, 81), (1, 41), (2, 21), (0, 94), (1, 46), (2, 22), (4, 4), (6, 0)}),
]


def test_the_reference_mth_gives_the_published_roots_of_the_certificate_transparency_tree() -> None:
    assert [mth(CT_LEAVES[:size]) for size in range(9)] == CT_ROOTS
    assert perfect_nodes([ref_leaf(leaf) for leaf in CT_LEAVES]) == CT_NODES


def test_the_reference_paths_and_proofs_give_the_published_vectors() -> None:
    nodes = perfect_nodes([ref_leaf(leaf) for leaf in CT_LEAVES])

    def hashes(ranges: list[Range]) -> list[str]:
        return [mth(CT_LEAVES[start:end]).hex() for start, end in ranges]

    for index, size, path in CT_INCLUSION:
        assert hashes(path_ranges(index, 0, size)) == path
    for old, new, proof in CT_CONSISTENCY:
        assert (hashes(proof_ranges(old, 0, new)) if old != new else []) == proof
    assert nodes[(3, 0)] == CT_ROOTS[8]


# --- Hashing. ---


def test_hashes_are_the_published_rfc6962_leaf_node_and_empty_tree_hashes() -> None:
    # transparency-dev/merkle rfc6962/rfc6962_test.go, TestRFC6962Hasher.
    assert merkle.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert merkle.leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    assert merkle.leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert merkle.node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_every_published_leaf_hashes_to_its_published_level_zero_node() -> None:
    assert [merkle.leaf_hash(leaf) for leaf in CT_LEAVES] == [CT_NODES[(0, i)] for i in range(8)]


@given(st.binary(max_size=200), st.binary(min_size=32, max_size=32))
def test_leaf_and_node_hashes_are_domain_separated_sha256(entry: bytes, other: bytes) -> None:
    assert merkle.leaf_hash(entry) == hashlib.sha256(b"\x00" + entry).digest()
    assert merkle.node_hash(entry, other) == hashlib.sha256(b"\x01" + entry + other).digest()
    assert merkle.leaf_hash(entry + other) != merkle.node_hash(entry, other)


def test_the_empty_tree_root_is_sha256_of_nothing_and_needs_no_stored_node() -> None:
    store = CountingStore({})
    assert merkle.root(0, store.fetch) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT
    assert store.requests == []


# --- Published vectors through the code under test. ---


def test_roots_of_the_published_tree_are_the_published_roots() -> None:
    for size in range(9):
        store = CountingStore(CT_NODES)
        assert merkle.root(size, store.fetch) == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "expected"), CT_INCLUSION)
def test_inclusion_paths_in_the_published_tree_are_the_published_paths(
    index: int, size: int, expected: list[str]
) -> None:
    path = merkle.inclusion_path(index, size, CountingStore(CT_NODES).fetch)
    assert [hash_.hex() for hash_ in path] == expected
    leaf = merkle.leaf_hash(CT_LEAVES[index])
    assert merkle.verify_inclusion(leaf, index, size, path, CT_ROOTS[size])
    assert merkle.verify_inclusion(
        leaf, index, size, [bytes.fromhex(h) for h in expected], CT_ROOTS[size]
    )


@pytest.mark.parametrize(("old", "new", "expected"), CT_CONSISTENCY)
def test_consistency_proofs_in_the_published_tree_are_the_published_proofs(
    old: int, new: int, expected: list[str]
) -> None:
    proof = merkle.consistency_path(old, new, CountingStore(CT_NODES).fetch)
    assert [hash_.hex() for hash_ in proof] == expected
    published = [bytes.fromhex(h) for h in expected]
    assert merkle.verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], published)


@pytest.mark.parametrize(("size", "index", "nodes"), TD_INCLUSION_NODES)
def test_an_inclusion_proof_fetches_exactly_the_published_set_of_stored_nodes(
    size: int, index: int, nodes: set[Node]
) -> None:
    store = CountingStore(PERFECT)
    merkle.inclusion_path(index, size, store.fetch)
    assert store.requested == nodes
    assert len(store.requests) == (1 if nodes else 0)


@pytest.mark.parametrize(("old", "new", "nodes"), TD_CONSISTENCY_NODES)
def test_a_consistency_proof_fetches_exactly_the_published_set_of_stored_nodes(
    old: int, new: int, nodes: set[Node]
) -> None:
    store = CountingStore(PERFECT)
    merkle.consistency_path(old, new, store.fetch)
    assert store.requested == nodes
    assert len(store.requests) == (1 if nodes else 0)


def test_the_frontier_stores_exactly_the_published_nodes_and_gives_the_published_roots() -> None:
    frontier, stored = Frontier(), dict[Node, bytes]()
    assert frontier.root() == CT_ROOTS[0]
    for size, leaf in enumerate(CT_LEAVES, start=1):
        stored.update(
            ((level, index), hash_)
            for level, index, hash_ in frontier.append(merkle.leaf_hash(leaf))
        )
        assert frontier.root() == CT_ROOTS[size]
    assert stored == CT_NODES


def test_the_verifiers_refuse_the_published_malformed_requests() -> None:
    # transparency-dev/merkle proof/verify_test.go, TestVerifyInclusion and TestVerifyConsistency.
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    for index, size in ((0, 0), (0, 1), (1, 0), (2, 1)):
        assert not merkle.verify_inclusion(some, index, size, [], b"")
        assert not merkle.verify_inclusion(b"", index, size, [], EMPTY)
        assert not merkle.verify_inclusion(some, index, size, [], EMPTY)
    one, two = b"don't care 1", b"don't care 2"
    refused = [
        (0, 0, one, two, []),
        (1, 1, one, two, []),
        (1, 0, one, two, []),
        (2, 1, one, two, []),
        (1, 2, one, two, []),
        (0, 0, EMPTY, two, []),
        (1, 1, EMPTY, two, []),
        (0, 0, EMPTY, EMPTY, [EMPTY]),
        (0, 1, EMPTY, EMPTY, [EMPTY]),
        (1, 1, EMPTY, EMPTY, [EMPTY]),
    ]
    for old, new, old_root, new_root, proof in refused:
        assert not merkle.verify_consistency(old, new, old_root, new_root, proof)
    assert merkle.verify_consistency(0, 0, one, one, [])
    assert merkle.verify_consistency(1, 1, two, two, [])


def test_only_the_empty_root_is_consistent_as_a_tree_of_size_zero() -> None:
    # Stricter than transparency-dev, which accepts any old root for size 0.
    assert merkle.verify_consistency(0, 1, EMPTY, CT_ROOTS[1], [])
    assert not merkle.verify_consistency(0, 1, b"don't care 1", CT_ROOTS[1], [])


# --- Properties at every size. ---


def test_the_root_of_every_size_up_to_300_is_the_rfc_mth_from_one_request() -> None:
    for size in range(MAX_LEAVES + 1):
        store = CountingStore(PERFECT)
        assert merkle.root(size, store.fetch) == mth(ENTRIES[:size]) == mth_of(0, size)
        assert store.requested == set(merkle.perfect_pieces(0, size))
        assert len(store.requested) == size.bit_count()
        assert len(store.requests) == (1 if size else 0)


@pytest.mark.parametrize("size", range(1, 65))
def test_every_inclusion_proof_is_the_rfc_path_verifies_and_fails_after_any_one_change(
    size: int,
) -> None:
    for index in range(size):
        check_inclusion(index, size, inclusion_probes(index, size))


@pytest.mark.parametrize("size", range(1, 65))
def test_an_inclusion_proof_never_verifies_for_another_leaf_of_the_same_tree(size: int) -> None:
    root = mth_of(0, size)
    for index in range(size):
        path, leaf = reference_path(index, size), ref_leaf(ENTRIES[index])
        for other in range(size):
            assert merkle.verify_inclusion(leaf, other, size, path, root) is (other == index)
            if other != index:
                other_leaf = ref_leaf(ENTRIES[other])
                assert not merkle.verify_inclusion(other_leaf, index, size, path, root)


@pytest.mark.parametrize("new", range(65))
def test_every_consistency_proof_is_the_rfc_proof_verifies_and_fails_after_any_one_change(
    new: int,
) -> None:
    for old in range(new + 1):
        check_consistency(old, new, consistency_probes(old, new))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_inclusion_proofs_hold_at_any_size_up_to_300(data: st.DataObject) -> None:
    size = data.draw(st.integers(1, MAX_LEAVES), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    others = data.draw(
        st.lists(st.tuples(st.integers(-1, 2 * size), st.integers(0, 2 * size + 1)), max_size=8),
        label="read as (index, size)",
    )
    check_inclusion(index, size, {*inclusion_probes(index, size), *others} - {(index, size)})


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_consistency_proofs_hold_between_any_sizes_up_to_300(data: st.DataObject) -> None:
    new = data.draw(st.integers(0, MAX_LEAVES), label="new")
    old = data.draw(st.integers(0, new), label="old")
    others = data.draw(
        st.lists(st.tuples(st.integers(-1, 2 * new), st.integers(0, 2 * new + 1)), max_size=8),
        label="read as (old, new)",
    )
    check_consistency(old, new, {*consistency_probes(old, new), *others} - {(old, new)})


def test_the_size_oracle_accepts_only_true_readings_of_the_published_proofs() -> None:
    # The oracle above decides which other sizes a proof may be read under; it must agree with
    # transparency-dev's probes (verify_test.go corruptInclusionProof / corruptConsistencyProof),
    # every one of which is refused for the published proofs.
    for index, size, _ in CT_INCLUSION[1:]:
        assert inclusion_reads_as(index, size, index, size)
        for other_index, other_size in (
            (index - 1, size),
            (index + 1, size),
            (index ^ 2, size),
            (index, size * 2),
            (index, size // 2),
        ):
            assert not inclusion_reads_as(index, size, other_index, other_size)
    for old, new, _ in CT_CONSISTENCY[1:]:
        assert consistency_reads_as(old, new, old, new)
        for other_old, other_new in (
            (old - 1, new),
            (old + 1, new),
            (old ^ 2, new),
            (old, new * 2),
            (old, new // 2),
        ):
            assert not consistency_reads_as(old, new, other_old, other_new)


def test_a_proof_for_one_size_can_verify_under_another_only_as_the_same_computation() -> None:
    # Proof of leaf 0 in a tree of 5: [leaf 1, MTH(D[2:4]), leaf 4]. Read as a tree of 6 it
    # hashes the very same nodes, so it verifies; a verifier learns sizes from checkpoints.
    path, leaf, root = reference_path(0, 5), ref_leaf(ENTRIES[0]), mth_of(0, 5)
    assert inclusion_reads_as(0, 5, 0, 6)
    assert merkle.verify_inclusion(leaf, 0, 6, path, root)
    assert not merkle.verify_inclusion(leaf, 0, 9, path, root)


@pytest.mark.parametrize("size", [2, 3, 7, 8, 9, 64, 65, 100, 255, 256, 257, 300])
def test_proofs_fetch_at_most_two_log2_n_plus_two_nodes_in_a_single_request(size: int) -> None:
    for index in range(size):
        store = CountingStore(PERFECT)
        merkle.inclusion_path(index, size, store.fetch)
        assert_fetched_cheaply(store, size, expect_request=True)
    for old in range(1, size):
        store = CountingStore(PERFECT)
        merkle.consistency_path(old, size, store.fetch)
        assert_fetched_cheaply(store, size, expect_request=True)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_roots_and_proofs_over_arbitrary_entries_agree_with_the_rfc(data: st.DataObject) -> None:
    entries = data.draw(st.lists(st.binary(max_size=24), max_size=40), label="entries")
    frontier, stored = Frontier(), dict[Node, bytes]()
    for entry in entries:
        stored.update(((lv, i), h) for lv, i, h in frontier.append(merkle.leaf_hash(entry)))
    fetch = CountingStore(stored).fetch
    size = len(entries)
    assert merkle.root(size, fetch) == frontier.root() == mth(entries)
    if size:
        index = data.draw(st.integers(0, size - 1), label="index")
        path = merkle.inclusion_path(index, size, fetch)
        assert path == [mth(entries[s:e]) for s, e in path_ranges(index, 0, size)]
        assert merkle.verify_inclusion(
            merkle.leaf_hash(entries[index]), index, size, path, mth(entries)
        )
    old = data.draw(st.integers(0, size), label="old")
    proof = merkle.consistency_path(old, size, fetch)
    expected = [mth(entries[s:e]) for s, e in proof_ranges(old, 0, size)] if 0 < old < size else []
    assert proof == expected
    assert merkle.verify_consistency(old, size, mth(entries[:old]), mth(entries), proof)


# --- Bad requests and missing nodes. ---


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 3), (-1, 4)])
def test_an_inclusion_path_for_a_leaf_outside_the_tree_is_refused(index: int, size: int) -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_path(index, size, CountingStore(PERFECT).fetch)
    assert not merkle.verify_inclusion(ref_leaf(b"x"), index, size, [], EMPTY)


@pytest.mark.parametrize(("old", "new"), [(1, 0), (9, 8), (-1, 4)])
def test_a_consistency_path_backwards_or_from_below_zero_is_refused(old: int, new: int) -> None:
    with pytest.raises(ValueError):
        merkle.consistency_path(old, new, CountingStore(PERFECT).fetch)
    assert not merkle.verify_consistency(old, new, EMPTY, EMPTY, [])


def test_a_proof_needing_a_node_the_store_lacks_is_a_lookup_error_not_a_wrong_answer() -> None:
    def lacking(node: Node) -> CountingStore:
        return CountingStore({key: h for key, h in PERFECT.items() if key != node})

    with pytest.raises(LookupError):
        merkle.inclusion_path(0, 8, lacking((2, 1)).fetch)
    with pytest.raises(LookupError):
        merkle.consistency_path(3, 8, lacking((2, 1)).fetch)
    with pytest.raises(LookupError):
        merkle.root(7, lacking((1, 2)).fetch)


# --- Perfect pieces and the frontier. ---


def test_a_prefix_is_made_of_one_perfect_piece_per_set_bit_largest_first() -> None:
    for size in range(MAX_LEAVES + 1):
        pieces = merkle.perfect_pieces(0, size)
        levels = [level for level in range(size.bit_length()) if size >> level & 1]
        assert [level for level, _ in pieces] == sorted(levels, reverse=True)
        start = 0
        for level, index in pieces:
            assert index << level == start
            start += 1 << level
        assert start == size


def test_perfect_pieces_refuse_a_range_that_is_no_right_edge_of_an_rfc_tree() -> None:
    with pytest.raises(ValueError):
        merkle.perfect_pieces(1, 3)
    assert merkle.perfect_pieces(4, 7) == [(1, 2), (0, 6)]


def test_the_frontier_hands_out_each_perfect_node_once_as_it_completes_leaf_first() -> None:
    frontier, stored = Frontier(), dict[Node, bytes]()
    assert frontier.root() == EMPTY
    for size in range(1, len(ENTRIES) + 1):
        completed = frontier.append(ref_leaf(ENTRIES[size - 1]))
        expected = [
            (level, (size >> level) - 1)
            for level in range(size.bit_length())
            if size % (1 << level) == 0
        ]
        assert [(level, index) for level, index, _ in completed] == expected
        for level, index, hash_ in completed:
            assert (level, index) not in stored
            assert hash_ == PERFECT[(level, index)] == mth_of(index << level, (index + 1) << level)
            stored[(level, index)] = hash_
        assert frontier.size == size
        assert frontier.root() == mth_of(0, size) == merkle.root(size, CountingStore(stored).fetch)
    assert stored == PERFECT


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_a_frontier_rebuilt_from_stored_nodes_continues_like_one_built_leaf_by_leaf(
    data: st.DataObject,
) -> None:
    size = data.draw(st.integers(0, MAX_LEAVES - 1), label="rebuilt at")
    until = data.draw(st.integers(size, MAX_LEAVES), label="continued to")
    grown, stored = Frontier(), dict[Node, bytes]()
    for entry in ENTRIES[:size]:
        stored.update(((lv, i), h) for lv, i, h in grown.append(ref_leaf(entry)))
    store = CountingStore(stored)
    rebuilt = Frontier(size, store.fetch)
    assert store.requested == set(merkle.perfect_pieces(0, size))
    assert len(store.requests) == (1 if size else 0)
    assert rebuilt.size == grown.size == size
    assert rebuilt.root() == grown.root() == mth_of(0, size)
    for n in range(size, until):
        assert rebuilt.append(ref_leaf(ENTRIES[n])) == grown.append(ref_leaf(ENTRIES[n]))
        assert rebuilt.root() == grown.root() == mth_of(0, n + 1)


def test_rebuilding_a_frontier_without_its_stored_nodes_is_a_lookup_error() -> None:
    store = CountingStore({key: h for key, h in PERFECT.items() if key != (0, 6)})
    with pytest.raises(LookupError):
        Frontier(7, store.fetch)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_extending_by_many_leaves_at_once_completes_the_nodes_one_at_a_time_would(
    data: st.DataObject,
) -> None:
    start = data.draw(st.integers(0, 100), label="rebuilt at")
    batches = data.draw(st.lists(st.integers(0, 30), max_size=6), label="batch sizes")
    grown = Frontier(start, CountingStore(PERFECT).fetch)
    extended = Frontier(start, CountingStore(PERFECT).fetch)
    size = start
    for count in batches:
        leaves = [ref_leaf(entry) for entry in ENTRIES[size : size + count]]
        appended = [node for leaf in leaves for node in grown.append(leaf)]
        runs = extended.extend(leaves)
        assert [level for level, _, _ in runs] == list(range(len(runs)))
        assert all(hashes for _, _, hashes in runs)
        completed = [
            (level, first + n, hash_)
            for level, first, hashes in runs
            for n, hash_ in enumerate(hashes)
        ]
        assert sorted(completed) == sorted(appended)
        assert all(PERFECT[(level, index)] == hash_ for level, index, hash_ in completed)
        size += count
        assert extended.size == grown.size == size
        assert extended.root() == grown.root() == mth_of(0, size)
    assert extended.append(ref_leaf(ENTRIES[size])) == grown.append(ref_leaf(ENTRIES[size]))
