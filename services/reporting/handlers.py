"""The report's handlers: one function per RPC, event and timer. No nameko here."""
from __future__ import annotations

import base64
import logging
import threading
import time
from datetime import date, timedelta

from google.protobuf import json_format
from prometheus_client import Counter, Gauge
from vocreg.reporting.v1 import reporting_pb2

from services.common import paging
from services.common.errors import Conflict, FailedPrecondition, InvalidArgument, NotFound
from services.common.vocabulary import parse_date
from services.common.workdays import today_in_shanghai
from services.reporting import exports
from services.reporting.domain import definition as d
from services.reporting.domain import figures
from services.reporting.domain import schedule as sched
from services.reporting.models import ReportEdition, ReportPeriod
from services.reporting.views import (
    daily_view,
    definition_view,
    edition_view,
    export_source,
    summary_view,
)

log = logging.getLogger(__name__)

# Read by the alert VocregReportEditionOverdue (deploy/prometheus): set by the sweep.
EDITIONS_OVERDUE = Gauge(
    "vocreg_report_editions_overdue",
    "Report periods of the action years past their due date without a submitted edition.")
EVENTS_LOGGED = Counter(
    "vocreg_report_events_logged_total",
    "Events the report logged (redeliveries not counted), by producer and type.",
    ["event_type"])
EDITIONS = Counter("vocreg_report_editions_total", "Editions generated and submitted.",
                   ["action"])

DRAFT, SUBMITTED = "EDITION_STATE_DRAFT", "EDITION_STATE_SUBMITTED"
# Log entries projected between two yields to the worker's other calls.
YIELD_EVERY = 200
MAX_DAYS = 366


# --- events -----------------------------------------------------------------------------------
def record_event(producer: str, event_type: str):
    """The handler of one producer's event: logged once, then the figures follow the log."""
    kind = f"{producer}.{event_type}"

    def handler(event, uow, clock, settings):
        body = json_format.MessageToDict(event, preserving_proto_field_name=True)
        entry, new = uow.repo.append_event(event.meta.event_id, kind, body, clock.now())
        if new:
            EVENTS_LOGGED.labels(kind).inc()
        project(uow)
        return {"position": entry.position, "new": new}

    handler.__name__ = f"log_{producer}_{event_type}"
    return handler


# One greenthread of a process follows the log at a time: the others only log their event and
# leave (ten handlers following the same entries at once would each read and try every one).
_FOLLOWING = threading.Lock()  # green under the worker's eventlet patching


def project(uow) -> int:
    """Follow the log from the checkpoint: each entry's contributions applied to its daily
    figures (each figure takes a position once, so a second worker following the same
    entries, or a redelivery, changes nothing), then the checkpoint moved past it.

    If this process is following the log already, that call will reach the new entry: it
    looks again for entries logged meanwhile after it lets go, and continues if there are."""
    applied = 0
    while _FOLLOWING.acquire(blocking=False):
        try:
            applied += _follow(uow)
        finally:
            _FOLLOWING.release()
        if uow.repo.log_position() <= uow.repo.checkpoint():
            break
    return applied


def _follow(uow) -> int:
    applied = 0
    for n, entry in enumerate(uow.repo.entries(after=uow.repo.checkpoint()), start=1):
        for c in figures.contributions(entry):
            applied += uow.repo.apply(
                figures.figure_day_id(c.figure, c.day), c.figure, c.day.isoformat(),
                figures.stored_contribution(c), entry.position,
                lambda stored, f=c.figure: figures.day_value(f, stored))
        uow.repo.advance_checkpoint(entry.position)
        if n % YIELD_EVERY == 0:
            time.sleep(0)  # eventlet's yield: the worker's other calls get their turn
    return applied


def _all_entries(uow, up_to: int) -> list[figures.Logged]:
    found = []
    for n, entry in enumerate(uow.repo.entries(up_to=up_to), start=1):
        found.append(entry)
        if n % (YIELD_EVERY * 5) == 0:
            time.sleep(0)
    return found


