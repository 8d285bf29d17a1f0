"""One function per RPC, event and timer of the decision log."""
from __future__ import annotations

import base64
import logging

from google.protobuf import json_format

from services.common import merkle, paging
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.transparency import domain
from services.transparency.models import LogHead

log = logging.getLogger(__name__)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def head_view(head: LogHead, settings) -> dict:
    return {"tree_size": str(head.tree_size), "timestamp_ms": str(head.timestamp_ms),
            "root_hash": _b64(head.root_hash), "signature": _b64(head.signature),
            "log_id": _b64(settings.log_id)}


def entry_view(leaf, tree) -> dict:
    return {"leaf_index": str(leaf.leaf_index), "entry_json": leaf.entry_json,
            "leaf_hash": _b64(tree.leaf(leaf.leaf_index)), "kind": leaf.kind,
            "subjects": list(leaf.subjects)}


def sign_head(uow, clock, settings) -> LogHead | None:
    """Sign the tree as it is now, unless a head of this size exists."""
    tree = uow.repo.tree()
    newest = uow.repo.newest_head()
    if newest is not None and newest.tree_size >= tree.size:
        return newest
    timestamp_ms = int(clock.now().timestamp() * 1000)
    root = tree.root()
    head = LogHead(tree_size=tree.size, timestamp_ms=timestamp_ms, root_hash=root,
                   signature=merkle.sign_tree_head(settings.private_key, timestamp_ms,
                                                   tree.size, root))
    uow.repo.save_head(head)
    return head


# --- events -----------------------------------------------------------------------------------
def record_decision(producer: str, event_type: str):
    """The handler of one decision event: its entry appended (once), and a new head signed."""

    def handler(event, uow, clock, settings):
        payload = json_format.MessageToDict(event, preserving_proto_field_name=True)
        entry = domain.decision_entry(producer, event_type, payload)
        if entry is None:
            return None
        leaf = uow.repo.append(entry["event_id"], entry["kind"], entry["subjects"],
                               domain.canonical(entry), clock.now())
        sign_head(uow, clock, settings)
        log.info("logged %s as leaf %d", entry["kind"], leaf.leaf_index)
        return {"leaf_index": leaf.leaf_index}

    handler.__name__ = f"log_{producer}_{event_type}"
    return handler


def sweep(uow, clock, settings):
    """A head for leaves appended by a worker that stopped before signing."""
    sign_head(uow, clock, settings)


# --- RPCs -------------------------------------------------------------------------------------
def _size(request: dict, field: str) -> int:
    value = int(request.get(field) or 0)
    if value < 0:
        raise InvalidArgument(f"{field}: must not be negative")
    return value


def _head_at(uow, clock, settings, tree_size: int) -> LogHead:
    if tree_size == 0:
        head = sign_head(uow, clock, settings)  # an empty log has a signed empty head too
        return head
    head = uow.repo.head(tree_size)
    if head is None:
        raise NotFound(f"no head was signed at tree size {tree_size}; ask for the newest "
                       "(tree_size 0)", reason="HEAD_NOT_FOUND")
    return head


def get_log_head(cmd, uow, clock, settings):
    head = _head_at(uow, clock, settings, _size(cmd.request, "tree_size"))
    return {"head": head_view(head, settings), "public_key_pem": settings.public_key_pem}


def get_inclusion_proof(cmd, uow, clock, settings):
    index = _size(cmd.request, "leaf_index")
    head = _head_at(uow, clock, settings, _size(cmd.request, "tree_size"))
    if index >= head.tree_size:
        raise FailedPrecondition(f"leaf {index} is not in the tree of {head.tree_size}",
                                 reason="LEAF_NOT_IN_TREE", subject=f"leaf/{index}")
    tree = uow.repo.tree()
    leaf = uow.repo.leaf(index)
    return {"entry": entry_view(leaf, tree), "tree_size": str(head.tree_size),
            "audit_path": [_b64(h) for h in tree.inclusion_proof(index, head.tree_size)],
            "head": head_view(head, settings)}


def get_consistency_proof(cmd, uow, clock, settings):
    first = _size(cmd.request, "first_tree_size")
    head = _head_at(uow, clock, settings, _size(cmd.request, "second_tree_size"))
    if not 1 <= first <= head.tree_size:
        raise InvalidArgument(f"first_tree_size: must be 1-{head.tree_size} (the second head's "
                              "size)")
    tree = uow.repo.tree()
    return {"first_tree_size": str(first), "second_tree_size": str(head.tree_size),
            "proof": [_b64(h) for h in tree.consistency_proof(first, head.tree_size)],
            "head": head_view(head, settings)}


def list_log_entries(cmd, uow, clock, settings):
    subject = (cmd.request.get("subject") or "").strip()
    if not subject:
        raise InvalidArgument("subject: required, e.g. institution:<id> or certificate:<number>")
    page = paging.page(cmd, clock.now())
    rows, last = uow.repo.leaves_about(subject, page.size, page.after)
    tree = uow.repo.tree()
    head = sign_head(uow, clock, settings)
    return {"entries": [entry_view(leaf, tree) for leaf in rows if leaf.leaf_index < tree.size],
            "page": page.response(last), "head": head_view(head, settings)}
