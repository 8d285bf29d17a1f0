"""Grading's documents (database alias "grading"). Dates are ISO strings: they sort as dates.
Class names are unique across every service (mongoengine registers documents by class name in
one process), hence GradingInstitution, GradeRecord, IndicatorSystemDoc, ..."""
from __future__ import annotations

import json
import zlib

import numpy as np
from mongoengine import (
    BinaryField,
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    IntField,
    ListField,
    StringField,
)

from services.common.storage import Aggregate

ALIAS = "grading"


class IndicatorSystemDoc(Aggregate):
    """A committee's version of the indicator system: DRAFT, then PUBLISHED (never changed
    again). The built-in default catalogue is not stored: it ships as a file."""

    # ListIndicatorSystems pages on system_id, the primary key: the local server's _id index
    # is not an ordered one (a sort or a range on _id scans the collection there), so the
    # list has its own, the key descending (walked either way), alone (the regulator sees
    # drafts too) and after the state (everyone else sees the published ones).
    meta = {"db_alias": ALIAS, "collection": "indicator_systems",
            "indexes": ["-system_id", ("state", "system_id")]}

    system_id = StringField(primary_key=True)
    state = StringField(required=True)
    # The version as the IndicatorSystem message's JSON (domain IndicatorSystem.to_dict()).
    definition = DictField(required=True)
    canonical_hash = StringField()
    counts = ListField(IntField())
    created_at = DateTimeField(required=True)
    created_by = StringField()
    published_at = DateTimeField()
    published_by = StringField()


class GradingYearDoc(Aggregate):
    """One grading year: the version it is graded by, the deadline, the reviewers, its state."""

    meta = {"db_alias": ALIAS, "collection": "grading_years"}

    year_id = StringField(primary_key=True)  # "2025"
    year = IntField(required=True)
    system_id = StringField(required=True)
    system_hash = StringField(required=True)
    state = StringField(required=True)
    opened_on = StringField(required=True)
    opened_by = StringField()
    self_assessment_due = StringField(required=True)
    due_provisional = BooleanField(default=False)
    reviewers = ListField(DictField())
    computed_at = DateTimeField()
    counts = DictField()
    computation_id = StringField()
    published_on = StringField()
    published_by = StringField()
    appeal_due = StringField()
    appeal_due_provisional = BooleanField(default=False)


def pack_values(values) -> bytes:
    """Values by leaf (-1: none) as little-endian int32: 58 leaves in 232 bytes."""
    return np.asarray(values, dtype="<i4").tobytes()


def unpack_values(data: bytes | None, leaves: int) -> np.ndarray:
    if not data:
        return np.full(leaves, -1, dtype=np.int64)
    return np.frombuffer(data, dtype="<i4").astype(np.int64)


def pack_entries(entries: list[dict]) -> bytes:
    return zlib.compress(json.dumps(entries, ensure_ascii=False).encode(), 6)


def unpack_entries(data: bytes | None) -> list[dict]:
    return json.loads(zlib.decompress(bytes(data))) if data else []


class SelfAssessmentDoc(Aggregate):
    """An institution's self-assessment of a year and its reviews (the audit of every change).

    `declared` and `reviewed` are the values by leaf, in the version's leaf order (-1: none),
    packed (pack_values), and `entries` what was declared with its evidence, compressed
    (pack_entries): a year's scoring reads 10,000 of these documents, and the local database
    server decodes every field of a document it reads (as lists of dicts, 10,000 documents
    took it 4 s; packed, a tenth of that). `reviews` keeps every review as given."""

    meta = {"db_alias": ALIAS, "collection": "self_assessments",
            "indexes": [("year", "institution_id")]}

    assessment_id = StringField(primary_key=True)  # "2025:<institution id>"
    year = IntField(required=True)
    institution_id = StringField(required=True)
    system_id = StringField(required=True)
    state = StringField(required=True)
    declared = BinaryField()
    reviewed = BinaryField()
    entries = BinaryField()
    adjustment_reasons = DictField()
    offences = ListField(DictField())
    overall = DictField()
    reviews = ListField(DictField())
    submitted_at = DateTimeField()
    updated_at = DateTimeField()


class GradingInstitution(Aggregate):
    """A filed institution as grading knows it: filing's status (from its events), the
    platform facts of each year that score its indicators, and its integrity file (诚信档案):
    append-only entries, each with its source."""

    meta = {"db_alias": ALIAS, "collection": "institutions",
            "indexes": ["filed_on", "district_code"]}

    institution_id = StringField(primary_key=True)
    name = StringField()
    district_code = StringField()
    filed_on = StringField()
    status = StringField()
    ended_on = StringField()
    end_kind = StringField()  # TERMINATED | EXPIRED
    # The newest filing event applied (meta.sequence of filing's institution aggregate).
    status_sequence = IntField(default=0)
    # {event_id, kind, on, basis, tier, reason, decision_ref, service, summary, reversed}
    facts = ListField(DictField())
    # The integrity file: {entry_id, kind, summary, recorded_on, year, basis, decision_ref,
    # source_service, source_event_id, public, listing_id}
    entries = ListField(DictField())
    # Certificates issued by year: {"2025": {"total": n, "by_occupation": {code: n}}}
    issued = DictField()
    commended_years = ListField(IntField())
    rewards = ListField(StringField())  # keys of the rewards granted (each once)


