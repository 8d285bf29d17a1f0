"""Every uniqueness the rules rely on is declared in the models and enforced by the database
itself: a duplicate is refused by the server even when it is written behind the code's back
(raw inserts, a second writer), and a worker creates every declared index when it starts."""
from __future__ import annotations

import pytest
from pymongo.errors import DuplicateKeyError

from services.common.mongo import connect, disconnect, ensure_indexes
from services.common.spec import registry


@pytest.fixture
def service_db(databases):
    """connect(service) -> its fresh database, connected and indexed as a worker start does."""
    connected = []

    def make(service: str):
        disconnect(service)
        connect(service, databases.uri(service))
        ensure_indexes(service)
        connected.append(service)
        import mongoengine

        return mongoengine.get_db(service)

    yield make
    for alias in connected:
        disconnect(alias)


def key_of(spec_fields) -> list[tuple]:
    return [(name, direction) for name, direction in spec_fields]


@pytest.mark.parametrize("service", list(registry()))
def test_every_declared_index_exists_on_the_server_as_declared(service, service_db):
    db = service_db(service)
    for document in registry()[service].document_classes():
        on_server = {tuple(map(tuple, info["key"])): info
                     for info in db[document._get_collection_name()].index_information().values()}
        for declared in document._meta["index_specs"]:
            key = tuple(key_of(declared["fields"]))
            assert key in on_server, f"{document.__name__}: index {key} missing"
            info = on_server[key]
            assert bool(info.get("unique")) == bool(declared.get("unique")), \
                f"{document.__name__} {key}: unique is {info.get('unique')}"
            assert bool(info.get("sparse")) == bool(declared.get("sparse")), \
                f"{document.__name__} {key}: sparse is {info.get('sparse')}"


def test_a_certificate_number_is_never_stored_twice(service_db):
    db = service_db("certificates")
    number = "S000041000001264000001"
    db.certificates.insert_one({"_id": "key-1", "certificate_number": number})
    with pytest.raises(DuplicateKeyError) as refused:
        db.certificates.insert_one({"_id": "key-2", "certificate_number": number})
    assert "certificate_number" in str(refused.value)
    assert db.certificates.count_documents({"certificate_number": number}) == 1


def test_one_certificate_per_holder_occupation_level_and_session(service_db):
    """The issue key (institution, session, holder, occupation, level) is the _id."""
    db = service_db("certificates")
    db.certificates.insert_one({"_id": "X|S|ID|4-10-01-02|4", "certificate_number": "N1"})
    with pytest.raises(DuplicateKeyError):
        db.certificates.insert_one({"_id": "X|S|ID|4-10-01-02|4", "certificate_number": "N2"})


def test_a_bulk_insert_stores_the_rest_and_refuses_the_duplicate_number(service_db):
    """What the batch upload relies on: an unordered insert_many writes every row it can and
    the server names the one it refused."""
    from pymongo.errors import BulkWriteError

    db = service_db("certificates")
    db.certificates.insert_one({"_id": "k0", "certificate_number": "N1"})
    with pytest.raises(BulkWriteError) as refused:
        db.certificates.insert_many([{"_id": "k1", "certificate_number": "N1"},
                                     {"_id": "k2", "certificate_number": "N2"}], ordered=False)
    assert [e["index"] for e in refused.value.details["writeErrors"]] == [0]
    assert sorted(d["_id"] for d in db.certificates.find()) == ["k0", "k2"]


def test_a_filing_code_belongs_to_one_institution(service_db):
    db = service_db("filing")
    db.institutions.insert_one({"_id": "A", "filing_code": "S000041000001"})
    with pytest.raises(DuplicateKeyError):
        db.institutions.insert_one({"_id": "B", "filing_code": "S000041000001"})


def test_one_open_application_per_institution_and_one_per_request_id(service_db):
    """A created aggregate's id is derived from its request (services/common/idempotency.py
    new_id), so the same request id again collides on the primary key."""
    from services.common.idempotency import RequestRecord, new_id

    db = service_db("filing")
    first = new_id(RequestRecord("key-of-I-r1", "digest", "r1"), 0)
    db.applications.insert_one({"_id": first, "open_key": "I"})
    with pytest.raises(DuplicateKeyError):  # a second open application
        db.applications.insert_one({"_id": new_id(RequestRecord("key-of-I-r2", "d", "r2"), 0),
                                    "open_key": "I"})
    with pytest.raises(DuplicateKeyError):  # the same request id again
        db.applications.insert_one({"_id": new_id(RequestRecord("key-of-I-r1", "d", "r1"), 0)})
    # Closed applications carry no open_key: any number of them (the index is sparse).
    db.applications.insert_many([{"_id": "a4"}, {"_id": "a5"}])
    assert db.applications.count_documents({}) == 3


@pytest.mark.parametrize("service", list(registry()))
def test_an_event_is_marked_handled_once_and_a_counter_is_one_document(service, service_db):
    db = service_db(service)
    db.processed_events.insert_one({"_id": "handler:event-1"})
    with pytest.raises(DuplicateKeyError):
        db.processed_events.insert_one({"_id": "handler:event-1"})
    db.counters.insert_one({"_id": "serial", "value": 1})
    with pytest.raises(DuplicateKeyError):
        db.counters.insert_one({"_id": "serial", "value": 1})