# --- timer ------------------------------------------------------------------------------------
def sweep(uow, clock, settings):
    """Catch up the figures (events a stopped worker logged and did not project), then flag
    the periods past their due date without a submitted edition: the gauge, and one
    EditionOverdue per period."""
    project(uow)
    today = today_in_shanghai(clock.now())
    overdue = 0
    for year in settings.action_years(today):
        for period in sched.periods(settings.schedule(year), settings.calendar):
            with uow.step(f"period {period.period_id}"):
                stored = uow.repo.period(period.period_id)
                submitted = bool(stored and stored.submitted_edition_id)
                if not sched.overdue(period, today, submitted):
                    continue
                overdue += 1
                if stored is None:
                    stored = uow.add(_new_period(period), on_duplicate=_racing)
                if not stored.overdue_raised:
                    stored.overdue_raised = True
                    uow.emit(stored, "EditionOverdue", {
                        "year": period.year, "number": period.number, "kind": period.kind,
                        "cut_off": period.cut_off.isoformat(),
                        "due_on": period.due.date.isoformat()}, "system")
                    log.warning("report period %s is overdue (due %s)", period.period_id,
                                period.due.date)
    EDITIONS_OVERDUE.set(overdue)
    return {"overdue": overdue}


def _new_period(period: sched.Period) -> ReportPeriod:
    return ReportPeriod(period_id=period.period_id, year=period.year, number=period.number)


# --- reading ----------------------------------------------------------------------------------
def get_report_definition(cmd, uow, clock, settings):
    return {"definition": definition_view()}


def _year(request: dict) -> int:
    year = int(request.get("year") or 0)
    if not 2000 <= year <= 2100:
        raise InvalidArgument(f"year: must be 2000-2100 (got {year})")
    return year


def list_editions(cmd, uow, clock, settings):
    year = _year(cmd.request)
    page = paging.page(cmd, clock.now())
    today = today_in_shanghai(clock.now())
    stored = uow.repo.periods_of(year)
    by_period: dict[str, list[ReportEdition]] = {}
    for e in uow.repo.editions_of_year(year):
        by_period.setdefault(e.period_id, []).append(e)
    answer, overdue = [], 0
    for period in sched.periods(settings.schedule(year), settings.calendar):
        editions = by_period.get(period.period_id, [])
        p = stored.get(period.period_id)
        submitted = next((e for e in editions if p and e.edition_id == p.submitted_edition_id),
                         None)
        first_submitted = next((e for e in editions if e.state == SUBMITTED), None)
        status, days = sched.status(period, today, None if first_submitted is None
                                    else bool(first_submitted.submitted_late))
        overdue += status == "PERIOD_STATUS_OVERDUE"
        answer.append({
            "year": year, "number": period.number, "kind": period.kind,
            "period_start": period.period_start.isoformat(),
            "cut_off": period.cut_off.isoformat(), "due": period.due.to_dict(),
            "status": status, "days_overdue": days,
            "submitted_edition_id": submitted.edition_id if submitted else "",
            "editions": [summary_view(e) for e in editions]})
    after = int(page.after or 0)
    shown = [p for p in answer if p["number"] > after][:page.size]
    more = shown and shown[-1]["number"] < answer[-1]["number"]
    return {"year": year, "periods": shown, "overdue_count": overdue,
            "page": page.response(shown[-1]["number"] if more else None)}


def _edition(uow, edition_id: str, field: str = "edition_id") -> ReportEdition:
    edition_id = (edition_id or "").strip()
    if not edition_id:
        raise InvalidArgument(f"{field}: required, e.g. 2026-p03-r1")
    edition = uow.repo.edition(edition_id)
    if edition is None:
        raise NotFound(f"edition {edition_id} not found", reason="EDITION_NOT_FOUND",
                       metadata={"edition_id": edition_id})
    return edition


