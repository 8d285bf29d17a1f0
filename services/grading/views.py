"""Documents as the proto messages' dicts (the JSON mapping with proto field names)."""
from __future__ import annotations

from datetime import timezone

from services.common.vocabulary import drop_empty
from services.grading import domain
from services.grading.models import IntegrityListing, unpack_entries


def ts(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def deadline(day: str | None, provisional: bool) -> dict | None:
    return drop_empty({"date": day, "provisional": provisional}) if day else None


def system_info(system: domain.IndicatorSystem, state: str, canonical_hash: str | None,
                created_at=None, published_at=None, built_in: bool = False) -> dict:
    return drop_empty({
        "system_id": system.system_id, "version": system.version, "title": system.title,
        "label": system.label, "state": state, "canonical_hash": canonical_hash,
        "dimension_count": system.counts[0], "first_level_count": system.counts[1],
        "second_level_count": system.counts[2], "leaf_count": system.counts[3],
        "created_at": ts(created_at), "published_at": ts(published_at), "built_in": built_in})


def year_view(doc, assessor_id: str | None = None, hide_reviewers: bool = False) -> dict:
    reviewers = [] if hide_reviewers else [
        r for r in doc.reviewers or () if assessor_id is None or r["assessor_id"] == assessor_id]
    counts = [{"grade": domain.GRADE_NAMES[int(g)], "count": n}
              for g, n in sorted((doc.counts or {}).items(), key=lambda kv: int(kv[0]))]
    return drop_empty({
        "year": doc.year, "system_id": doc.system_id, "system_hash": doc.system_hash,
        "state": doc.state, "opened_on": doc.opened_on,
        "self_assessment_due": deadline(doc.self_assessment_due, doc.due_provisional),
        "reviewers": reviewers, "computed_at": ts(doc.computed_at), "counts": counts,
        "published_on": doc.published_on,
        "appeal_due": deadline(doc.appeal_due, doc.appeal_due_provisional)})


def assessment_view(doc) -> dict:
    return drop_empty({
        "year": doc.year, "institution_id": doc.institution_id, "state": doc.state,
        "system_id": doc.system_id, "values": unpack_entries(doc.entries),
        "submitted_at": ts(doc.submitted_at), "updated_at": ts(doc.updated_at),
        "reviews": [drop_empty(dict(r)) for r in doc.reviews or ()]})


def _indicator(system: domain.IndicatorSystem, column: int, score: int, value: int, source: int,
               refs: dict) -> dict:
    leaf = system.leaves[column]
    return drop_empty({
        "indicator_id": leaf.id, "name": leaf.name, "max_centi": leaf.max_centi,
        "score_centi": score, "lost_centi": leaf.max_centi - score,
        "source": domain.SOURCE_NAMES.get(source), "value": value,
        "source_event_ids": list(refs.get(leaf.id) or ())})


def revision_view(rev: dict) -> dict:
    return drop_empty({
        "revision": rev["revision"], "grade": domain.GRADE_NAMES[rev["grade"]],
        "score_centipoints": rev["score"], "reason": rev.get("reason"), "at": ts(rev.get("at")),
        "actor": rev.get("actor"), "appeal_id": rev.get("appeal_id"),
        "banded_grade": domain.GRADE_NAMES.get(rev.get("banded") or 0),
        "offences": list(rev.get("offences") or ()),
        "override_reason": rev.get("override_reason")})


def grade_view(rec, system: domain.IndicatorSystem | None, full: bool) -> dict:
    """The grade; `full`: with its explanation and appeals (the institution itself, the
    regulator, its assessor)."""
    current = rec.revisions[-1]
    view = {
        "institution_id": rec.institution_id, "year": rec.year, "grade": rec.grade,
        "score_centipoints": rec.score, "system_id": rec.system_id,
        "system_hash": rec.system_hash, "revision": rec.revision, "reason": rec.reason,
        "district_code": rec.district_code, "published_on": rec.published_on,
        "appeal_due": deadline(rec.appeal_due, rec.appeal_due_provisional),
        "history": [revision_view(r) for r in rec.revisions]}
    if full and system is not None:
        scores = current.get("scores") or []
        refs = rec.fact_refs or {}
        indicators = [_indicator(system, c, scores[c], rec.values[c], rec.sources[c], refs)
                      for c in range(len(system.leaves))]
        view.update({
            "indicators": indicators,
            "top_reasons": [indicators[c] for c in current.get("top") or ()],
            "next_grade_indicators": [system.leaves[c].id for c in current.get("what_if") or ()],
            "next_grade": domain.GRADE_NAMES.get(current.get("next_grade") or 0),
            "points_to_next_grade_centi": current.get("gap"),
            "appeals": [appeal_view(a) for a in rec.appeals or ()]})
    return drop_empty(view)


def preview_view(year_doc, institution_id: str, total: int, grade: int, scores,
                 system: domain.IndicatorSystem) -> dict:
    """A computed, unpublished grade (the regulator's preview): revision 0."""
    return drop_empty({
        "institution_id": institution_id, "year": year_doc.year,
        "grade": domain.GRADE_NAMES[grade], "score_centipoints": total,
        "system_id": year_doc.system_id, "system_hash": year_doc.system_hash,
        "indicators": [drop_empty({
            "indicator_id": leaf.id, "name": leaf.name, "max_centi": leaf.max_centi,
            "score_centi": int(scores[c]), "lost_centi": leaf.max_centi - int(scores[c])})
            for c, leaf in enumerate(system.leaves)]})


def appeal_view(appeal: dict) -> dict:
    return drop_empty({
        "appeal_id": appeal["appeal_id"], "revision": appeal.get("revision"),
        "indicators": appeal.get("indicators") or [], "state": appeal.get("state"),
        "filed_at": ts(appeal.get("filed_at")), "decided_at": ts(appeal.get("decided_at")),
        "decided_by": appeal.get("decided_by"),
        "decisions": [drop_empty(d) for d in appeal.get("decision_items") or ()],
        "resulting_revision": appeal.get("resulting_revision")})


def red_view(doc: IntegrityListing) -> dict:
    return drop_empty({
        "listing_id": doc.listing_id, "institution_id": doc.institution_id, "year": doc.year,
        "district_code": doc.district_code, "incentives": list(doc.incentives or ()),
        "listed_on": doc.listed_on, "state": doc.state})


def black_view(doc: IntegrityListing, with_repairs: bool) -> dict:
    return drop_empty({
        "listing_id": doc.listing_id, "institution_id": doc.institution_id, "basis": doc.basis,
        "decision_ref": doc.decision_ref, "summary": doc.summary, "listed_on": doc.listed_on,
        "repair_from": doc.repair_from, "publish_until": doc.publish_until,
        "state": doc.state, "removed_on": doc.removed_on, "removal_reason": doc.removal_reason,
        "source_event_id": doc.source_event_id, "district_code": doc.district_code,
        "repairs": [drop_empty(dict(r)) for r in doc.repairs or ()] if with_repairs else []})


def entry_view(entry: dict, published: bool) -> dict:
    return drop_empty({
        "entry_id": entry["entry_id"], "kind": entry["kind"], "summary": entry.get("summary"),
        "recorded_on": entry.get("recorded_on"), "year": entry.get("year"),
        "basis": entry.get("basis"), "decision_ref": entry.get("decision_ref"),
        "source_service": entry.get("source_service"),
        "source_event_id": entry.get("source_event_id"), "published": published,
        "listing_id": entry.get("listing_id")})
