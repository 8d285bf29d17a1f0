"""The registry's documents (database alias "certificates"). Dates are ISO strings: they sort
as dates. Holder names and ID numbers are personal data: never logged, masked in public."""
from __future__ import annotations

import mongoengine as me

from services.certificates.public import COLLECTION
from services.common.storage import Aggregate

ALIAS = "certificates"


class Certificate(me.Document):
    """One certificate. Written in bulk (10,000 per batch), so not an Aggregate: the batch's
    Operation document carries the events, and each change here is one conditional
    update_many keyed on status, which cannot apply twice."""

    meta = {
        "db_alias": ALIAS,
        "collection": COLLECTION,  # the edge reads it too (public.py)
        "indexes": [
            # One certificate per number, enforced by the database. Numbers are unique by
            # construction too (one atomic counter per filing code, year and level, never
            # reused): the index is what refuses a number handed out twice by any other path
            # (a counter restored from a backup, a second writer), and what the public
            # verification looks numbers up by.
            {"fields": ["certificate_number"], "unique": True},
            # ListCertificates pages by number (keyset, services/common/repository.py): each
            # filter it serves has an index of its equality fields then the number, so the
            # page and the next one ("number > last seen") are one range of one index, on
            # MongoDB and on the local server alike (which uses an index only when it covers
            # the whole filter: tests/integration/test_list_indexes.py).
            ("institution_id", "certificate_number"),
            ("institution_id", "exam_session_id", "certificate_number"),
            ("institution_id", "status", "certificate_number"),
            ("holder_id_number", "certificate_number"),
            ("status", "certificate_number"),
            # A period pages by issue date then number (repository.py list_page). Never a
            # field after issued_on where issued_on is not the first: see list_page.
            ("institution_id", "issued_on"),
            ("issued_on", "certificate_number"),
            "batch_id",
            "operation_id",
        ],
    }

    # No second certificate for the same holder, occupation and level in a session: the key
    # of those (domain.issue_key) is the _id, so the database refuses a second one even
    # between two concurrent uploads, at the cost of a primary-key lookup.
    key = me.StringField(primary_key=True)
    certificate_number = me.StringField(required=True)
    institution_id = me.StringField(required=True)
    filing_code = me.StringField(required=True)
    issuer_name = me.StringField()
    exam_session_id = me.StringField(required=True)
    batch_id = me.StringField(required=True)
    holder_name = me.StringField(required=True)
    holder_id_number = me.StringField(required=True)
    occupation_code = me.StringField(required=True)
    occupation_name = me.StringField()
    skill_level = me.IntField(required=True)
    assessment_date = me.StringField(required=True)
    issued_on = me.StringField(required=True)
    late_reported = me.BooleanField(default=False)
    status = me.StringField(required=True)
    invalidation = me.DictField()
    # The invalidation or withdrawal that changed it (counts for its event come from here).
    operation_id = me.StringField()
    # Entries for what its status no longer shows (a void result restored on review).
    history = me.ListField(me.DictField())


class Operation(Aggregate):
    """A batch upload, an invalidation or a withdrawal: the record of what was asked and done,
    and the carrier of its event (services/common/bus.py).

    Written PENDING before the certificates change and DONE after, with the event whose counts
    are read back from the certificates themselves; the sweep finishes any PENDING one left by
    a crash, so the event is never lost and never counts what was not written."""

    meta = {
        "db_alias": ALIAS,
        "collection": "operations",
        "indexes": [("state", "started_at"), "institution_id"],
    }

    operation_id = me.StringField(primary_key=True)
    kind = me.StringField(required=True)  # issue | invalidate | withdraw
    state = me.StringField(required=True)  # PENDING | DONE
    started_at = me.DateTimeField(required=True)
    # The worker process running it (services/common/uow.py INSTANCE_ID): while it beats, a
    # retry of the same request waits; once it is gone, a retry or the sweep finishes it.
    owner = me.StringField()
    # A batch's issuer as filing gave it, so a retry that takes the batch over numbers the
    # rest without asking filing again.
    filing_code = me.StringField()
    issuer_name = me.StringField()
    actor = me.StringField(required=True)
    institution_id = me.StringField()
    # What the event needs besides the counts (session, dates, reason, decision).
    details = me.DictField()
    summary = me.DictField()
    # issue: the batch was reported late; the rows it refused, by index (a retry's answer).
    late_reported = me.BooleanField(default=False)
    rejected = me.DictField()
    # invalidate / withdraw: what was selected (to finish after a crash), how many certificates
    # it matched, and the requested numbers that do not exist (a retry's answer).
    selection = me.DictField()
    matching = me.IntField()
    not_found = me.ListField(me.StringField())


class InstitutionView(me.Document):
    """Filing's status of an institution as its events told us (last event wins by time)."""

    meta = {"db_alias": ALIAS, "collection": "institution_status"}

    institution_id = me.StringField(primary_key=True)
    status = me.StringField()
    reason = me.StringField()
    changed_at = me.StringField()  # the applied event's occurred_at (ISO, UTC "Z")
    sequence = me.IntField()       # the applied event's meta.sequence (filing's institution)
    event_id = me.StringField()
    history = me.ListField(me.DictField())