def _enum_name(enum_type, value) -> str:
    """An enum field as its name: the edge sends names, a caller on the bus may send numbers."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return enum_type.Name(value)
        except ValueError:
            return ""
    return value if isinstance(value, str) else ""


def get_edition(cmd, uow, clock, settings):
    return {"edition": edition_view(_edition(uow, cmd.request.get("edition_id")))}


# --- generating and submitting ----------------------------------------------------------------
def _period_of(edition: ReportEdition) -> sched.Period:
    """The period as the edition was generated for it (the schedule may change later)."""
    from services.common.workdays import Deadline

    return sched.Period(edition.year, edition.number, edition.kind,
                        date.fromisoformat(edition.period_start),
                        date.fromisoformat(edition.cut_off),
                        Deadline(date.fromisoformat(edition.due_on), edition.due_provisional),
                        date.fromisoformat(edition.action_start))


def generate_edition(cmd, uow, clock, settings):
    errors: list[str] = []
    cut_off = parse_date(cmd.request.get("cut_off"), "cut_off", errors)
    if cut_off is not None and not 2000 <= cut_off.year <= 2100:
        errors.append("cut_off: the year must be 2000-2100")
    if errors:
        raise InvalidArgument(errors)
    periods = sched.periods(settings.schedule(cut_off.year), settings.calendar)
    period = next((p for p in periods if p.cut_off == cut_off), None)
    if period is None:
        cut_offs = ", ".join(p.cut_off.isoformat() for p in periods)
        raise InvalidArgument(f"cut_off: {cut_off} is not a cut-off of the {cut_off.year} "
                              f"schedule ({cut_offs})", reason="NOT_A_CUT_OFF")
    now = clock.now()
    if today_in_shanghai(now) <= cut_off:
        raise FailedPrecondition(f"the cut-off {cut_off} has not passed yet: its events may "
                                 "still come in; generate it from the next day",
                                 reason="CUT_OFF_NOT_PASSED",
                                 subject=f"period/{period.period_id}")

    position = uow.repo.log_position()
    table = figures.table(_all_entries(uow, position), period, position)
    input_hash = table.input_hash
    earlier = uow.repo.editions_of_period(period.period_id)
    same = next((e for e in reversed(earlier) if e.input_hash == input_hash
                 and e.definition_hash == d.DEFINITION_HASH), None)
    if same is not None:
        return {"edition": edition_view(same), "created": False}

    stored = uow.repo.period(period.period_id)
    if stored is None:
        stored = uow.add(_new_period(period), on_duplicate=_racing)
    stored.revisions = (stored.revisions or 0) + 1
    edition = ReportEdition(
        edition_id=f"{period.period_id}-r{stored.revisions}", period_id=period.period_id,
        year=period.year, number=period.number, kind=period.kind, revision=stored.revisions,
        state=DRAFT, action_start=period.action_start.isoformat(),
        period_start=period.period_start.isoformat(), cut_off=cut_off.isoformat(),
        due_on=period.due.date.isoformat(), due_provisional=period.due.provisional,
        definition_version=d.VERSION, definition_hash=d.DEFINITION_HASH,
        log_position=position, event_count=len(table.counted_events), input_hash=input_hash,
        output_sha256=figures.output_hash(period, table.rows, d.DEFINITION_HASH),
        rows=table.rows, generated_at=now, generated_by=cmd.caller.audit_name(),
        corrects_edition_id=stored.submitted_edition_id or None)
    source = export_source(edition)
    edition.exports = []
    for fmt in exports.FORMATS:  # the files' digests, fixed now (a PDF takes ~0.3 s)
        edition.exports.append({"format": fmt, "filename": exports.filename(source, fmt),
                                "sha256": d.sha256_hex(exports.render(source, fmt))})
        time.sleep(0)
    uow.add(edition, on_duplicate=_racing)
    uow.emit(edition, "EditionGenerated", {
        "edition_id": edition.edition_id, "year": edition.year, "number": edition.number,
        "kind": edition.kind, "cut_off": edition.cut_off, "input_hash": input_hash,
        "output_sha256": edition.output_sha256,
        "corrects_edition_id": edition.corrects_edition_id or ""}, cmd.caller)
    EDITIONS.labels("generated").inc()
    return {"edition": edition_view(edition), "created": True}


def _racing() -> Conflict:
    return Conflict("another edition of this period was generated at the same moment; "
                    "ask again")


def submit_edition(cmd, uow, clock, settings):
    edition = _edition(uow, cmd.request.get("edition_id"))
    subject = f"edition/{edition.edition_id}"
    if edition.state == SUBMITTED:
        raise FailedPrecondition(f"edition {edition.edition_id} was submitted already; a "
                                 "correction is a new edition (GenerateEdition)",
                                 reason="EDITION_ALREADY_SUBMITTED", subject=subject)
    period = uow.repo.period(edition.period_id)  # tracked first: written first
    if period is None or period.revisions != edition.revision:
        newest = f"{edition.period_id}-r{period.revisions}" if period else "?"
        raise FailedPrecondition(f"edition {edition.edition_id} is superseded by {newest}: "
                                 "submit the newest edition of the period",
                                 reason="EDITION_SUPERSEDED", subject=subject)
    if period.submitted_edition_id:
        previous = uow.repo.edition(period.submitted_edition_id)
        if previous is not None and previous.output_sha256 == edition.output_sha256:
            raise FailedPrecondition(f"edition {edition.edition_id} has the same figures as "
                                     f"the submitted {previous.edition_id}: nothing to correct",
                                     reason="NOTHING_TO_CORRECT", subject=subject)
    edition = uow.repo.edition_for_change(edition.edition_id)
    now = clock.now()
    due = date.fromisoformat(edition.due_on)
    edition.state = SUBMITTED
    edition.submitted_at = now
    edition.submitted_by = cmd.caller.audit_name()
    edition.submitted_late = today_in_shanghai(now) > due
    period.submitted_edition_id = edition.edition_id
    period.submitted = [*(period.submitted or []), edition.edition_id]
    uow.emit(edition, "EditionSubmitted", {
        "edition_id": edition.edition_id, "year": edition.year, "number": edition.number,
        "kind": edition.kind, "cut_off": edition.cut_off, "due_on": edition.due_on,
        "late": edition.submitted_late, "output_sha256": edition.output_sha256,
        "corrects_edition_id": edition.corrects_edition_id or ""}, cmd.caller)
    EDITIONS.labels("submitted").inc()
    return {"edition": edition_view(edition)}


# --- looking inside ---------------------------------------------------------------------------
def _table_of(uow, edition: ReportEdition, entries=None) -> figures.Table:
    """The edition's table computed again from the log: it must name the same events."""
    if edition.definition_hash != d.DEFINITION_HASH:
        raise FailedPrecondition(
            f"edition {edition.edition_id} was made with report definition "
            f"{edition.definition_version}, which this worker does not hold",
            reason="DEFINITION_UNAVAILABLE", subject=f"edition/{edition.edition_id}")
    if entries is None:
        entries = _all_entries(uow, edition.log_position)
    table = figures.table(entries, _period_of(edition), edition.log_position)
    if table.input_hash != edition.input_hash:
        log.error("edition %s: the log no longer gives its input (%s, stored %s)",
                  edition.edition_id, table.input_hash, edition.input_hash)
        raise FailedPrecondition(f"the events behind edition {edition.edition_id} are no "
                                 "longer those it was generated from (the log was changed)",
                                 reason="EDITION_INPUT_CHANGED",
                                 subject=f"edition/{edition.edition_id}")
    return table


