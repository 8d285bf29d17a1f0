"""The log's storage: leaves and signed heads, and the in-memory Merkle tree built from them.

The tree is the process's: each worker keeps the tree of the leaves it has read, and catches
up from the database (leaves past its size, in index order, their hashes recomputed from the
stored text) before it appends or proves. A leaf is written with the next index as its
primary key: a worker that lost the race for that index reads the winner's leaf and tries the
next one, so the log stays one sequence whatever the number of workers.
"""
from __future__ import annotations

import threading

from pymongo.errors import DuplicateKeyError

from services.common import merkle
from services.common.repository import keyset_page
from services.common.uow import Repository
from services.transparency.models import LogHead, LogLeaf

_TREES: dict[str, merkle.MerkleTree] = {}
_LOCK = threading.Lock()  # green under the worker's eventlet patching


class LogRepository(Repository):
    def tree(self) -> merkle.MerkleTree:
        """This process's tree, caught up with every leaf stored."""
        with _LOCK:
            key = self.db().name
            tree = _TREES.get(key)
            if tree is None:
                tree = _TREES[key] = merkle.MerkleTree()
            for leaf in LogLeaf.objects(leaf_index__gte=tree.size).order_by(
                    "leaf_index").only("leaf_index", "entry_json"):
                if leaf.leaf_index != tree.size:
                    raise RuntimeError(f"log leaf {tree.size} is missing (found "
                                       f"{leaf.leaf_index})")
                tree.append(leaf.entry_json.encode("utf-8"))
            return tree

    def leaf_for_event(self, event_id: str) -> LogLeaf | None:
        return LogLeaf.objects(event_id=event_id).first()

    def append(self, event_id: str, kind: str, subjects: list[str], entry_json: str,
               now) -> LogLeaf:
        """The leaf of this event: appended at the next index, or the one already there."""
        while True:
            index = self.tree().size
            leaf = LogLeaf(leaf_index=index, event_id=event_id, kind=kind, subjects=subjects,
                           entry_json=entry_json, logged_at=now)
            try:
                leaf.save(force_insert=True)
                return leaf
            except Exception as exc:  # mongoengine wraps DuplicateKeyError as NotUniqueError
                if not isinstance(exc, DuplicateKeyError) and \
                        type(exc).__name__ != "NotUniqueError":
                    raise
                existing = self.leaf_for_event(event_id)
                if existing is not None:
                    return existing  # a redelivery raced this one
                # Another worker took this index: catch up and take the next.

    def leaf(self, index: int) -> LogLeaf | None:
        return LogLeaf.objects(leaf_index=index).first()

    def leaves_about(self, subject: str, size: int, after: int | None) -> tuple[list, int | None]:
        return keyset_page(LogLeaf.objects(subjects=subject), "leaf_index", size, after)

    # --- heads ----------------------------------------------------------------------------
    def newest_head(self) -> LogHead | None:
        return LogHead.objects.order_by("-tree_size").first()

    def head(self, tree_size: int) -> LogHead | None:
        return LogHead.objects(tree_size=tree_size).first()

    def save_head(self, head: LogHead) -> None:
        try:
            head.save(force_insert=True)
        except Exception as exc:
            if type(exc).__name__ != "NotUniqueError" and not isinstance(exc, DuplicateKeyError):
                raise  # another worker signed this size first: its head stands
