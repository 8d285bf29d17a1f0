"""Filing's documents (database alias "filing"). Dates are ISO strings: they sort as dates."""
from __future__ import annotations

from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    IntField,
    ListField,
    StringField,
)

from services.common.storage import Aggregate

ALIAS = "filing"


class Application(Aggregate):
    meta = {
        "db_alias": ALIAS,
        "collection": "applications",
        "indexes": [
            # At most one open application per institution, enforced by the database.
            {"fields": ["open_key"], "unique": True, "sparse": True},
            "institution_id",
            # ListApplications pages on application_id, the primary key. MongoDB walks its
            # _id_ index in order; the local server's _id index is not an ordered one (a sort
            # or a range on _id scans the collection there), so the list has its own: the key
            # descending (an index is walked either way), alone and after each filter.
            "-application_id",
            ("institution_id", "-application_id"),
            ("state", "-application_id"),
            ("kind", "-application_id"),
            ("state", "acceptance_due"),
            ("state", "supplement_due"),
        ],
    }

    application_id = StringField(primary_key=True)
    open_key = StringField()
    institution_id = StringField(required=True)
    institution = DictField(required=True)
    scope = ListField(DictField())
    materials = ListField(DictField())
    state = StringField(required=True)
    submitted_at = DateTimeField(required=True)
    received_on = StringField(required=True)
    acceptance_due = StringField()
    acceptance_due_provisional = BooleanField(default=False)
    supplement = DictField()
    supplement_due = StringField()
    accepted_on = StringField()
    accepted_by = StringField()
    decision_due = StringField()
    decision_due_provisional = BooleanField(default=False)
    reasons = ListField(StringField())
    evaluation = DictField()
    filing_code = StringField()
    decided_on = StringField()
    kind = StringField()  # None on slice-era documents: a new application
    conditions = DictField()
    unmet_conditions = ListField(StringField())
    filing_code_before = StringField()


class Institution(Aggregate):
    meta = {
        "db_alias": ALIAS,
        "collection": "institutions",
        "indexes": [
            {"fields": ["filing_code"], "unique": True},
            ("status", "filing_code"),
            # ListRegister's filters (one query per register status, services/common/
            # repository.py keyset_page): the occupation or district, the status, then the key
            # (the local server uses an index only when it covers the whole filter).
            ("scope.occupation_code", "status", "filing_code"),
            ("district_code", "status", "filing_code"),
            ("scope.occupation_code", "district_code", "status", "filing_code"),
            "scope.occupation_code",
            "district_code",
            # ListPendingDecisions: open proposals and quota excesses awaiting a decision.
            "proposals.state",
            "quota_excess.state",
            # Quota seats (services/filing/domain/quotas.py): a seat token is held by one
            # institution at most, so two changes racing for an area's last seat cannot both
            # be written. Unique over the array's elements (a multikey index); documents with
            # no seat (an empty list, or none) are left out by the partial filter.
            {"fields": ["seats"], "unique": True,
             "partialFilterExpression": {"seats": {"$type": "string"}}},
        ],
    }

    institution_id = StringField(primary_key=True)
    name = StringField(required=True)
    legal_representative = StringField()
    address = StringField()
    district_code = StringField()
    contact_phone = StringField()
    filing_code = StringField(required=True)
    scope = ListField(DictField())
    status = StringField(required=True)
    filed_on = StringField(required=True)
    valid_until = StringField(required=True)
    application_id = StringField(required=True)
    history = ListField(DictField())
    status_reason = StringField()
    status_decision_ref = StringField()
    # [{"effective_on": iso, "scope": [...]}]: the scope in force from each date.
    scope_history = ListField(DictField())
    # occupation code -> ISO date it entered the scope (for the 12-month rules).
    scope_since = DictField()
    violations = ListField(DictField())
    proposals = ListField(DictField())
    renewal_notice_for = StringField()  # valid_until for which RenewalDue was raised
    activity_checked_on = StringField()
    # "<area>|<occupation>|<n>": the quota seats it holds (None on documents from before).
    seats = ListField(StringField(), default=None)
    quota_excess = ListField(DictField())
    # Standing suspensions: {decision_ref, by_inspection, since, reason}.
    suspensions = ListField(DictField())
    # Inspection's decisions by id: what arrived and what filing did (domain/sanctions.py).
    inspection_decisions = ListField(DictField())
    # The day EvaluationLapsed's lapse was counted from when last raised (once per lapse).
    lapse_raised_for = StringField()


class Activity(Document):
    """Certificate activity per institution and occupation, from CertificatesIssued."""

    meta = {"db_alias": ALIAS, "collection": "activity",
            "indexes": ["institution_id", "first_day"]}

    key = StringField(primary_key=True)  # "<institution_id>:<occupation_code>"
    institution_id = StringField(required=True)
    occupation_code = StringField(required=True)
    last_evaluation_on = StringField()
    days = DictField()  # ISO date -> certificates issued (the last 13 months)
    # The earliest day in `days` (or earlier): the sweep prunes documents whose first_day is
    # past the window, summing those days into `months`.
    first_day = StringField()
    months = DictField()  # "YYYY-MM" -> certificates issued, for days pruned from `days`
    total = IntField(default=0)
    event_ids = ListField(StringField())  # the last events applied (natural idempotency key)