def diff_editions(cmd, uow, clock, settings):
    before = _edition(uow, cmd.request.get("from_edition_id"), "from_edition_id")
    after = _edition(uow, cmd.request.get("to_edition_id"), "to_edition_id")
    entries = _all_entries(uow, max(before.log_position, after.log_position))
    changes = figures.diff(_table_of(uow, before, entries), _table_of(uow, after, entries))
    return {"from_edition": summary_view(before), "to_edition": summary_view(after),
            "changes": [c.to_dict() for c in changes],
            "definition_changed": before.definition_hash != after.definition_hash}


def explain_figure(cmd, uow, clock, settings):
    request = cmd.request
    edition = _edition(uow, request.get("edition_id"))
    figure = (request.get("figure") or "").strip()
    if figure not in d.BY_KEY:
        raise InvalidArgument(f"figure: not a figure of the report ({figure!r}); see "
                              "GetReportDefinition", reason="UNKNOWN_FIGURE")
    column = _enum_name(reporting_pb2.FigureColumn, request.get("column"))
    if column in ("", "FIGURE_COLUMN_UNSPECIFIED"):
        column = figures.CUMULATIVE
    page = paging.page(cmd, clock.now())
    cell = _table_of(uow, edition).cells[(figure, column)]
    start = int(page.after or 0)
    chunk = cell[start:start + page.size]
    last = start + len(chunk) if start + len(chunk) < len(cell) else None
    row = next(r for r in edition.rows if r["figure"] == figure)
    value = row["period_value" if column == figures.PERIOD else "cumulative_value"]
    return {"figure": figure, "label": d.BY_KEY[figure].label, "column": column,
            "value": str(int(value)), "total": len(cell),
            "contributions": [c.to_dict() for c in chunk], "page": page.response(last)}


