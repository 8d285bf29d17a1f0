"""The report's documents (database alias "reporting").

- ReportEventLog: every event the report reads, once (unique event id), at a position 1, 2,
  3, ... that is its primary key: a writer that loses the race for a position takes the next,
  so positions have no gaps and the projector can follow them in order.
- ReportFigure: one figure on one day, its contributions, and the position of the last event
  it includes; an event is applied to it only above that position, in the same write, so a
  redelivered or replayed event is never counted twice.
- ReportCheckpoint: how far the projector has followed the log.
- ReportPeriod and ReportEdition: the schedule's periods and their editions (aggregates: their
  changes are conditional writes, their events ride in them, their requests are remembered).
"""
from __future__ import annotations

import mongoengine as me

from services.common.storage import Aggregate

ALIAS = "reporting"


class ReportEventLog(me.Document):
    meta = {
        "db_alias": ALIAS,
        "collection": "event_log",
        "indexes": [{"fields": ["event_id"], "unique": True}],
    }

    position = me.IntField(primary_key=True, min_value=1)
    event_id = me.StringField(required=True)
    # "<producer>.<EventType>", e.g. "escrow.ComplaintResolved".
    kind = me.StringField(required=True)
    # The event as its producer's message gave it (proto JSON, proto field names).
    body = me.DictField(required=True)
    logged_at = me.DateTimeField(required=True)


class ReportFigure(me.Document):
    meta = {
        "db_alias": ALIAS,
        "collection": "daily_figures",
        "indexes": [("day", "figure")],
    }

    # "<figure>|<day>" (domain.figures.figure_day_id)
    key = me.StringField(primary_key=True)
    figure = me.StringField(required=True)
    day = me.StringField(required=True)  # ISO date: sorts as a date
    value = me.IntField(default=0)
    position = me.IntField(default=0)
    # {s: subject id, e: event id, k: event kind, a: amount, p: position}
    contributions = me.ListField(me.DictField())


class ReportCheckpoint(me.Document):
    """How far the projector has followed the log ("figures"), and the last position noted
    as taken in the log ("log"; a position taken after it is found by its key)."""

    meta = {"db_alias": ALIAS, "collection": "checkpoints"}

    name = me.StringField(primary_key=True)
    position = me.IntField(default=0)


class ReportPeriod(Aggregate):
    """A period of a year's schedule: its revisions counter, its submitted editions and whether
    its overdue alert was raised. Generating and submitting change it conditionally, so two
    racing calls never take the same revision or both submit."""

    meta = {"db_alias": ALIAS, "collection": "periods", "indexes": [("year", "number")]}

    period_id = me.StringField(primary_key=True)  # "2026-p03"
    year = me.IntField(required=True)
    number = me.IntField(required=True)
    revisions = me.IntField(default=0)
    submitted_edition_id = me.StringField()
    submitted = me.ListField(me.StringField())
    overdue_raised = me.BooleanField(default=False)


class ReportEdition(Aggregate):
    """An edition as generated: never changed but for its submission."""

    meta = {
        "db_alias": ALIAS,
        "collection": "editions",
        "indexes": [("period_id", "revision"), ("period_id", "input_hash"),
                    ("year", "period_id", "revision")],
    }

    edition_id = me.StringField(primary_key=True)  # "2026-p03-r2"
    period_id = me.StringField(required=True)
    year = me.IntField(required=True)
    number = me.IntField(required=True)
    kind = me.StringField(required=True)
    revision = me.IntField(required=True)
    state = me.StringField(required=True)
    # The action's first day (the cumulative column's), the period's first day, the cut-off.
    action_start = me.StringField(required=True)
    period_start = me.StringField(required=True)
    cut_off = me.StringField(required=True)
    due_on = me.StringField(required=True)
    due_provisional = me.BooleanField(default=False)
    definition_version = me.StringField(required=True)
    definition_hash = me.StringField(required=True)
    log_position = me.IntField(required=True)
    event_count = me.IntField(required=True)
    input_hash = me.StringField(required=True)
    output_sha256 = me.StringField(required=True)
    rows = me.ListField(me.DictField())
    # {format, filename, sha256}: the exports' digests, fixed at generation.
    exports = me.ListField(me.DictField())
    generated_at = me.DateTimeField(required=True)
    generated_by = me.StringField()
    submitted_at = me.DateTimeField()
    submitted_by = me.StringField()
    submitted_late = me.BooleanField(default=False)
    corrects_edition_id = me.StringField()
