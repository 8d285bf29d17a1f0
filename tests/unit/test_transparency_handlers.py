"""The decision log's handlers with an in-memory repository: appending once per event, signed
heads, and proofs the standalone verifier accepts."""
from __future__ import annotations

import base64

import pytest

from services.common import merkle
from services.common.entrypoints import events_module
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.transparency import handlers
from services.transparency.repository import LogRepository
from services.transparency.settings import load_settings
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, page_of, run
from tests.unit.test_merkle import V


class FakeLogRepository(FakeRepository, LogRepository):
    def __init__(self, alias="transparency"):
        super().__init__(alias)
        self.leaves, self.heads = {}, {}
        self._tree = merkle.MerkleTree()

    def tree(self):
        while self._tree.size in self.leaves:
            self._tree.append(self.leaves[self._tree.size].entry_json.encode())
        return self._tree

    def leaf_for_event(self, event_id):
        return next((leaf for leaf in self.leaves.values() if leaf.event_id == event_id), None)

    def append(self, event_id, kind, subjects, entry_json, now):
        existing = self.leaf_for_event(event_id)
        if existing is not None:
            return existing
        from services.transparency.models import LogLeaf

        leaf = LogLeaf(leaf_index=len(self.leaves), event_id=event_id, kind=kind,
                       subjects=subjects, entry_json=entry_json, logged_at=now)
        self.leaves[leaf.leaf_index] = leaf
        return leaf

    def leaf(self, index):
        return self.leaves.get(index)

    def leaves_about(self, subject, size, after):
        return page_of([x for x in self.leaves.values() if subject in x.subjects],
                       "leaf_index", size, after)

    def newest_head(self):
        return self.heads[max(self.heads)] if self.heads else None

    def head(self, tree_size):
        return self.heads.get(tree_size)

    def save_head(self, head):
        self.heads.setdefault(head.tree_size, head)


@pytest.fixture
def uow():
    return FakeUnitOfWork(FakeLogRepository(), None, FakeClock())


@pytest.fixture
def settings():
    return load_settings({})


def filed(n: int):
    event = events_module("filing").InstitutionFiled(institution_id=f"X{n}")
    event.meta.event_id = f"event-{n}"
    event.receipt.institution_name = f"第{n}中心"
    event.receipt.filing_code = f"S{n}"
    return event


def log(uow, settings, event, producer="filing", kind="InstitutionFiled"):
    uow.begin()
    return handlers.record_decision(producer, kind)(event, uow, FakeClock(), settings)


def anyone():
    return caller("regulator")


def test_each_decision_is_appended_once_and_the_head_is_signed(uow, settings):
    assert log(uow, settings, filed(1)) == {"leaf_index": 0}
    assert log(uow, settings, filed(2)) == {"leaf_index": 1}
    assert log(uow, settings, filed(1)) == {"leaf_index": 0}  # redelivered: the same leaf
    assert len(uow.repo.leaves) == 2 and max(uow.repo.heads) == 2
    issued = events_module("certificates").CertificatesIssued(batch_id="b")
    issued.meta.event_id = "not-a-decision"
    assert log(uow, settings, issued, "certificates", "CertificatesIssued") is None


def test_proofs_verify_with_the_head_and_the_key_only(uow, settings):
    for n in range(7):
        log(uow, settings, filed(n))
    clock = FakeClock()
    head = run(handlers.get_log_head, uow, clock, settings, {}, anyone())
    root = base64.b64decode(head["head"]["root_hash"])
    for index in range(7):
        proof = run(handlers.get_inclusion_proof, uow, clock, settings,
                    {"leaf_index": str(index)}, anyone())
        V.verify_inclusion(proof["entry"]["entry_json"].encode(), index, 7,
                           [base64.b64decode(p) for p in proof["audit_path"]], root)
    old = run(handlers.get_log_head, uow, clock, settings, {"tree_size": "3"}, anyone())
    consistency = run(handlers.get_consistency_proof, uow, clock, settings,
                      {"first_tree_size": "3"}, anyone())
    V.verify_consistency(3, 7, base64.b64decode(old["head"]["root_hash"]), root,
                         [base64.b64decode(p) for p in consistency["proof"]])


def test_what_cannot_be_proven_is_refused(uow, settings):
    log(uow, settings, filed(1))
    clock = FakeClock()
    with pytest.raises(FailedPrecondition):
        run(handlers.get_inclusion_proof, uow, clock, settings, {"leaf_index": "5"}, anyone())
    with pytest.raises(NotFound):
        run(handlers.get_log_head, uow, clock, settings, {"tree_size": "9"}, anyone())
    with pytest.raises(InvalidArgument):
        run(handlers.get_consistency_proof, uow, clock, settings, {"first_tree_size": "0"},
            anyone())
    with pytest.raises(InvalidArgument):
        run(handlers.list_log_entries, uow, clock, settings, {}, anyone())


def test_entries_are_found_by_subject(uow, settings):
    for n in (1, 2, 1):
        log(uow, settings, filed(n))
    answer = run(handlers.list_log_entries, uow, FakeClock(), settings,
                 {"subject": "institution:X2"}, anyone())
    assert [e["kind"] for e in answer["entries"]] == ["filing.InstitutionFiled"]
    assert answer["head"]["tree_size"] == "2"
