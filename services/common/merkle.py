"""An append-only Merkle tree as RFC 6962 (Certificate Transparency) defines it, and its signed
tree heads.

- leaf hash `SHA-256(0x00 || leaf)`, node hash `SHA-256(0x01 || left || right)`, the root of
  the empty tree `SHA-256("")` (RFC 6962 §2.1);
- inclusion proofs (the audit path PATH(m, D[n]), §2.1.1) and consistency proofs between two
  sizes (PROOF(m, D[n]), §2.1.2), for any size up to the current one;
- the signed tree head: Ed25519 over RFC 6962's TreeHeadSignature (§3.5: version v1,
  signature type tree_hash, timestamp in ms, tree size, root hash), with the log id of
  §3.2 (SHA-256 of the public key's DER SubjectPublicKeyInfo).

Every complete subtree's hash is kept (level k holds the subtrees of 2^k leaves), so an
append costs one leaf hash and, on average, one node hash, and a proof reads O(log n) stored
hashes; the hash of a range at the right edge (an incomplete subtree) is computed once and
kept, since leaves never change. Checking proofs is deliberately not here: the standalone
verifier (deploy/verify_log.py) does it with RFC 9162's algorithms and nothing of vocreg, and
the tests check this module's proofs with it.

Standard library and `cryptography` only: no vocreg imports.
"""
from __future__ import annotations

import hashlib
import struct

_sha256 = hashlib.sha256
EMPTY_ROOT = _sha256(b"").digest()
_RANGE_CACHE_LIMIT = 4096


def leaf_hash(leaf: bytes) -> bytes:
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1): where RFC 6962 splits D[n]."""
    return 1 << ((n - 1).bit_length() - 1)


class MerkleTree:
    def __init__(self):
        self._levels: list[list[bytes]] = [[]]
        self._ranges: dict[tuple[int, int], bytes] = {}
        self._split_cache: tuple[int, list] | None = None

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> int:
        """Append a leaf (its data); its index."""
        return self.append_hash(_sha256(b"\x00" + leaf).digest())

    def append_hash(self, hashed: bytes) -> int:
        """Append a leaf by its leaf hash (already `leaf_hash(data)`); its index."""
        levels = self._levels
        level = levels[0]
        level.append(hashed)
        index = len(level) - 1
        count, k = len(level), 0
        while not count & 1:  # a left sibling completes a subtree one level up
            k += 1
            if k == len(levels):
                levels.append([])
            upper = levels[k]
            upper.append(_sha256(b"\x01" + level[-2] + level[-1]).digest())
            level, count = upper, len(upper)
        return index

    def leaf(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        return self._levels[0][index]

    def _range(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range of the tree (end <= size)."""
        n = end - start
        if n & (n - 1) == 0:  # a complete, aligned subtree: stored
            k = n.bit_length() - 1
            return self._levels[k][start >> k]
        cached = self._ranges.get((start, end))
        if cached is None:
            k = _split(n)
            cached = node_hash(self._range(start, start + k), self._range(start + k, end))
            if len(self._ranges) >= _RANGE_CACHE_LIMIT:
                self._ranges.clear()
            self._ranges[(start, end)] = cached
        return cached

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._range(0, size)

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ValueError(f"tree size {size} is not between 0 and {self.size}")

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]): the audit path from the leaf up, RFC 6962 §2.1.1."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of {size}")
        upper = []  # siblings met while the range is not a complete subtree, root first
        start = end = 0
        for start, middle, end, left, right in self._splits(size):
            if index < middle:
                upper.append(right)
                end = middle
                break
            upper.append(left)
            start = middle
        else:
            end = size
        levels = self._levels
        path = [levels[j][(index >> j) ^ 1] for j in range((end - start).bit_length() - 1)]
        path.extend(reversed(upper))
        return path

    def _splits(self, size: int) -> list[tuple]:
        """Where RFC 6962 splits D[size] until what is left is a complete subtree: per split
        (start, middle, end, MTH(D[start:middle]), MTH(D[middle:end])), kept for the last size
        asked (proofs are asked against the same head, over and over)."""
        cached = self._split_cache
        if cached is not None and cached[0] == size:
            return cached[1]
        splits = []
        start, end = 0, size
        while (end - start) & (end - start - 1):
            middle = start + _split(end - start)
            splits.append((start, middle, end, self._range(start, middle),
                           self._range(middle, end)))
            start = middle
        self._split_cache = (size, splits)
        return splits

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """PROOF(old, D[new]), RFC 6962 §2.1.2: that the tree of `old` leaves is a prefix of
        the tree of `new`. Empty when old == new, or old == 0 (any tree extends the empty
        one)."""
        new = self.size if new is None else new
        self._check_size(new)
        if not 0 <= old <= new:
            raise ValueError(f"tree size {old} is not between 0 and {new}")
        if old in (0, new):
            return []
        proof = []
        start, end, m, whole = 0, new, old, True
        while m != end - start:
            k = _split(end - start)
            if m <= k:
                proof.append(self._range(start + k, end))
                end = start + k
            else:
                proof.append(self._range(start, start + k))
                start, m, whole = start + k, m - k, False
        if not whole:
            proof.append(self._range(start, end))
        proof.reverse()
        return proof


# --- signed tree heads ------------------------------------------------------------------------
def tree_head_bytes(timestamp_ms: int, tree_size: int, root: bytes) -> bytes:
    """RFC 6962 §3.5 TreeHeadSignature: version v1 (0), signature type tree_hash (1), uint64
    timestamp, uint64 tree_size, the 32-byte root."""
    if len(root) != 32:
        raise ValueError("the root hash is 32 bytes")
    return struct.pack(">BBQQ", 0, 1, timestamp_ms, tree_size) + root


def public_key_der(private_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def log_id(private_key) -> bytes:
    """RFC 6962 §3.2: SHA-256 of the log's public key (DER SubjectPublicKeyInfo)."""
    return _sha256(public_key_der(private_key)).digest()


def sign_tree_head(private_key, timestamp_ms: int, tree_size: int, root: bytes) -> bytes:
    """The Ed25519 signature of the tree head."""
    return private_key.sign(tree_head_bytes(timestamp_ms, tree_size, root))