def export_edition(cmd, uow, clock, settings):
    edition = _edition(uow, cmd.request.get("edition_id"))
    fmt = _enum_name(reporting_pb2.ExportFormat, cmd.request.get("format"))
    if fmt not in exports.FORMATS:
        raise InvalidArgument("format: EXPORT_FORMAT_XLSX, EXPORT_FORMAT_PDF or "
                              "EXPORT_FORMAT_CSV")
    source = export_source(edition)
    content = exports.render(source, fmt)
    digest = d.sha256_hex(content)
    fixed = next((x["sha256"] for x in edition.exports or [] if x["format"] == fmt), None)
    if fixed is not None and fixed != digest:
        # Same edition, other bytes: the renderer changed (a library upgrade). The file is
        # still the edition's figures; the digest tells the reader it is not the original.
        log.error("edition %s: the %s export is not the one generated (%s, fixed %s)",
                  edition.edition_id, fmt, digest, fixed)
    return {"filename": exports.filename(source, fmt), "content_type": exports.CONTENT_TYPES[fmt],
            "content": base64.b64encode(content).decode(), "sha256": digest}


def get_daily_figures(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    first = parse_date(request.get("from_day"), "from_day", errors)
    last = parse_date(request.get("to_day"), "to_day", errors)
    wanted = [f.strip() for f in request.get("figures") or []]
    unknown = [f for f in wanted if f not in d.BY_KEY]
    if unknown:
        errors.append(f"figures: not figures of the report: {', '.join(unknown[:5])}")
    if first and last and not timedelta(0) <= last - first <= timedelta(days=MAX_DAYS - 1):
        errors.append(f"to_day: must be from_day or later, at most {MAX_DAYS} days on")
    if errors:
        raise InvalidArgument(errors)
    docs = uow.repo.daily_figures(first.isoformat(), last.isoformat(), wanted or None)
    return {"figures": [daily_view(doc) for doc in docs],
            "log_position": str(uow.repo.log_position()),
            "projected_position": str(uow.repo.checkpoint())}


def rebuild_figures(cmd, uow, clock, settings):
    """Every daily figure computed again from the log, compared with what is stored, and what
    differs written. Figures a worker moved past the rebuild's position meanwhile are left to
    it (they include everything up to that position already)."""
    project(uow)
    position = uow.repo.log_position()
    entries = _all_entries(uow, position)
    rebuilt = figures.rebuild(entries)
    stored = uow.repo.all_figures()
    fields = ("figure", "day", "value", "position", "contributions")
    changed = {key: doc for key, doc in rebuilt.items()
               if {f: stored.get(key, {}).get(f) for f in fields} != {f: doc[f] for f in fields}
               and int(stored.get(key, {}).get("position") or 0) <= position}
    extra = [key for key, doc in stored.items() if key not in rebuilt
             and int(doc.get("position") or 0) <= position]
    if changed or extra:
        log.warning("rebuild: %d daily figures differed from the log, %d had no events",
                    len(changed), len(extra))
    uow.repo.replace_figures(changed, extra, stored)
    uow.repo.advance_checkpoint(position)
    return {"events_replayed": len(entries), "figures_changed": len(changed) + len(extra),
            "figures_total": len(rebuilt), "log_position": str(position)}
