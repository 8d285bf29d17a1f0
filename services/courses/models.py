"""The course review's documents (database alias "courses"). Class names are unique across
all services (mongoengine registers documents by class name in one process). Dates are ISO
strings in Asia/Shanghai: they sort as dates. Trainees are platform account ids, never names
or ID numbers."""
from __future__ import annotations

import mongoengine as me

from services.common.storage import Aggregate

ALIAS = "courses"


class CourseRecord(Aggregate):
    """One submitted course: its content (question bank included), findings, reviews,
    copyright conflicts and state."""

    meta = {
        "db_alias": ALIAS,
        "collection": "courses",
        "indexes": [
            # ListCourses pages on course_id, the primary key (keyset, services/common/
            # repository.py). MongoDB walks its _id_ index in order; the local server's _id
            # index is not an ordered one (a sort or a range on _id scans the collection
            # there), so the list has its own: the key alone (descending: an index is walked
            # either way) and after each filter the list takes (state, provider, both: a
            # provider's own in one state, or the public's listed ones of a provider), so a
            # page and the next ("course_id > last seen") are one range of one index
            # (tests/integration/test_list_indexes.py). (provider_id, course_id) also serves
            # a provider's courses (provider_courses, course_summaries).
            "-course_id",
            ("state", "course_id"),
            ("provider_id", "course_id"),
            ("provider_id", "state", "course_id"),
            # A rejected course uploaded again unchanged is found by its normalised hash.
            "content_hash",
            # Two providers claiming one resource: its media and text hashes (multikey).
            "resource_keys",
        ],
    }

    course_id = me.StringField(primary_key=True)
    provider_id = me.StringField(required=True)
    state = me.StringField(required=True)
    title = me.StringField(required=True)
    class_hours = me.FloatField()
    question_count = me.IntField(default=0)
    content = me.DictField()
    content_hash = me.StringField(required=True)
    resource_keys = me.ListField(me.StringField())
    findings = me.ListField(me.DictField())
    reviews = me.ListField(me.DictField())
    conflicts = me.ListField(me.DictField())
    submitted_on = me.StringField()
    submitted_at = me.DateTimeField()
    delisted_by = me.StringField()


class CourseSignature(me.Document):
    """A course's reuse signature: MinHash and exact shingle set (little-endian uint32), kept
    until the course is deleted. Not an aggregate: written once, deleted with the course."""

    meta = {"db_alias": ALIAS, "collection": "course_signatures",
            "indexes": ["stored_at", "provider_id"]}

    course_id = me.StringField(primary_key=True)
    provider_id = me.StringField(required=True)
    scheme = me.StringField(required=True)
    size = me.IntField(required=True)
    minhash = me.BinaryField(required=True)
    shingles = me.BinaryField(required=True)
    # Wall-clock time of the write: workers pick up each other's new signatures by it.
    stored_at = me.DateTimeField(required=True)


class CourseProvider(Aggregate):
    """A course resource provider's issues and sanctions."""

    meta = {"db_alias": ALIAS, "collection": "providers"}

    provider_id = me.StringField(primary_key=True)
    issues = me.ListField(me.DictField())
    sanctions = me.ListField(me.DictField())


class TraineeLearning(Aggregate):
    """A trainee's learning on one course: credited minutes, attempts, the first attempt."""

    meta = {"db_alias": ALIAS, "collection": "learning",
            "indexes": [("course_id", "trainee_ref")]}

    key = me.StringField(primary_key=True)  # domain key of (trainee, course)
    trainee_ref = me.StringField(required=True)
    course_id = me.StringField(required=True)
    provider_id = me.StringField()
    employer_id = me.StringField()
    credited_minutes = me.IntField(default=0)
    zeroed_minutes = me.IntField(default=0)
    attempts = me.IntField(default=0)
    first_attempt = me.DictField()
    case_ids = me.ListField(me.StringField())
    updated_at = me.DateTimeField()


class CheatingCase(Aggregate):
    meta = {"db_alias": ALIAS, "collection": "cheating_cases",
            "indexes": [("employer_id", "state")]}

    case_id = me.StringField(primary_key=True)
    state = me.StringField(required=True)
    course_id = me.StringField(required=True)
    provider_id = me.StringField()
    employer_id = me.StringField(required=True)
    trainee_ref = me.StringField(required=True)
    learning_key = me.StringField(required=True)
    flags = me.ListField(me.StringField())
    opened_on = me.StringField()
    decided_on = me.StringField()
    minutes_zeroed = me.IntField(default=0)
    repeat_after_rectification = me.BooleanField(default=False)
    subsidy_revoked = me.BooleanField(default=False)
    note = me.StringField()


class EmployerStanding(Aggregate):
    """A participating unit's standing after confirmed cheating (seed 004 四(二))."""

    meta = {"db_alias": ALIAS, "collection": "employers"}

    employer_id = me.StringField(primary_key=True)
    standing = me.StringField(required=True)
    case_ids = me.ListField(me.StringField())
    rectifications = me.ListField(me.DictField())
    rectified_since_last_case = me.BooleanField(default=False)
    revoked_by_case_id = me.StringField()


class CourseRating(Aggregate):
    """One trainee's rating of one course (changed, never doubled)."""

    meta = {"db_alias": ALIAS, "collection": "ratings", "indexes": ["course_id"]}

    key = me.StringField(primary_key=True)
    course_id = me.StringField(required=True)
    trainee_ref = me.StringField(required=True)
    stars = me.IntField(required=True)
    rated_on = me.StringField()


class CourseScoreView(me.Document):
    """A course's rating sums, recomputed from its ratings after each rating (idempotent)."""

    meta = {"db_alias": ALIAS, "collection": "scores",
            # The rated courses (count > 0), what ListTopCourses and RateCourse read: the
            # ranking is by a score shrunk towards the mean of every rated course, so each
            # call needs them all, through this index rather than a collection scan
            # (tests/integration/test_list_indexes.py).
            "indexes": ["listed", "count"]}

    course_id = me.StringField(primary_key=True)
    provider_id = me.StringField()
    title = me.StringField()
    listed = me.BooleanField(default=False)
    count = me.IntField(default=0)
    total = me.FloatField(default=0)
    squares = me.FloatField(default=0)


class CourseItemStats(me.Document):
    """A course's item statistics as running sums, moved by $inc on each first attempt
    (never recomputed from all attempts). `counted` keeps the last learning records counted,
    so a retried count changes nothing."""

    meta = {"db_alias": ALIAS, "collection": "item_stats"}

    course_id = me.StringField(primary_key=True)
    first_attempts = me.IntField(default=0)
    passed = me.IntField(default=0)
    items = me.DictField()  # question id -> {n, x, y, yy, xy}
    counted = me.ListField(me.StringField())