class GradeRecord(Aggregate):
    """An institution's published grade of a year and every revision of it (never an
    overwrite): the current one denormalised for the public lists, the inputs it was scored
    from (so an appeal or a reversal scores it again), and its appeals."""

    # ListGrades pages on grade_id, the primary key, filtered by any of year, grade and
    # district: the key has an ordered index of its own (the local server's _id index is not
    # one), and each combination of the filters its index of those fields then the key (that
    # server uses an index only when its leading fields are the whole filter). (year, key)
    # also serves a year's grade ids (grade_ids).
    meta = {"db_alias": ALIAS, "collection": "grades",
            "indexes": ["-grade_id",
                        ("year", "grade_id"),
                        ("grade", "grade_id"),
                        ("district_code", "grade_id"),
                        ("year", "grade", "grade_id"),
                        ("year", "district_code", "grade_id"),
                        ("grade", "district_code", "grade_id"),
                        ("year", "grade", "district_code", "grade_id"),
                        "institution_id", "appeals.appeal_id"]}

    grade_id = StringField(primary_key=True)  # "2025:<institution id>"
    year = IntField(required=True)
    institution_id = StringField(required=True)
    district_code = StringField()
    system_id = StringField(required=True)
    system_hash = StringField(required=True)
    grade = StringField(required=True)
    score = IntField(required=True)
    revision = IntField(required=True)
    reason = StringField()
    published_on = StringField(required=True)
    appeal_due = StringField()
    appeal_due_provisional = BooleanField(default=False)
    # The scoring inputs by leaf (the version's order): value and source (ValueSource number),
    # the fact event ids of platform leaves, offences found, the overall judgement.
    declared = ListField(IntField())
    reviewed = ListField(IntField())
    appealed = DictField()  # column -> the value an appeal decided
    facts = ListField(DictField())  # the year's facts it was scored over
    values = ListField(IntField())
    sources = ListField(IntField())
    fact_refs = DictField()
    offences = ListField(DictField())
    overall = DictField()
    ungraded_reason = StringField()
    # {revision, grade, score, banded, reason, at, actor, appeal_id, offences, override_reason,
    #  scores, top, what_if, next_grade, gap}
    revisions = ListField(DictField())
    appeals = ListField(DictField())


class IntegrityListing(Aggregate):
    """A red- or black-list entry. Black: published until publish_until unless removed
    (credit repair approved, the decision reversed); its repair applications inside."""

    # ListRedList and ListBlackList page on listing_id, the primary key, among the listed
    # entries of their kind: (kind, state) then the key, then with each filter the red list
    # takes (year, district) and the black list's (district) between them. The black list's
    # "still published" (publish_until >= today) has no place in these: a range before the
    # key would be two ranges with the next page's, which the local server answers by a
    # scan; it is checked on the entries read (repository.py listings_page): the sweep
    # (every SWEEP_INTERVAL) moves entries whose period ended out of the listed state, so the
    # check skips at most those that ended since its last run. (kind, state, publish_until)
    # is how the sweep finds them.
    meta = {"db_alias": ALIAS, "collection": "listings",
            "indexes": [("kind", "state", "listing_id"),
                        ("kind", "state", "year", "listing_id"),
                        ("kind", "state", "district_code", "listing_id"),
                        ("kind", "state", "year", "district_code", "listing_id"),
                        ("kind", "state", "publish_until"),
                        "institution_id", "decision_ref"]}

    listing_id = StringField(primary_key=True)
    kind = StringField(required=True)  # RED | BLACK
    institution_id = StringField(required=True)
    district_code = StringField()
    year = IntField()
    incentives = ListField(StringField())
    basis = StringField()
    decision_ref = StringField()
    summary = StringField()
    listed_on = StringField(required=True)
    repair_from = StringField()
    publish_until = StringField()
    state = StringField(required=True)
    removed_on = StringField()
    removal_reason = StringField()
    source_event_id = StringField()
    repairs = ListField(DictField())


class GradeComputation(Document):
    """One chunk of a ComputeGrades run (up to 1,000 institutions), columnar: the regulator's
    preview of a year before publication. Written in bulk, never changed; a later run's
    chunks replace a run's (the year names the run in force)."""

    meta = {"db_alias": ALIAS, "collection": "grade_computations",
            "indexes": [("year", "computation_id")]}

    chunk_id = StringField(primary_key=True)  # "<computation id>:<chunk>"
    year = IntField(required=True)
    computation_id = StringField(required=True)
    chunk = IntField(required=True)
    institution_ids = ListField(StringField())
    totals = ListField(IntField())
    grades = ListField(IntField())
    # N x L int16 scores, row-major (numpy tobytes): the explanation of each row.
    scores = BinaryField()
