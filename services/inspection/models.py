"""Inspection's documents (database alias "inspection"). Class names carry the service's idea
(InspectionPlan, InspectorRecord, ...): mongoengine registers documents by class name in one
process, and other services run beside this one in the tests. Dates are ISO strings (they
sort as dates); nested records are dicts in the proto's field names."""
from __future__ import annotations

import mongoengine as me

from services.common.storage import Aggregate

ALIAS = "inspection"


class InspectionPlan(Aggregate):
    """The annual supervision plan (seed 001 ch.5 art.1) and the draws of its rounds."""

    meta = {"db_alias": ALIAS, "collection": "plans", "indexes": ["year"]}

    plan_id = me.StringField(primary_key=True)
    year = me.IntField(required=True)
    title = me.StringField(required=True)
    content = me.StringField()
    focus = me.ListField(me.StringField())
    kinds = me.ListField(me.StringField())
    ratios = me.DictField()  # stratum -> basis points
    minimum_bp = me.IntField(required=True)
    team_size = me.IntField(required=True)
    rounds = me.ListField(me.DictField())
    # draw ids in commit order, with their round and whether supplementary
    draws = me.ListField(me.DictField())
    created_on = me.StringField()


class InspectorRecord(Aggregate):
    """One inspector of the register: employer, region, relations (declared conflicts and
    past employments)."""

    # ListInspectors pages on inspector_id, the primary key: the local server's _id index is
    # not an ordered one (a sort or a range on _id scans there), so the key has its own,
    # descending (walked either way), and each filter (region, employer, both) its index of
    # those fields then the key (that server uses an index only when its leading fields are
    # the whole filter).
    meta = {"db_alias": ALIAS, "collection": "inspectors",
            "indexes": ["-inspector_id", ("region", "inspector_id"),
                        ("employer_id", "inspector_id"),
                        ("region", "employer_id", "inspector_id")]}

    inspector_id = me.StringField(primary_key=True)
    name = me.StringField(required=True)
    employer_id = me.StringField()
    employer_name = me.StringField()
    region = me.StringField()
    relations = me.ListField(me.DictField())
    active = me.BooleanField(default=True)
    registered_on = me.StringField()


class InspectionDraw(Aggregate):
    """A random draw: committed (pool hash published, seed unknown), then revealed. The pool
    itself is in DrawPool (up to 100,000 ids: kept out of the aggregate's every read)."""

    # ListDraws pages on draw_id, the primary key: an ordered index of it (the local server's
    # _id index is not one), and the plan's draws by (plan_id, key).
    meta = {"db_alias": ALIAS, "collection": "draws",
            "indexes": [("plan_id", "round"), "-draw_id", ("plan_id", "draw_id")]}

    draw_id = me.StringField(primary_key=True)
    plan_id = me.StringField(required=True)
    round = me.IntField(required=True)
    state = me.StringField(required=True)
    supplementary = me.BooleanField(default=False)
    pool_hash = me.StringField(required=True)
    algorithm_version = me.StringField(required=True)
    seed_source = me.StringField(required=True)
    seed_available_on = me.StringField()
    committed_on = me.StringField()
    seed_value = me.StringField()
    revealed_on = me.StringField()
    canonical_seed = me.StringField()
    # stratum -> {pool, ratio_bp, sample}
    strata = me.DictField()
    pool_institutions = me.IntField(default=0)
    pool_inspectors = me.IntField(default=0)
    excluded_institutions = me.ListField(me.ListField())
    excluded_inspectors = me.ListField(me.ListField())
    drawn = me.ListField(me.DictField())
    drawn_count = me.IntField(default=0)
    recusals = me.ListField(me.DictField())


class DrawPool(me.Document):
    """A draw's committed pool as published (canonical form, see domain/draw.py). Written
    once, before the draw that commits to its hash; never changed."""

    meta = {"db_alias": ALIAS, "collection": "draw_pools"}

    draw_id = me.StringField(primary_key=True)
    pool = me.DictField(required=True)


