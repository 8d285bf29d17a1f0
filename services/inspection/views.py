"""Documents as the proto messages' dicts (the JSON mapping with proto field names)."""
from __future__ import annotations

from services.common.vocabulary import drop_empty
from services.inspection.domain import rules


def _clean(value):
    """drop_empty through nested dicts and lists of dicts."""
    if isinstance(value, dict):
        return drop_empty({k: _clean(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def plan_view(plan) -> dict:
    return _clean({
        "plan_id": plan.plan_id, "year": plan.year, "title": plan.title,
        "content": plan.content, "focus": list(plan.focus), "kinds": list(plan.kinds),
        "ratios": [{"stratum": s, "ratio_bp": plan.ratios.get(s, 0)}
                   for s in rules.DEFAULT_RATIOS_BP],
        "minimum_bp": plan.minimum_bp, "team_size": plan.team_size,
        "rounds": [dict(r) for r in plan.rounds], "created_on": plan.created_on})


def inspector_view(inspector) -> dict:
    return _clean({
        "inspector_id": inspector.inspector_id, "name": inspector.name,
        "employer_id": inspector.employer_id, "employer_name": inspector.employer_name,
        "region": inspector.region, "relations": [dict(r) for r in inspector.relations],
        "active": inspector.active, "registered_on": inspector.registered_on})


def draw_summary_view(draw) -> dict:
    return _clean({
        "draw_id": draw.draw_id, "plan_id": draw.plan_id, "round": draw.round,
        "state": draw.state, "pool_hash": draw.pool_hash,
        "algorithm_version": draw.algorithm_version, "seed_source": draw.seed_source,
        "seed_available_on": draw.seed_available_on, "committed_on": draw.committed_on,
        "seed_value": draw.seed_value, "revealed_on": draw.revealed_on,
        "supplementary": draw.supplementary, "pool_institutions": draw.pool_institutions,
        "pool_inspectors": draw.pool_inspectors, "drawn_count": draw.drawn_count})


def drawn_view(entry: dict) -> dict:
    return _clean({k: entry.get(k) for k in ("institution_id", "stratum", "ticket", "top_up",
                                             "inspector_ids", "unstaffed", "case_id")})


def draw_view(draw) -> dict:
    return _clean({
        "summary": draw_summary_view(draw),
        "strata": [{"stratum": name, **counts} for name, counts in sorted(draw.strata.items())],
        "excluded_institutions": [{"id": i, "reason": r} for i, r in draw.excluded_institutions],
        "excluded_inspectors": [{"id": i, "reason": r} for i, r in draw.excluded_inspectors],
        "drawn": [drawn_view(d) for d in draw.drawn],
        "recusals": [dict(r) for r in draw.recusals]})


def case_view(case) -> dict:
    return _clean({
        "case_id": case.case_id, "subject_kind": case.subject_kind,
        "subject_id": case.subject_id, "subject_name": case.subject_name,
        "institution_id": case.institution_id, "origin": case.origin, "kind": case.kind,
        "trigger_ids": list(case.trigger_ids), "opened_on": case.opened_on,
        "state": case.state, "plan_id": case.plan_id, "draw_id": case.draw_id,
        "inspector_ids": list(case.inspector_ids),
        "findings": [dict(f) for f in case.findings], "completed_on": case.completed_on,
        "inspection_summary": case.inspection_summary, "notice": dict(case.notice or {}),
        "statements": [dict(s) for s in case.statements],
        "statement_waived": case.statement_waived, "decision": _decision(case.decision),
        "outcomes": [dict(o) for o in case.outcomes], "review": dict(case.review or {}),
        "rectification": dict(case.rectification or {}),
        "proposed_tier": rules.proposed_tier(case.findings)})


def _decision(decision: dict | None) -> dict:
    decision = dict(decision or {})
    decision.pop("articles", None)
    return decision


def published_view(case) -> dict:
    """A case's public result (一公开): personal data masked, no complainant, no team."""
    decision = case.decision or {}
    review = case.review or {}
    return _clean({
        "case_id": case.case_id, "subject_kind": case.subject_kind,
        "subject_id": case.subject_id, "subject_name": rules.mask(case.subject_name or ""),
        "kind": case.kind, "origin": case.origin, "result_on": case.result_on,
        "findings": [rules.mask(f"{f['article']}: {f.get('summary', '')}")
                     for f in case.findings],
        "tier": decision.get("tier"), "decision_summary": rules.mask(decision.get("summary", "")),
        "basis": decision.get("basis"), "outcomes": list(case.outcome_kinds),
        "review_outcome": review.get("outcome"), "draw_id": case.draw_id})
