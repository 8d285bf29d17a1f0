"""Reuse detection: normalised text, shingles, MinHash signatures and an LSH Ensemble index for
containment queries ("how much of this course is found in which stored course").

Seed 004 二(一)1(2): no content or material reused across courses; 二(一)4(1): a rejected
course uploaded again unchanged, or a permanently rejected one repackaged.

The pieces, and why each:
- Text is normalised (NFKC, case folded, only letters and digits kept), so re-spacing,
  punctuation, full-width forms or letter case do not hide a copy.
- Shingles are runs of SHINGLE characters (Chinese has no spaces: characters, not words),
  hashed to 32 bits with a polynomial hash computed by numpy over the whole text at once.
- MinHash (datasketch, scheme "affine32") of the shingle set: NUM_PERM values per course.
- Containment |Q ∩ X| / |Q| (the share of the new course found in a stored one) is what reuse
  means; Jaccard would miss a short course copied into a long one. The LSH Ensemble (Zhu et
  al., VLDB 2016) answers containment queries: stored sets are partitioned by size, and each
  partition is probed with the banding (b, r) that is optimal for the threshold at that size
  ratio (datasketch's optimiser and partitioner). datasketch's own MinHashLSHEnsemble keeps
  each band in a Python dict (measured here: 10,000 courses took 7-96 s to index and
  0.8 GB); this index keeps the band keys of a partition in one sorted numpy array and looks
  a query's bands up with one searchsorted call: 10,000 courses index in about a second in
  about 30 MB.
- The index is static once built; courses stored since are kept in a small "recent" block
  compared one by one (vectorised) until the next rebuild.
- Candidates are verified exactly on the stored shingle sets: the share reported is exact,
  the index only decides whom to look at.
"""
from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import numpy as np

# The signature scheme: stored signatures are only comparable within one scheme.
SIGNATURE_SCHEME = "nfkc-shingle5-minhash128-affine32-v1"
SHINGLE = 5
NUM_PERM = 128
MINHASH_SEED = 1
# LSH Ensemble: partitions by set size, the largest r it may choose, and the weights of false
# positives and false negatives in its optimiser (recall first: candidates are verified).
NUM_PARTITIONS = 16
MAX_ROWS_PER_BAND = 8
FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT = 0.3, 0.7
# Courses stored since the last build are compared one by one; past this many, rebuild.
REBUILD_AFTER = 500

_U64 = np.uint64
_MIX1, _MIX2 = _U64(0x9E3779B97F4A7C15), _U64(0xBF58476D1CE4E5B9)
_POLY = _U64(1_000_003)


def normalise(text: str) -> str:
    """NFKC, case folded, letters and digits only (whitespace, punctuation, symbols dropped)."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    return "".join(c for c in text if unicodedata.category(c)[0] in "LN")


def text_hash(text: str) -> str:
    """SHA-256 of the normalised text: the same text however it is spaced or punctuated."""
    return hashlib.sha256(normalise(text).encode()).hexdigest()


def _finalise(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(31))
    h = h * _MIX2
    return h ^ (h >> _U64(29))


def shingle_hashes(normalised: str) -> np.ndarray:
    """The sorted distinct 32-bit hashes of the text's SHINGLE-character runs (empty for a
    text shorter than one shingle)."""
    codes = np.frombuffer(normalised.encode("utf-32-le"), dtype=np.uint32).astype(_U64)
    n = len(codes) - SHINGLE + 1
    if n <= 0:
        return np.empty(0, dtype=np.uint32)
    h = np.zeros(n, dtype=_U64)
    with np.errstate(over="ignore"):
        for j in range(SHINGLE):
            h = h * _POLY + codes[j:j + n]
        h = _finalise(h)
    return np.unique((h >> _U64(32)).astype(np.uint32))


def _identity(value):
    return value


@cache
def _permutations():
    from datasketch import MinHash

    return MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, hashfunc=_identity).permutations


def minhash_values(shingles: np.ndarray) -> np.ndarray:
    """The MinHash of a shingle set (datasketch's affine32 scheme, the shingle hashes as its
    input hashes): NUM_PERM uint32 values."""
    from datasketch import MinHash

    sketch = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED, hashfunc=_identity,
                     permutations=_permutations(), scheme="affine32")
    if len(shingles):
        sketch.update_batch(shingles.tolist())
    return np.asarray(sketch.hashvalues, dtype=np.uint32)


@dataclass(frozen=True)
class Signature:
    """A course's text as the reuse check knows it."""

    size: int                  # distinct shingles
    minhash: np.ndarray        # NUM_PERM uint32
    shingles: np.ndarray       # sorted distinct uint32 shingle hashes

    def to_bytes(self) -> tuple[bytes, bytes]:
        return self.minhash.astype("<u4").tobytes(), self.shingles.astype("<u4").tobytes()

    @classmethod
    def from_bytes(cls, minhash: bytes, shingles: bytes) -> Signature:
        values = np.frombuffer(shingles, dtype="<u4").astype(np.uint32)
        return cls(len(values), np.frombuffer(minhash, dtype="<u4").astype(np.uint32), values)