class InspectionCase(Aggregate):
    """One case: an inspection drawn, planned or triggered, its findings, due process, the
    decision and its review, the rectification, the special action's outcomes."""

    # ListCases pages on case_id, the primary key, filtered by any of six fields: the key has
    # an ordered index of its own (the local server's _id index is not one), and each filter
    # its index of the field then the key. A combination walks the index of one of its
    # filters, the institution's if it has one, and checks the rest on the cases read
    # (services/common/repository.py indexed_filter): an institution has few cases, and an
    # index per combination (63) would be written by every case opened or changed.
    # ListPublishedResults likewise: published, then the institution or the kind, then the key.
    meta = {"db_alias": ALIAS, "collection": "cases",
            "indexes": [("institution_id", "opened_at"), "trigger_ids",
                        ("subject_kind", "subject_id"), "draw_id",
                        "-case_id",
                        ("institution_id", "case_id"),
                        ("subject_kind", "case_id"),
                        ("state", "case_id"),
                        ("origin", "case_id"),
                        ("kind", "case_id"),
                        ("outcome_kinds", "case_id"),
                        ("published", "case_id"),
                        ("published", "institution_id", "case_id"),
                        ("published", "kind", "case_id"),
                        "rectification.due_on", "notice.statement_due.date",
                        "decision.review_due.date"]}

    case_id = me.StringField(primary_key=True)
    subject_kind = me.StringField(required=True)
    subject_id = me.StringField(required=True)
    subject_name = me.StringField()
    institution_id = me.StringField()
    origin = me.StringField(required=True)
    kind = me.StringField(required=True)
    trigger_ids = me.ListField(me.StringField())
    opened_on = me.StringField(required=True)
    opened_at = me.DateTimeField(required=True)
    state = me.StringField(required=True)
    plan_id = me.StringField()
    draw_id = me.StringField()
    inspector_ids = me.ListField(me.StringField())
    findings = me.ListField(me.DictField())
    completed_on = me.StringField()
    inspection_summary = me.StringField()
    notice = me.DictField()
    statements = me.ListField(me.DictField())
    statement_waived = me.BooleanField(default=False)
    decision = me.DictField()
    outcomes = me.ListField(me.DictField())
    outcome_kinds = me.ListField(me.StringField())
    review = me.DictField()
    rectification = me.DictField()
    published = me.BooleanField(default=False)
    result_on = me.StringField()
    note = me.StringField()


class InspectionComplaint(Aggregate):
    """A report of a violation (seed 001 ch.5 art.5). The complainant's contact and caller
    are kept here only (never published, never in an event); `caller_key` is a digest."""

    meta = {"db_alias": ALIAS, "collection": "complaints",
            "indexes": [("caller_key", "filed_at")]}

    complaint_id = me.StringField(primary_key=True)
    subject_kind = me.StringField(required=True)
    subject_id = me.StringField(required=True)
    subject_name = me.StringField()
    category = me.StringField()
    description = me.StringField()
    contact = me.StringField()
    caller_key = me.StringField(required=True)
    filed_at = me.DateTimeField(required=True)
    case_id = me.StringField()


class InspectedInstitution(me.Document):
    """What inspection knows of a filed institution from others' events: filing's status
    (applied in filing's sequence order), grading's grade, certificates' monthly volume."""

    meta = {"db_alias": ALIAS, "collection": "institutions",
            "indexes": ["status"]}

    institution_id = me.StringField(primary_key=True)
    name = me.StringField()
    district_code = me.StringField()
    status = me.StringField()
    status_sequence = me.IntField()
    grade = me.StringField()
    grade_year = me.IntField()
    grade_revision = me.IntField()
    # "YYYY-MM" -> certificates issued that month (the last 13 months)
    monthly_issued = me.DictField()
