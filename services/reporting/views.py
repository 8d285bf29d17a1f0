"""Documents as the proto's messages (dicts with proto field names; int64 as strings)."""
from __future__ import annotations

from datetime import datetime, timezone

from services.reporting.domain import definition as d
from services.reporting.models import ReportEdition


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def definition_view() -> dict:
    return {"version": d.VERSION, "definition_hash": d.DEFINITION_HASH,
            "figures": [f.to_dict() for f in d.FIGURES]}


def export_source(e: ReportEdition) -> dict:
    """What the exports are rendered from: the edition's stored fields only."""
    return {"edition_id": e.edition_id, "year": e.year, "number": e.number, "kind": e.kind,
            "revision": e.revision, "action_start": e.action_start,
            "period_start": e.period_start, "cut_off": e.cut_off, "due_on": e.due_on,
            "definition_version": e.definition_version, "definition_hash": e.definition_hash,
            "input_hash": e.input_hash, "event_count": e.event_count,
            "log_position": e.log_position, "output_sha256": e.output_sha256,
            "corrects_edition_id": e.corrects_edition_id or "",
            "rows": [dict(r) for r in e.rows], "generated_at": e.generated_at}


def row_view(row: dict) -> dict:
    return {"figure": row["figure"], "label": row["label"], "unit": row["unit"],
            "period_value": str(int(row["period_value"])),
            "cumulative_value": str(int(row["cumulative_value"]))}


def edition_view(e: ReportEdition) -> dict:
    view = {
        "edition_id": e.edition_id, "year": e.year, "number": e.number, "kind": e.kind,
        "revision": e.revision, "state": e.state, "period_start": e.period_start,
        "cut_off": e.cut_off, "due": {"date": e.due_on, "provisional": bool(e.due_provisional)},
        "definition_version": e.definition_version, "definition_hash": e.definition_hash,
        "log_position": str(e.log_position), "event_count": e.event_count,
        "input_hash": e.input_hash, "output_sha256": e.output_sha256,
        "rows": [row_view(r) for r in e.rows or []],
        "generated_at": timestamp(e.generated_at), "generated_by": e.generated_by or "",
        "submitted_late": bool(e.submitted_late),
        "corrects_edition_id": e.corrects_edition_id or "",
        "exports": [dict(x) for x in e.exports or []],
    }
    if e.submitted_at is not None:
        view["submitted_at"] = timestamp(e.submitted_at)
        view["submitted_by"] = e.submitted_by or ""
    return view


def summary_view(e: ReportEdition) -> dict:
    view = {"edition_id": e.edition_id, "revision": e.revision, "state": e.state,
            "input_hash": e.input_hash, "output_sha256": e.output_sha256,
            "generated_at": timestamp(e.generated_at),
            "corrects_edition_id": e.corrects_edition_id or ""}
    if e.submitted_at is not None:
        view["submitted_at"] = timestamp(e.submitted_at)
    return view


def daily_view(doc) -> dict:
    return {"figure": doc.figure, "day": doc.day, "value": str(doc.value),
            "log_position": str(doc.position), "contribution_count": len(doc.contributions)}