def signature(text: str) -> Signature | None:
    """The signature of a course's text; None when it is too short to have one."""
    shingles = shingle_hashes(normalise(text))
    if len(shingles) == 0:
        return None
    return Signature(len(shingles), minhash_values(shingles), shingles)


def containment(query: np.ndarray, stored: np.ndarray) -> float:
    """Exact share of the query's shingles found in the stored set (both sorted, distinct)."""
    if len(query) == 0:
        return 0.0
    return float(np.isin(query, stored, assume_unique=True).sum()) / len(query)


def estimated_containment(q_minhash: np.ndarray, q_size: int, minhashes: np.ndarray,
                          sizes: np.ndarray) -> np.ndarray:
    """Containment of the query in each stored set, estimated from MinHash Jaccard and the set
    sizes: |Q ∩ X| = J (|Q| + |X|) / (1 + J)."""
    jaccard = (minhashes == q_minhash).mean(axis=1)
    return np.clip(jaccard * (q_size + sizes) / ((1.0 + jaccard) * q_size), 0.0, 1.0)


# --- the LSH Ensemble ----------------------------------------------------------------------
@cache
def ensemble_params(threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(size ratios x/q, optimal (b, r) at each) for a containment threshold, from datasketch's
    optimiser (its MinHashLSHEnsemble computes them on construction; one partition is enough
    to read them)."""
    from datasketch import MinHashLSHEnsemble

    probe = MinHashLSHEnsemble(threshold=threshold, num_perm=NUM_PERM, num_part=1,
                               m=MAX_ROWS_PER_BAND,
                               weights=(FALSE_POSITIVE_WEIGHT, FALSE_NEGATIVE_WEIGHT))
    return np.asarray(probe.xqs), np.asarray(probe.params, dtype=int)


def band_keys(minhashes: np.ndarray, r: int) -> np.ndarray:
    """(n, NUM_PERM // r) uint64 keys: band j of each row's values, mixed with j."""
    values = np.atleast_2d(minhashes).astype(_U64)
    bands = NUM_PERM // r
    blocks = values[:, :bands * r].reshape(len(values), bands, r)
    key = np.zeros((len(values), bands), dtype=_U64)
    with np.errstate(over="ignore"):
        for i in range(r):
            key = key * _MIX1 + blocks[:, :, i]
        key = key + (np.arange(bands, dtype=_U64) + _U64(1)) * _MIX2
        return _finalise(key)


class _Partition:
    """Courses of one size range: for each r, every band key of every course in one sorted
    array, with the row each key belongs to."""

    def __init__(self, keys: list, minhashes: np.ndarray, sizes: np.ndarray, rs: Iterable[int],
                 pause: Callable[[], None]):
        self.keys = keys
        self.upper = int(sizes.max())
        self.tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for r in sorted(set(int(r) for r in rs)):
            flat = band_keys(minhashes, r)
            rows = np.repeat(np.arange(len(keys), dtype=np.int32), flat.shape[1])
            flat = flat.ravel()
            order = np.argsort(flat, kind="stable")
            self.tables[r] = (flat[order], rows[order])
            pause()


class ContainmentIndex:
    """Stored courses' signatures, queried for those that contain at least `threshold` of a
    query course (LSH Ensemble over size partitions, plus the recent block)."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self.xqs, self.params = ensemble_params(threshold)
        self.partitions: list[_Partition] = []
        self.recent_keys: list = []
        self.recent_minhashes: list[np.ndarray] = []
        self.recent_sizes: list[int] = []
        self.removed: set = set()
        self.indexed: set = set()

    def __len__(self) -> int:
        return len(self.indexed - self.removed)

    def __contains__(self, key) -> bool:
        return key in self.indexed and key not in self.removed

    def _param(self, upper: int, size: int) -> tuple[int, int]:
        i = int(np.searchsorted(self.xqs, float(upper) / float(size), side="left"))
        b, r = self.params[min(i, len(self.params) - 1)]
        return int(b), int(r)

    def build(self, entries: list[tuple[object, np.ndarray, int]],
              pause: Callable[[], None] = lambda: None) -> None:
        """Index (key, minhash, size) entries, replacing whatever was indexed. `pause` is
        called between pieces of work (a worker yields to its other calls there)."""
        from datasketch.lshensemble_partition import optimal_partitions

        self.partitions, self.removed = [], set()
        self.recent_keys, self.recent_minhashes, self.recent_sizes = [], [], []
        entries = [e for e in entries if e[2] > 0]
        self.indexed = {e[0] for e in entries}
        if not entries:
            return
        entries.sort(key=lambda e: e[2])
        sizes = np.array([e[2] for e in entries])
        distinct, counts = np.unique(sizes, return_counts=True)
        bounds = optimal_partitions(distinct, counts, min(NUM_PARTITIONS, len(distinct)))
        rs = {int(r) for _, r in self.params}
        start = 0
        for _, upper in bounds:
            end = int(np.searchsorted(sizes, upper, side="right"))
            if end <= start:
                continue
            part = entries[start:end]
            partition = _Partition([e[0] for e in part], np.vstack([e[1] for e in part]),
                                   sizes[start:end], rs, pause)
            self.partitions.append(partition)
            start = end
        pause()

    def add(self, key, minhash: np.ndarray, size: int) -> None:
        """A course stored since the build (compared one by one until the next build)."""
        if size <= 0 or key in self:
            return
        self.removed.discard(key)
        self.indexed.add(key)
        self.recent_keys.append(key)
        self.recent_minhashes.append(np.asarray(minhash, dtype=np.uint32))
        self.recent_sizes.append(size)

    def remove(self, key) -> None:
        self.removed.add(key)

    @property
    def needs_rebuild(self) -> bool:
        return len(self.recent_keys) > REBUILD_AFTER or len(self.removed) > REBUILD_AFTER

    def candidates(self, minhash: np.ndarray, size: int) -> set:
        """Keys of stored courses that may contain at least `threshold` of the query."""
        found: set = set()
        keys_by_r: dict[int, np.ndarray] = {}
        for partition in self.partitions:
            b, r = self._param(partition.upper, size)
            if r not in keys_by_r:
                keys_by_r[r] = band_keys(minhash, r)[0]
            sorted_keys, rows = partition.tables[r]
            wanted = keys_by_r[r][:b]
            left = np.searchsorted(sorted_keys, wanted, side="left")
            right = np.searchsorted(sorted_keys, wanted, side="right")
            hit = right > left
            for lo, hi in zip(left[hit], right[hit], strict=True):
                found.update(partition.keys[int(i)] for i in rows[lo:hi])
        if self.recent_keys:
            estimates = estimated_containment(
                np.asarray(minhash, dtype=np.uint32), size, np.vstack(self.recent_minhashes),
                np.asarray(self.recent_sizes, dtype=float))
            # Looser than the threshold: the estimate is noisy, the verification exact.
            found.update(k for k, e in zip(self.recent_keys, estimates, strict=True)
                         if e >= self.threshold * 0.6)
        return found - self.removed


@dataclass(frozen=True)
class Match:
    key: object
    share: float          # of the query found in the stored course (exact)
    reverse_share: float  # of the stored course found in the query (exact)


def verify(query: Signature, stored: dict, threshold: float) -> list[Match]:
    """The candidates (key -> Signature) that really contain at least `threshold` of the
    query, largest share first."""
    found = []
    for key, sig in stored.items():
        share = containment(query.shingles, sig.shingles)
        if share >= threshold:
            found.append(Match(key, share, containment(sig.shingles, query.shingles)))
    found.sort(key=lambda m: (-m.share, str(m.key)))
    return found
