"""Inspection's handlers: one function per RPC, event and timer, `(command, uow, clock,
settings)`. No nameko here; the rules are in domain/, the queries in repository.py."""
from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import date, timedelta

from prometheus_client import Counter

from services.common import paging
from services.common.auth import Identity, require_own_institution
from services.common.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from services.common.identifiers import uscc_problem
from services.common.vocabulary import check_client_id, drop_empty, normalize_id, parse_date
from services.common.workdays import today_in_shanghai
from services.inspection.domain import draw as drawing
from services.inspection.domain import rules
from services.inspection.models import (
    InspectionCase,
    InspectionComplaint,
    InspectionDraw,
    InspectionPlan,
    InspectorRecord,
)
from services.inspection.views import (
    case_view,
    draw_summary_view,
    draw_view,
    drawn_view,
    inspector_view,
    plan_view,
    published_view,
)

log = logging.getLogger(__name__)

SYSTEM = Identity(subject="inspection", role="service")
COMMITTED, REVEALED = "DRAW_STATE_COMMITTED", "DRAW_STATE_REVEALED"
EVAL_ORG = rules.EVALUATION_ORGANISATION
COMPLAINT_CATEGORIES = ("certificate_sale", "fake_training", "exam_misconduct",
                        "out_of_scope_evaluation", "false_advertising", "subsidy_fraud",
                        "refund", "other")

CASES_OPENED = Counter("vocreg_inspection_cases_opened_total", "Cases opened, by origin.",
                       ["origin"])
DECISIONS = Counter("vocreg_inspection_decisions_total", "Decisions taken, by tier.", ["tier"])
COMPLAINTS_REFUSED = Counter("vocreg_inspection_complaints_rate_limited_total",
                             "Complaints refused for the caller's hourly allowance.")


def _today(clock) -> date:
    return today_in_shanghai(clock.now())


def _pause(_seconds=0) -> None:
    """Give the worker's other calls their turn (eventlet's yield in a worker)."""
    time.sleep(0)


def _enum(value, allowed, path: str, errors: list, required: bool = True) -> str:
    if value in (None, "", 0) or (isinstance(value, str) and value.endswith("_UNSPECIFIED")):
        if required:
            errors.append(f"{path}: required")
        return ""
    if value not in allowed:
        errors.append(f"{path}: not one of {', '.join(a.split('_', 2)[-1] for a in allowed)}")
        return ""
    return value


def _text(request: dict, key: str, errors: list, required: bool = True, path: str = "") -> str:
    value = (request.get(key) or "").strip()
    if required and not value:
        errors.append(f"{path or key}: required")
    return value


def _raise(errors: list) -> None:
    if errors:
        raise InvalidArgument(errors)


def _derived_id(*parts: str) -> str:
    """An id derived from what caused the record (an event's natural id): a redelivery finds
    the record it created."""
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


# --- plans (ch.5 art.1) ----------------------------------------------------------------------
def create_plan(cmd, uow, clock, settings):
    errors: list[str] = []
    checked = rules.check_plan(cmd.request, errors)
    _raise(errors)
    plan = uow.add(InspectionPlan(plan_id=uow.new_id(), created_on=_today(clock).isoformat(),
                                  **checked))
    return {"plan": _plan_answer(uow, plan)}


def _plan_answer(uow, plan) -> dict:
    view = plan_view(plan)
    draws = [uow.repo.tracked(InspectionDraw, d["draw_id"]) or uow.repo.read_draw(d["draw_id"])
             for d in plan.draws]
    view["draws"] = [draw_summary_view(d) for d in draws if d is not None]
    return view


def get_plan(cmd, uow, clock, settings):
    plan = uow.repo.read_plan((cmd.request.get("plan_id") or "").strip())
    if plan is None:
        raise NotFound("no such plan")
    return {"plan": _plan_answer(uow, plan)}


# --- the inspector register ------------------------------------------------------------------
def register_inspector(cmd, uow, clock, settings):
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    inspector_id = rules.check_id(request.get("inspector_id"), "inspector_id", errors)
    name = _text(request, "name", errors)
    employer_id = normalize_id(request.get("employer_id"))
    if not employer_id:
        errors.append("employer_id: required (the employer's unified social credit code)")
    elif uscc_problem(employer_id):
        errors.append(f"employer_id: {uscc_problem(employer_id)}")
    employer_name = _text(request, "employer_name", errors)
    region = _text(request, "region", errors)
    if region and not (region.isdigit() and len(region) in (2, 4, 6)):
        errors.append("region: a GB/T 2260 code (2, 4 or 6 digits)")
    relations = _merge_relations([], [rules.check_relation(r, f"relations[{i}]", errors, today)
                                      for i, r in enumerate(request.get("relations") or [])])
    _raise(errors)
    inspector = uow.add(InspectorRecord(
        inspector_id=inspector_id, name=name, employer_id=employer_id,
        employer_name=employer_name, region=region, relations=relations, active=True,
        registered_on=today.isoformat()),
        on_duplicate=lambda: FailedPrecondition(
            f"inspector {inspector_id} is already registered; declare relations with "
            "DeclareConflict", reason="INSPECTOR_EXISTS", subject=f"inspector/{inspector_id}"))
    return {"inspector": inspector_view(inspector)}


def _merge_relations(held: list[dict], new: list[dict]) -> list[dict]:
    """Relations keyed on (institution, kind): a newer declaration replaces the older."""
    merged = {(r["institution_id"], r["kind"]): dict(r) for r in held}
    for relation in new:
        merged[(relation["institution_id"], relation["kind"])] = relation
    return sorted(merged.values(), key=lambda r: (r["institution_id"], r["kind"]))


def declare_conflict(cmd, uow, clock, settings):
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    inspector_id = rules.check_id(request.get("inspector_id"), "inspector_id", errors)
    relation = rules.check_relation(request.get("relation") or {}, "relation", errors, today)
    _raise(errors)
    if cmd.caller.role == "inspector" and cmd.caller.subject != inspector_id:
        raise PermissionDenied("an inspector declares only their own relations",
                               reason="NOT_OWN_INSPECTOR")
    inspector = uow.repo.inspector(inspector_id)
    if inspector is None:
        raise NotFound(f"no inspector {inspector_id} in the register")
    merged = _merge_relations(list(inspector.relations), [relation])
    if merged != [dict(r) for r in inspector.relations]:
        inspector.relations = merged
    return {"inspector": inspector_view(inspector)}


def list_inspectors(cmd, uow, clock, settings):
    page = paging.page(cmd, clock.now())
    filters = {k: cmd.request[k].strip() for k in ("region", "employer_id")
               if (cmd.request.get(k) or "").strip()}
    rows, last = uow.repo.list_inspectors(filters, page.size, page.after)
    return {"inspectors": [inspector_view(i) for i in rows], "page": page.response(last)}


# --- draws ("双随机") -----------------------------------------------------------------------
def commit_draw(cmd, uow, clock, settings):
    """Fix and publish the pool before any randomness exists (see domain/draw.py)."""
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    plan_id = _text(request, "plan_id", errors)
    round_ = request.get("round") or 0
    if round_ < 1:
        errors.append("round: required, a round of the plan")
    seed_source = " ".join((request.get("seed_source") or "").split())
    if len(seed_source) < 8:
        errors.append("seed_source: required, the named future public value (e.g. a stated "
                      "lottery draw or beacon round), at least 8 characters")
    available = parse_date(request.get("seed_available_on"), "seed_available_on", errors)
    if available and available < today:
        errors.append("seed_available_on: in the past: the seed must not exist yet at commit")
    supplementary = bool(request.get("supplementary"))
    sample = request.get("sample_size") or 0
    if supplementary and sample < 1:
        errors.append("sample_size: required for a supplementary draw (1 or more)")
    if not supplementary and sample:
        errors.append("sample_size: only for a supplementary draw (a round's draw follows the "
                      "plan's ratios)")
    _raise(errors)
    plan = uow.repo.plan(plan_id)
    if plan is None:
        raise NotFound("no such plan")
    if round_ not in {r["round"] for r in plan.rounds}:
        raise InvalidArgument(f"round: the plan has no round {round_}")
    earlier = [d for d in plan.draws if d["round"] == round_]
    if not supplementary and earlier:
        raise FailedPrecondition(f"round {round_} already has its draw {earlier[0]['draw_id']}; "
                                 "commit a supplementary draw", reason="ROUND_ALREADY_DRAWN",
                                 subject=f"plan/{plan_id}")
    if supplementary and not earlier:
        raise FailedPrecondition(f"round {round_} has no draw to supplement yet",
                                 reason="NOTHING_TO_SUPPLEMENT", subject=f"plan/{plan_id}")
    if any(d.get("seed_source") == seed_source for d in plan.draws):
        raise FailedPrecondition("this seed source was named by an earlier draw of the plan: "
                                 "every draw needs a fresh seed", reason="SEED_SOURCE_REUSED",
                                 subject=f"plan/{plan_id}")
    pending = [d for d in earlier if getattr(uow.repo.read_draw(d["draw_id"]), "state", "")
               == COMMITTED]
    if pending:
        raise FailedPrecondition(f"draw {pending[0]['draw_id']} of this round is not revealed "
                                 "yet", reason="DRAW_NOT_REVEALED", subject=f"plan/{plan_id}")

    draw_id = uow.new_id()
    pool, strata, excluded_institutions, excluded_inspectors = _build_pool(
        uow, plan, round_, draw_id, seed_source, today, supplementary, sample)
    if not pool["inspectors"] or len(pool["inspectors"]) < plan.team_size:
        raise FailedPrecondition(f"fewer eligible inspectors ({len(pool['inspectors'])}) than "
                                 f"a team ({plan.team_size})", reason="TOO_FEW_INSPECTORS",
                                 subject=f"plan/{plan_id}")
    committed = drawing.pool_hash(pool)
    uow.repo.save_pool(draw_id, pool)
    draw = uow.add(InspectionDraw(
        draw_id=draw_id, plan_id=plan_id, round=round_, state=COMMITTED,
        supplementary=supplementary, pool_hash=committed,
        algorithm_version=drawing.ALGORITHM_VERSION, seed_source=seed_source,
        seed_available_on=available.isoformat(), committed_on=today.isoformat(),
        strata=strata, pool_institutions=sum(s["pool"] for s in strata.values()),
        pool_inspectors=len(pool["inspectors"]),
        excluded_institutions=excluded_institutions, excluded_inspectors=excluded_inspectors))
    plan.draws = [*plan.draws, {"draw_id": draw_id, "round": round_,
                                "supplementary": supplementary, "seed_source": seed_source}]
    uow.emit(draw, "DrawCommitted", {
        "draw_id": draw_id, "plan_id": plan_id, "round": round_, "pool_hash": committed,
        "algorithm_version": drawing.ALGORITHM_VERSION, "seed_source": seed_source},
        cmd.caller)
    return {"draw": draw_view(draw)}


def _build_pool(uow, plan, round_: int, draw_id: str, seed_source: str, today: date,
                supplementary: bool, sample: int):
    """The pool of a round's draw: filed institutions by grade (suspended ones, those under
    an open case and, for a supplementary draw, those drawn before in the round are left out
    with the reason), the active inspectors and every conflict between them."""
    open_cases = uow.repo.institutions_under_open_cases()
    drawn_before = uow.repo.drawn_in_round(plan.plan_id, round_) if supplementary else {}
    by_stratum: dict[str, list[str]] = {s: [] for s in rules.DEFAULT_RATIOS_BP}
    excluded: list[tuple[str, str]] = []
    for n, doc in enumerate(uow.repo.filed_institutions(), 1):
        institution_id = doc["_id"]
        if doc.get("status") == "INSTITUTION_STATUS_SUSPENDED":
            excluded.append((institution_id, "suspended during rectification"))
        elif institution_id in drawn_before:
            excluded.append((institution_id, f"drawn in draw {drawn_before[institution_id]}"))
        elif institution_id in open_cases:
            excluded.append((institution_id, f"under open case {open_cases[institution_id]}"))
        else:
            stratum = doc.get("grade") or "UNGRADED"
            by_stratum.setdefault(stratum if stratum in by_stratum else "UNGRADED",
                                  []).append(institution_id)
        if n % drawing.CHUNK == 0:
            _pause()
    if supplementary:
        ratios = {s: 0 for s in by_stratum}
        minimum = sample
    else:
        ratios = {s: plan.ratios.get(s, 0) for s in by_stratum}
        minimum = rules.minimum_count(sum(len(v) for v in by_stratum.values()), plan.minimum_bp)
    candidates = {i for ids in by_stratum.values() for i in ids}
    last_teams = uow.repo.last_teams()
    inspectors, conflicts, excluded_inspectors = [], [], []
    for doc in uow.repo.active_inspectors():
        inspector = {"inspector_id": doc["_id"], "employer_id": doc.get("employer_id"),
                     "relations": doc.get("relations") or []}
        inspectors.append(doc["_id"])
        for institution_id, reason in rules.conflicts_of(inspector, candidates, today,
                                                         last_teams):
            conflicts.append((doc["_id"], institution_id, reason))
    pool = drawing.build_pool(
        draw_id=draw_id, plan_id=plan.plan_id, round_=round_, seed_source=seed_source,
        strata={s: (ratios[s], ids) for s, ids in by_stratum.items()}, minimum_count=minimum,
        team_size=plan.team_size, inspectors=inspectors, conflicts=conflicts,
        excluded_institutions=excluded, excluded_inspectors=excluded_inspectors)
    strata = {s: {"pool": len(ids), "ratio_bp": ratios[s],
                  "sample": min(len(ids), drawing.sample_size(len(ids), ratios[s]))}
              for s, ids in by_stratum.items()}
    return pool, strata, pool["excluded_institutions"], pool["excluded_inspectors"]


def reveal_draw(cmd, uow, clock, settings):
    """The public value named at commit seeds the draw; a case opens for every institution
    drawn (non-random cases are opened elsewhere)."""
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    draw_id = _text(request, "draw_id", errors)
    seed_value = drawing.normalize_seed(request.get("seed_value") or "")
    if not seed_value:
        errors.append("seed_value: required, the public value as published")
    _raise(errors)
    draw = uow.repo.draw(draw_id)
    if draw is None:
        raise NotFound(f"no draw {draw_id} was committed: a draw is revealed only after its "
                       "commitment is published")
    if draw.state == REVEALED:
        raise FailedPrecondition(f"draw {draw_id} was already revealed on {draw.revealed_on} "
                                 "with its seed; a draw is revealed once",
                                 reason="DRAW_ALREADY_REVEALED", subject=f"draw/{draw_id}")
    if today.isoformat() < draw.seed_available_on:
        raise FailedPrecondition(f"the seed source is published on {draw.seed_available_on}: "
                                 "the draw cannot be revealed before",
                                 reason="SEED_NOT_AVAILABLE", subject=f"draw/{draw_id}")
    plan = uow.repo.plan(draw.plan_id)
    for other in plan.draws:
        earlier = uow.repo.read_draw(other["draw_id"])
        if earlier is not None and earlier.draw_id != draw_id and earlier.seed_value \
                and drawing.normalize_seed(earlier.seed_value) == seed_value:
            raise FailedPrecondition(f"draw {earlier.draw_id} of the plan used this seed "
                                     "value: every draw needs a fresh seed",
                                     reason="SEED_VALUE_REUSED", subject=f"draw/{draw_id}")
    pool = uow.repo.pool(draw_id)
    result = drawing.run(pool, seed_value, pause=_pause)
    round_kind = next((r["kind"] for r in plan.rounds if r["round"] == draw.round),
                      rules.KIND_DAILY)
    staffed = [e for e in result["drawn"] if not e["unstaffed"]]
    case_ids = {e["institution_id"]: _derived_id("draw", draw_id, e["institution_id"])
                for e in staffed}
    opened = uow.repo.existing_case_ids(list(case_ids.values()))  # a retry's, from before
    names = uow.repo.names([e["institution_id"] for e in staffed])
    drawn = []
    for n, entry in enumerate(result["drawn"], 1):
        entry = dict(entry)
        case_id = case_ids.get(entry["institution_id"])
        if case_id:
            entry["case_id"] = case_id
        if case_id and case_id not in opened:
            _open_case(uow, clock, case_id=case_id, subject_kind=EVAL_ORG,
                       subject_id=entry["institution_id"],
                       subject_name=names.get(entry["institution_id"], ""),
                       origin=rules.ORIGIN_DRAW, kind=round_kind, trigger_ids=[draw_id],
                       actor=cmd.caller, plan_id=draw.plan_id, draw_id=draw_id,
                       inspector_ids=entry["inspector_ids"])
        drawn.append(entry)
        if n % 200 == 0:
            _pause()
    draw.state, draw.seed_value, draw.revealed_on = REVEALED, seed_value, today.isoformat()
    draw.canonical_seed, draw.drawn, draw.drawn_count = result["canonical_seed"], drawn, len(drawn)
    uow.emit(draw, "DrawRevealed", {"draw_id": draw_id, "seed": seed_value,
                                    "institution_ids": [d["institution_id"] for d in drawn]},
             cmd.caller)
    return {"draw": draw_view(draw)}


def _record_of(uow, draw) -> dict:
    pool = uow.repo.pool(draw.draw_id) or {}
    result = None if draw.state != REVEALED else {
        "canonical_seed": draw.canonical_seed,
        "drawn": [{k: d.get(k) for k in ("institution_id", "stratum", "ticket", "top_up",
                                         "inspector_ids", "unstaffed")} for d in draw.drawn]}
    return drawing.record(pool, draw.pool_hash, draw.seed_value, result,
                          [dict(r) for r in draw.recusals], draw.committed_on,
                          draw.revealed_on or "", draw.seed_available_on or "")


def _draw_or_404(uow, request) -> InspectionDraw:
    draw = uow.repo.read_draw((request.get("draw_id") or "").strip())
    if draw is None:
        raise NotFound("no such draw")
    return draw


def verify_draw(cmd, uow, clock, settings):
    draw = _draw_or_404(uow, cmd.request)
    record = _record_of(uow, draw)
    problems = drawing.verify(record, pause=_pause)
    pool_matches = drawing.pool_hash(record["pool"]) == draw.pool_hash
    result_matches = draw.state == REVEALED and not any(
        p.startswith(("re-running", "the canonical seed")) for p in problems) and pool_matches
    return {"verified": not problems, "pool_matches": pool_matches,
            "result_matches": result_matches, "problems": problems,
            "pool_hash": draw.pool_hash}


def get_draw(cmd, uow, clock, settings):
    draw = _draw_or_404(uow, cmd.request)
    record = _record_of(uow, draw)
    return {"draw": draw_view(draw),
            "record_json": json.dumps(record, sort_keys=True, ensure_ascii=False)}


def list_draws(cmd, uow, clock, settings):
    page = paging.page(cmd, clock.now())
    plan_id = (cmd.request.get("plan_id") or "").strip()
    rows, last = uow.repo.list_draws({"plan_id": plan_id} if plan_id else {}, page.size,
                                     page.after)
    return {"draws": [draw_summary_view(d) for d in rows], "page": page.response(last)}


def recuse(cmd, uow, clock, settings):
    """Replace one inspector of one drawn inspection: the institution's walk over the ring
    goes one step further (domain/draw.py); no other inspection changes."""
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    draw_id = _text(request, "draw_id", errors)
    institution_id = normalize_id(request.get("institution_id"))
    if not institution_id:
        errors.append("institution_id: required")
    inspector_id = rules.check_id(request.get("inspector_id"), "inspector_id", errors)
    reason = _text(request, "reason", errors)
    _raise(errors)
    draw = uow.repo.draw(draw_id)
    if draw is None:
        raise NotFound("no such draw")
    if draw.state != REVEALED:
        raise FailedPrecondition("the draw is not revealed yet: nobody is drawn to recuse",
                                 reason="DRAW_NOT_REVEALED", subject=f"draw/{draw_id}")
    index = next((i for i, d in enumerate(draw.drawn) if d["institution_id"] == institution_id),
                 None)
    if index is None:
        raise NotFound(f"institution {institution_id} was not drawn in draw {draw_id}")
    entry = dict(draw.drawn[index])
    if inspector_id not in entry.get("inspector_ids", []):
        raise FailedPrecondition(f"inspector {inspector_id} is not on the team of this "
                                 "inspection", reason="NOT_ON_TEAM",
                                 subject=f"draw/{draw_id}/{institution_id}")
    recused = {r["inspector_id"] for r in draw.recusals if r["institution_id"] == institution_id}
    team = drawing.team_for(uow.repo.pool(draw_id), draw.seed_value, institution_id,
                            recused | {inspector_id})
    if not team:
        raise FailedPrecondition("no other eligible inspector is left for this inspection",
                                 reason="NO_REPLACEMENT",
                                 subject=f"draw/{draw_id}/{institution_id}")
    replaced_by = next(i for i in team if i not in entry["inspector_ids"])
    recusal = {"institution_id": institution_id, "inspector_id": inspector_id,
               "reason": reason, "replaced_by": replaced_by, "recused_on": today.isoformat()}
    entry["inspector_ids"] = team
    draw.drawn = [*draw.drawn[:index], entry, *draw.drawn[index + 1:]]
    draw.recusals = [*draw.recusals, recusal]
    case = uow.repo.case(entry.get("case_id") or "")
    if case is not None:
        case.inspector_ids = team
    uow.emit(draw, "InspectorRecused", {"draw_id": draw_id, "institution_id": institution_id,
                                        "inspector_id": inspector_id, "replaced_by": replaced_by,
                                        "reason": reason}, cmd.caller)
    return {"inspection": drawn_view(entry), "recusal": recusal}


# --- "一公开" -----------------------------------------------------------------------------
def list_published_results(cmd, uow, clock, settings):
    page = paging.page(cmd, clock.now())
    filters = {}
    institution_id = normalize_id(cmd.request.get("institution_id"))
    if institution_id:
        filters["institution_id"] = institution_id
    if cmd.request.get("kind") and cmd.request["kind"] != "INSPECTION_KIND_UNSPECIFIED":
        filters["kind"] = cmd.request["kind"]
    rows, last = uow.repo.list_published(filters, page.size, page.after)
    return {"results": [published_view(c) for c in rows], "page": page.response(last)}


# --- cases: opening them -----------------------------------------------------------------------
def _open_case(uow, clock, *, case_id: str, subject_kind: str, subject_id: str,
               subject_name: str, origin: str, kind: str, trigger_ids, actor,
               plan_id: str = "", draw_id: str = "", inspector_ids=(), note: str = "",
               on_duplicate=None):
    today = _today(clock)
    institution_id = subject_id if subject_kind == EVAL_ORG else ""
    case = uow.add(InspectionCase(
        case_id=case_id, subject_kind=subject_kind, subject_id=subject_id,
        subject_name=subject_name, institution_id=institution_id, origin=origin, kind=kind,
        trigger_ids=list(trigger_ids), opened_on=today.isoformat(), opened_at=clock.now(),
        state=rules.OPEN, plan_id=plan_id, draw_id=draw_id, inspector_ids=list(inspector_ids),
        note=note), on_duplicate=on_duplicate)
    uow.emit(case, "CaseOpened", {
        "case_id": case_id, "subject_kind": subject_kind, "subject_id": subject_id,
        "institution_id": institution_id, "origin": origin, "kind": kind,
        "trigger_ids": list(trigger_ids), "opened_on": today.isoformat()}, actor)
    CASES_OPENED.labels(origin.replace("CASE_ORIGIN_", "").lower()).inc()
    return case


def _trigger(uow, clock, *, subject_kind: str, subject_id: str, subject_name: str,
             origin: str, trigger_id: str, note: str, actor=SYSTEM):
    """A complaint or an anomaly: it joins the subject's open special case, or opens one
    (recorded as non-random, with the triggering ids).

    Two triggers of one subject may arrive at once (two workers, or two events handled side by
    side): the case they would open has an id derived from the subject and how many special
    cases it has had, so only one insert wins; the other is a Conflict, and its event is
    delivered again and joins the case the first opened.

    The count of the subject's special cases is read first: a case another trigger opens
    after it collides with the id derived from it. Read last, it could count a case written
    after the two lookups missed it (a redelivery of the same trigger racing the first
    delivery), and open a second case for the same trigger under the next id."""
    origins = (rules.ORIGIN_COMPLAINT, rules.ORIGIN_ANOMALY)
    generation = uow.repo.special_cases_opened(subject_kind, subject_id, origins)
    recorded = uow.repo.case_with_trigger(trigger_id)
    if recorded is not None:  # this very trigger was recorded before (a redelivery)
        return recorded
    case = uow.repo.open_special_case(subject_kind, subject_id, origins)
    if case is not None:
        if trigger_id not in case.trigger_ids:  # read after a racing copy of it joined
            case.trigger_ids = [*case.trigger_ids, trigger_id]
            if note and note not in (case.note or ""):
                case.note = "; ".join(filter(None, [case.note, note]))
        return case
    case_id = _derived_id("special", subject_kind, subject_id, str(generation))
    return _open_case(
        uow, clock, case_id=case_id, subject_kind=subject_kind, subject_id=subject_id,
        subject_name=subject_name, origin=origin, kind=rules.KIND_SPECIAL,
        trigger_ids=[trigger_id], actor=actor, note=note,
        on_duplicate=lambda: Conflict(f"another trigger opened {subject_id}'s special case at "
                                      "the same moment; this one joins it when retried"))


def _check_subject(request: dict, errors: list) -> tuple[str, str, str]:
    subject_kind = _enum(request.get("subject_kind"), rules.SUBJECT_KINDS, "subject_kind", errors)
    subject_id = (request.get("subject_id") or "").strip()
    if subject_kind == EVAL_ORG:
        subject_id = normalize_id(subject_id)
        problem = uscc_problem(subject_id)
        if problem:
            errors.append(f"subject_id: an evaluation organisation's unified social credit "
                          f"code {problem}")
    elif not subject_id:
        errors.append("subject_id: required (a credit code, a name or a web address)")
    return subject_kind, subject_id, (request.get("subject_name") or "").strip()


def file_complaint(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    subject_kind, subject_id, subject_name = _check_subject(request, errors)
    category = (request.get("category") or "").strip().lower()
    if category not in COMPLAINT_CATEGORIES:
        errors.append(f"category: one of {', '.join(COMPLAINT_CATEGORIES)}")
    description = (request.get("description") or "").strip()
    if len(description) < 10:
        errors.append("description: required, at least 10 characters saying what happened")
    _raise(errors)
    caller_key = hashlib.sha256(cmd.caller.audit_name().encode()).hexdigest()[:32]
    limit = settings.anonymous_complaints_per_hour if cmd.caller.anonymous \
        else settings.complaints_per_hour
    now = clock.now()
    if uow.repo.complaints_since(caller_key, now - timedelta(hours=1)) >= limit:
        COMPLAINTS_REFUSED.inc()
        raise ResourceExhausted(f"at most {limit} complaints an hour from one caller; try "
                                "again later", reason="COMPLAINT_RATE_LIMITED",
                                metadata={"limit_per_hour": str(limit)})
    complaint_id = uow.new_id()
    complaint = uow.add(InspectionComplaint(
        complaint_id=complaint_id, subject_kind=subject_kind, subject_id=subject_id,
        subject_name=subject_name, category=category, description=description,
        contact=(request.get("contact") or "").strip(), caller_key=caller_key, filed_at=now))
    uow.emit(complaint, "ComplaintFiled", {
        "complaint_id": complaint_id, "subject_kind": subject_kind, "subject_id": subject_id,
        "institution_id": subject_id if subject_kind == EVAL_ORG else "",
        "category": category}, "anonymous" if cmd.caller.anonymous else cmd.caller)
    case = _trigger(uow, clock, subject_kind=subject_kind, subject_id=subject_id,
                    subject_name=subject_name or _name_of(uow, subject_kind, subject_id),
                    origin=rules.ORIGIN_COMPLAINT, trigger_id=f"complaint:{complaint_id}",
                    note=f"complaint: {category}")
    complaint.case_id = case.case_id
    return {"complaint_id": complaint_id, "case_id": case.case_id}


def _name_of(uow, subject_kind: str, subject_id: str) -> str:
    if subject_kind != EVAL_ORG:
        return ""
    view = uow.repo.institution(subject_id)
    return view.name if view and view.name else ""


def open_case(cmd, uow, clock, settings):
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    subject_kind, subject_id, subject_name = _check_subject(request, errors)
    kind = _enum(request.get("kind"), rules.KINDS, "kind", errors)
    origin = _enum(request.get("origin"), rules.HAND_ORIGINS, "origin", errors)
    trigger_ids = [t.strip() for t in request.get("trigger_ids") or [] if t.strip()]
    if origin in (rules.ORIGIN_COMPLAINT, rules.ORIGIN_ANOMALY) and not trigger_ids:
        errors.append("trigger_ids: required for a case opened on a complaint or an anomaly")
    inspector_ids = list(dict.fromkeys(
        check_client_id(i, f"inspector_ids[{n}]", errors)
        for n, i in enumerate(request.get("inspector_ids") or [])))
    if len(inspector_ids) < rules.MIN_TEAM_SIZE:
        errors.append(f"inspector_ids: at least {rules.MIN_TEAM_SIZE} inspectors per inspection")
    _raise(errors)
    last_teams = uow.repo.last_teams()
    for inspector_id in inspector_ids:
        inspector = uow.repo.read_inspector(inspector_id)
        if inspector is None or not inspector.active:
            raise FailedPrecondition(f"inspector {inspector_id} is not in the register",
                                     reason="INSPECTOR_UNKNOWN",
                                     subject=f"inspector/{inspector_id}")
        conflicts = rules.conflicts_of(
            {"inspector_id": inspector_id, "employer_id": inspector.employer_id,
             "relations": list(inspector.relations)}, {subject_id}, today, last_teams)
        if conflicts:
            raise FailedPrecondition(f"inspector {inspector_id} may not inspect {subject_id}: "
                                     f"{conflicts[0][1]}", reason="INSPECTOR_CONFLICT",
                                     subject=f"inspector/{inspector_id}")
    case = _open_case(uow, clock, case_id=uow.new_id(), subject_kind=subject_kind,
                      subject_id=subject_id,
                      subject_name=subject_name or _name_of(uow, subject_kind, subject_id),
                      origin=origin, kind=kind, trigger_ids=trigger_ids, actor=cmd.caller,
                      inspector_ids=inspector_ids, note=(request.get("note") or "").strip())
    return {"case": case_view(case)}


# --- cases: reading ---------------------------------------------------------------------------
def _readable_case(cmd, uow) -> InspectionCase:
    case = uow.repo.read_case((cmd.request.get("case_id") or "").strip())
    if case is None:
        raise NotFound("no such case")
    _check_reader(cmd.caller, case)
    return case


def _check_reader(caller: Identity, case) -> None:
    if caller.role == "institution":
        require_own_institution(caller, case.institution_id or "", "case")


def get_case(cmd, uow, clock, settings):
    return {"case": case_view(_readable_case(cmd, uow))}


def list_cases(cmd, uow, clock, settings):
    page = paging.page(cmd, clock.now())
    request = cmd.request
    filters = {}
    institution_id = normalize_id(request.get("institution_id"))
    if cmd.caller.role == "institution":
        if institution_id and institution_id != cmd.caller.institution_id:
            require_own_institution(cmd.caller, institution_id, "case list")
        institution_id = cmd.caller.institution_id
    if institution_id:
        filters["institution_id"] = institution_id
    for key, field in (("subject_kind", "subject_kind"), ("state", "state"),
                       ("origin", "origin"), ("kind", "kind"), ("outcome", "outcome_kinds")):
        value = request.get(key)
        if value and not str(value).endswith("_UNSPECIFIED"):
            filters[field] = value
    rows, last = uow.repo.list_cases(filters, page.size, page.after)
    return {"cases": [case_view(c) for c in rows], "page": page.response(last)}


# --- findings and the inspection (ch.4 art.4, ch.6 art.1-4) ---------------------------------------
def _case_for_change(cmd, uow) -> InspectionCase:
    case_id = (cmd.request.get("case_id") or "").strip()
    if not case_id:
        raise InvalidArgument("case_id: required")
    case = uow.repo.case(case_id)
    if case is None:
        raise NotFound("no such case")
    return case


def _check_inspector(caller: Identity, case) -> None:
    if caller.role == "inspector" and caller.subject not in case.inspector_ids:
        raise PermissionDenied("only the inspectors of the case's team (or the regulator) "
                               "record its findings", reason="NOT_ON_TEAM")


def _refuse(case, message: str, reason: str):
    raise FailedPrecondition(message, reason=reason, subject=f"case/{case.case_id}")


def record_finding(cmd, uow, clock, settings):
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    found = rules.article(request.get("article") or "")
    if found is None:
        errors.append("article: must cite seed 001 \"ch.6 art.N(M)\" (art.1(1)-(4), "
                      "art.2(1)-(8), art.3(1)-(8), art.4(1)-(10)) or seed 002 \"002 §二(三)N\" "
                      "(1-5)")
    summary = _text(request, "summary", errors)
    facts = _text(request, "facts", errors, required=False)
    _raise(errors)
    case = _case_for_change(cmd, uow)
    _check_inspector(cmd.caller, case)
    if case.state not in (rules.OPEN, rules.INSPECTED):
        _refuse(case, "findings are recorded before the intended decision is notified",
                "CASE_PAST_FINDINGS")
    if not rules.article_fits_subject(found, case.subject_kind):
        raise InvalidArgument(f"article: {found.citation} (seed 001 ch.6) binds filed evaluation "
                              "organisations; cite seed 002 §二(三) for this subject")
    finding = _finding(uow, case, found, summary, facts, today, cmd.caller.audit_name())
    return {"finding": finding, "case": case_view(case)}


def _finding(uow, case, found, summary: str, facts: str, today: date, by: str,
             actor=None) -> dict:
    warnings = uow.repo.accepted_warnings(case.institution_id) if case.institution_id else []
    tier, basis, after = rules.finding_tier(found, case.subject_kind, warnings)
    finding = {"finding_id": uow.new_id(), "article": found.citation, "tier": tier,
               "summary": summary, "facts": facts, "recorded_on": today.isoformat(),
               "recorded_by": by, "escalation_basis": basis,
               "escalated_after_decision": after}
    case.findings = [*case.findings, {k: v for k, v in finding.items() if v != ""}]
    uow.emit(case, "FindingRecorded", {
        "case_id": case.case_id, "finding_id": finding["finding_id"],
        "institution_id": case.institution_id, "article": found.citation, "tier": tier,
        "summary": summary, "escalation_basis": basis, "escalated_after_decision": after},
        actor or by)
    return {k: v for k, v in finding.items() if v != ""}


def complete_inspection(cmd, uow, clock, settings):
    today = _today(clock)
    case = _case_for_change(cmd, uow)
    _check_inspector(cmd.caller, case)
    if case.state != rules.OPEN:
        _refuse(case, "the inspection was already completed", "INSPECTION_COMPLETED")
    case.completed_on = today.isoformat()
    case.inspection_summary = (cmd.request.get("summary") or "").strip()
    if case.findings:
        case.state = rules.INSPECTED
    else:  # nothing found: the result is published as it is
        case.state, case.published, case.result_on = rules.CLOSED, True, today.isoformat()
    uow.emit(case, "InspectionCompleted", {
        "case_id": case.case_id, "subject_kind": case.subject_kind,
        "subject_id": case.subject_id, "institution_id": case.institution_id,
        "kind": case.kind, "completed_on": today.isoformat(),
        "problems_found": len(case.findings)}, cmd.caller)
    return {"case": case_view(case)}


# --- due process (ch.6 art.7-8) ------------------------------------------------------------------
def notify_intended_decision(cmd, uow, clock, settings):
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    tier = request.get("tier") or rules.TIER_NONE
    if tier not in rules.TIERS:
        errors.append("tier: unknown tier")
    facts = _text(request, "facts", errors)
    reasons = _text(request, "reasons", errors)
    basis = (request.get("basis") or "").strip()
    delivery = _enum(request.get("delivery"), rules.DELIVERIES, "delivery", errors)
    _raise(errors)
    case = _case_for_change(cmd, uow)
    if case.state == rules.OPEN:
        _refuse(case, "complete the inspection first: the notice states its facts",
                "INSPECTION_NOT_COMPLETED")
    if case.state != rules.INSPECTED:
        _refuse(case, "the intended decision was already notified", "ALREADY_NOTIFIED")
    proposed = rules.proposed_tier(case.findings)
    tier = tier if tier != rules.TIER_NONE else proposed
    if rules.TIER_NUMBER[tier] > rules.TIER_NUMBER[proposed]:
        raise InvalidArgument(f"tier: heavier than the findings propose ({proposed})")
    basis = basis or "; ".join(sorted({f"001 {f['article']}" if f["article"].startswith("ch.")
                                       else f["article"] for f in case.findings}))
    due = rules.statement_due(settings.calendar, today, settings.statement_days)
    case.notice = {"tier": tier, "facts": facts, "reasons": reasons, "basis": basis,
                   "delivery": delivery, "notified_on": today.isoformat(),
                   "statement_due": due.to_dict()}
    case.state = rules.NOTIFIED
    uow.emit(case, "IntendedDecisionNotified", {
        "case_id": case.case_id, "institution_id": case.institution_id, "tier": tier,
        "basis": basis, "delivery": delivery, "notified_on": today.isoformat(),
        "statement_due": due.to_dict()}, cmd.caller)
    return {"case": case_view(case)}


def _own_case(cmd, uow) -> InspectionCase:
    case = _case_for_change(cmd, uow)
    if not case.institution_id:
        raise PermissionDenied("the case is not against a filed institution",
                               reason="NOT_OWN_INSTITUTION")
    require_own_institution(cmd.caller, case.institution_id, "case")
    return case


def state_case(cmd, uow, clock, settings):
    request, today = cmd.request, _today(clock)
    statement = (request.get("statement") or "").strip()
    waive = bool(request.get("waive"))
    if not statement and not waive:
        raise InvalidArgument("statement: required unless the statement period is waived")
    case = _own_case(cmd, uow)
    if case.state not in (rules.NOTIFIED, rules.AWAITING):
        _refuse(case, "no intended decision awaits a statement", "NOT_NOTIFIED")
    due = case.notice["statement_due"]["date"]
    if today.isoformat() > due or case.statement_waived:
        _refuse(case, f"the statement period ended on {due}" if not case.statement_waived
                else "the statement period was waived", "STATEMENT_PERIOD_OVER")
    if statement:
        case.statements = [*case.statements, {"text": statement, "stated_on": today.isoformat()}]
    if waive:
        case.statement_waived = True
        case.state = rules.AWAITING
    return {"case": case_view(case)}


def decide(cmd, uow, clock, settings):
    """The written decision. Its effects travel in SanctionDecided (and one
    CaseOutcomeRecorded per outcome): filing suspends or terminates, certificates voids or
    withdraws, grading records the integrity file and the black list."""
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    tier = request.get("tier") or rules.TIER_NONE
    if tier not in rules.TIERS:
        errors.append("tier: unknown tier")
        tier = rules.TIER_NONE
    summary = _text(request, "summary", errors)
    outcomes = rules.check_outcomes(request.get("outcomes") or [], errors, today)
    selection = request.get("certificates") or {}
    numbers = list(dict.fromkeys(normalize_id(n) for n in selection.get("certificate_numbers")
                                 or [] if normalize_id(n)))
    session = (selection.get("exam_session_id") or "").strip()
    interview = request.get("interview") or {}
    held_on = parse_date(interview.get("held_on"), "interview.held_on", errors, required=False)
    due_text = (request.get("rectification_due") or "").strip()
    due = parse_date(due_text, "rectification_due", errors, required=False)
    _raise(errors)
    case = _case_for_change(cmd, uow)
    refusal = rules.may_decide(case.state, case.statement_waived,
                               (case.notice or {}).get("statement_due", {}).get("date", ""), today)
    if refusal:
        _refuse(case, f"cannot decide yet: {refusal}" if case.state in
                (rules.NOTIFIED, rules.OPEN, rules.INSPECTED) else refusal,
                "STATEMENT_PERIOD_OPEN" if case.state == rules.NOTIFIED else "CANNOT_DECIDE")
    notified = case.notice["tier"]
    tier = tier if tier != rules.TIER_NONE else notified
    errors = []
    if rules.TIER_NUMBER[tier] > rules.TIER_NUMBER[notified]:
        errors.append(f"tier: heavier than the intended decision notified ({notified}); notify "
                      "again")
    if tier == rules.TIER_NONE and not outcomes:
        errors.append("outcomes: a decision without a ch.6 tier states its outcomes "
                      "(seed 002 §二(三))")
    if tier == rules.TIER_1 and not numbers:
        errors.append("certificates.certificate_numbers: required for tier 1 (the named "
                      "certificates are invalidated)")
    if tier == rules.TIER_3 and (numbers or session):
        errors.append("certificates: a warning (tier 3) voids no certificates")
    if tier == rules.TIER_2 and (not held_on or not (interview.get("interviewee_role") or "").strip()):
        errors.append("interview: tier 2 records the interview of the head (held_on, "
                      "interviewee_role)")
    if held_on and held_on > today:
        errors.append("interview.held_on: in the future")
    if tier != rules.TIER_3 and due:
        errors.append("rectification_due: only a warning (tier 3) has a rectification deadline")
    if tier == rules.TIER_3 and due and due <= today:
        errors.append("rectification_due: must be after today")
    if (numbers or session) and case.subject_kind != EVAL_ORG:
        errors.append("certificates: only an evaluation organisation's certificates are acted on")
    _raise(errors)
    effects = rules.decision_effects(tier, case.subject_kind)
    decision_id = uow.new_id()
    reason = selection.get("reason") or _reason_of(case.findings)
    certificates = drop_empty({
        "certificate_numbers": numbers, "exam_session_id": session, "reason": reason,
        "withdraw_data": bool(selection.get("withdraw_data")),
        "recover_subsidies": bool(selection.get("recover_subsidies"))}) \
        if (numbers or session) else {}
    rectification_on = ""
    if tier == rules.TIER_3:
        rectification_on = (due or rules.rectification_due(
            settings.calendar, today, settings.rectification_days).date).isoformat()
        case.rectification = {"state": rules.RECT_ORDERED, "due_on": rectification_on,
                              "reports": []}
    review = rules.review_due(settings.calendar, today, settings.review_days)
    basis = (request.get("basis") or "").strip() or case.notice.get("basis", "")
    articles = sorted({f["article"] for f in case.findings})
    case.decision = {
        "decision_id": decision_id, "tier": tier, "basis": basis, "summary": summary,
        "decided_on": today.isoformat(), "certificates": certificates,
        "interview": {"held_on": held_on.isoformat(),
                      "interviewee_role": interview.get("interviewee_role", "").strip(),
                      "record": (interview.get("record") or "").strip()} if held_on else {},
        **effects, "review_due": review.to_dict(), "rectification_due": rectification_on,
        "articles": articles}
    case.state, case.published, case.result_on = rules.DECIDED, True, today.isoformat()
    uow.emit(case, "SanctionDecided", {
        "decision_id": decision_id, "case_id": case.case_id, "subject_kind": case.subject_kind,
        "subject_id": case.subject_id, "institution_id": case.institution_id, "tier": tier,
        "basis": basis, "summary": summary, "decided_on": today.isoformat(),
        "rectification_due": rectification_on, "certificates": certificates, **effects,
        "interview_held_on": held_on.isoformat() if held_on else "",
        "interviewee_role": (interview.get("interviewee_role") or "").strip(),
        "articles": articles}, cmd.caller)
    recorded = []
    for outcome in outcomes:
        entry = {"outcome_id": uow.new_id(), **outcome}
        recorded.append(entry)
        uow.emit(case, "CaseOutcomeRecorded", {
            "case_id": case.case_id, "outcome_id": entry["outcome_id"],
            "subject_kind": case.subject_kind, "subject_id": case.subject_id,
            "institution_id": case.institution_id, "outcome": outcome["outcome"],
            "amount_fen": outcome["amount_fen"], "authority": outcome["authority"],
            "due_on": outcome["due_on"], "decided_on": today.isoformat()}, cmd.caller)
    case.outcomes = [*case.outcomes, *recorded]
    case.outcome_kinds = sorted({*case.outcome_kinds, *(o["outcome"] for o in recorded)})
    DECISIONS.labels(tier.replace("SANCTION_TIER_", "").lower()).inc()
    return {"case": case_view(case)}


def _reason_of(findings: list[dict]) -> str:
    for finding in findings:
        found = rules.article(finding["article"])
        if found and found.invalidation_reason:
            return found.invalidation_reason
    return "INVALIDATION_REASON_FRAUD"


def request_review(cmd, uow, clock, settings):
    today = _today(clock)
    grounds = (cmd.request.get("grounds") or "").strip()
    if not grounds:
        raise InvalidArgument("grounds: required")
    case = _own_case(cmd, uow)
    decision = case.decision or {}
    if not decision:
        _refuse(case, "no decision to review", "NOT_DECIDED")
    if case.review:
        _refuse(case, "the decision's review was already requested", "REVIEW_ALREADY_REQUESTED")
    due = decision["review_due"]["date"]
    if today.isoformat() > due:
        _refuse(case, f"the review period ended on {due} (15 working days after the "
                      "decision)", "REVIEW_PERIOD_OVER")
    review_id = uow.new_id()
    case.review = {"review_id": review_id, "grounds": grounds, "requested_on": today.isoformat()}
    case.state = rules.UNDER_REVIEW
    uow.emit(case, "ReviewRequested", {
        "case_id": case.case_id, "decision_id": decision["decision_id"],
        "institution_id": case.institution_id, "review_id": review_id,
        "requested_on": today.isoformat()}, cmd.caller)
    return {"case": case_view(case)}


def decide_review(cmd, uow, clock, settings):
    request, today = cmd.request, _today(clock)
    errors: list[str] = []
    outcome = _enum(request.get("outcome"), (rules.UPHELD, rules.OVERTURNED), "outcome", errors)
    reasons = _text(request, "reasons", errors)
    _raise(errors)
    case = _case_for_change(cmd, uow)
    if case.state != rules.UNDER_REVIEW:
        _refuse(case, "no review is pending on this case", "NO_REVIEW_PENDING")
    decision = case.decision
    case.review = {**case.review, "outcome": outcome, "reasons": reasons,
                   "decided_on": today.isoformat()}
    case.state = rules.CLOSED
    if outcome == rules.UPHELD:
        uow.emit(case, "DecisionUpheld", {
            "case_id": case.case_id, "decision_id": decision["decision_id"],
            "institution_id": case.institution_id, "review_id": case.review["review_id"],
            "upheld_on": today.isoformat()}, cmd.caller)
        return {"case": case_view(case)}
    if (case.rectification or {}).get("state") in (rules.RECT_ORDERED, rules.RECT_SUBMITTED):
        case.rectification = {**case.rectification, "state": rules.RECT_VOID}
    uow.emit(case, "DecisionReversed", {
        "decision_id": decision["decision_id"], "case_id": case.case_id,
        "institution_id": case.institution_id, "review_id": case.review["review_id"],
        "reason": reasons, "reversed_on": today.isoformat()}, cmd.caller)
    return {"case": case_view(case)}


# --- rectification (ch.6 art.3, art.3(5), art.4(6)) ------------------------------------------------
def _rectification(case) -> dict:
    rectification = case.rectification or {}
    if not rectification:
        _refuse(case, "the case's decision orders no rectification", "NO_RECTIFICATION")
    return rectification


def submit_rectification(cmd, uow, clock, settings):
    today = _today(clock)
    report = (cmd.request.get("report") or "").strip()
    if not report:
        raise InvalidArgument("report: required")
    case = _own_case(cmd, uow)
    rectification = _rectification(case)
    if rectification["state"] not in (rules.RECT_ORDERED, rules.RECT_SUBMITTED):
        _refuse(case, f"the rectification is {rectification['state'].split('_')[-1].lower()}",
                "RECTIFICATION_CLOSED")
    if today.isoformat() > rectification["due_on"]:
        _refuse(case, f"the rectification deadline was {rectification['due_on']}",
                "RECTIFICATION_OVERDUE")
    case.rectification = {**rectification, "state": rules.RECT_SUBMITTED,
                          "reports": [*rectification.get("reports", []),
                                      {"text": report, "stated_on": today.isoformat()}]}
    return {"case": case_view(case)}


def accept_rectification(cmd, uow, clock, settings):
    today = _today(clock)
    case = _case_for_change(cmd, uow)
    rectification = _rectification(case)
    if rectification["state"] != rules.RECT_SUBMITTED:
        _refuse(case, "no rectification report awaits acceptance", "NOTHING_SUBMITTED")
    notes = (cmd.request.get("notes") or "").strip()
    if not cmd.request.get("accept"):
        case.rectification = {**rectification, "state": rules.RECT_ORDERED, "notes": notes}
        if today.isoformat() > rectification["due_on"]:  # sent back after the deadline
            _overdue(uow, clock, case)
        return {"case": case_view(case)}
    case.rectification = {**rectification, "state": rules.RECT_ACCEPTED,
                          "accepted_on": today.isoformat(), "notes": notes}
    uow.emit(case, "RectificationAccepted", {
        "decision_id": case.decision["decision_id"], "case_id": case.case_id,
        "institution_id": case.institution_id, "accepted_on": today.isoformat()}, cmd.caller)
    return {"case": case_view(case)}


def _overdue(uow, clock, case) -> InspectionCase:
    """A missed rectification deadline is itself a tier-3 finding (ch.6 art.3(5)), in a new
    case; the suspension stays until a rectification is accepted."""
    today = _today(clock)
    decision_id = case.decision["decision_id"]
    new_id = _derived_id("overdue", decision_id)
    follow = uow.repo.case(new_id) or _open_case(
        uow, clock, case_id=new_id, subject_kind=case.subject_kind, subject_id=case.subject_id,
        subject_name=case.subject_name, origin=rules.ORIGIN_ANOMALY, kind=rules.KIND_SPECIAL,
        trigger_ids=[decision_id], actor=SYSTEM,
        note=f"rectification of decision {decision_id} not completed by "
             f"{case.rectification['due_on']}")
    if not follow.findings:
        _finding(uow, follow, rules.ARTICLES[rules.OVERDUE_RECTIFICATION],
                 f"整改期限{case.rectification['due_on']}届满未完成整改(决定{decision_id})", "",
                 today, SYSTEM.audit_name(), SYSTEM)
    case.rectification = {**case.rectification, "state": rules.RECT_OVERDUE,
                          "overdue_case_id": new_id}
    uow.emit(case, "RectificationOverdue", {
        "decision_id": decision_id, "case_id": case.case_id,
        "institution_id": case.institution_id, "due_on": case.rectification["due_on"],
        "new_case_id": new_id}, SYSTEM)
    return follow


# --- the sweep: due-process clocks on the working-day calendar --------------------------------------
def sweep(uow, clock, settings):
    """Statement periods that ended (a decision may now be taken), review periods that ended
    (the decision is final), rectification deadlines missed (a tier-3 finding). Each case is
    its own step: one changed meanwhile waits for the next sweep."""
    today = _today(clock)
    done = {"awaiting_decision": 0, "final": 0, "overdue": 0}
    for case_id in uow.repo.cases_for_sweep(today.isoformat()):
        time.sleep(0)
        with uow.step(f"case {case_id}") as step:
            case = uow.repo.case(case_id)
            if case is None:
                continue
            what = _sweep_case(uow, clock, case, today)
        if step.done and what:
            done[what] += 1
        uow.forget(list(uow.repo.seen))
    return done


def _sweep_case(uow, clock, case, today: date) -> str:
    iso = today.isoformat()
    if case.state == rules.NOTIFIED and case.notice["statement_due"]["date"] < iso:
        case.state = rules.AWAITING
        return "awaiting_decision"
    if case.state == rules.DECIDED and case.decision["review_due"]["date"] < iso:
        case.state = rules.CLOSED
        return "final"
    rectification = case.rectification or {}
    if rectification.get("state") == rules.RECT_ORDERED and rectification["due_on"] < iso:
        _overdue(uow, clock, case)
        return "overdue"
    return ""


# --- others' facts: filing's register, grading's grades, monitoring anomalies ------------------------
STATUS_BY_FILING_EVENT = {
    "InstitutionFiled": "INSTITUTION_STATUS_ACTIVE",
    "InstitutionReinstated": "INSTITUTION_STATUS_ACTIVE",
    "FilingRenewed": "INSTITUTION_STATUS_ACTIVE",
    "InstitutionSuspended": "INSTITUTION_STATUS_SUSPENDED",
    "FilingTerminated": "INSTITUTION_STATUS_TERMINATED",
    "FilingExpired": "INSTITUTION_STATUS_EXPIRED",
}


def filing_status_changed(event, uow, clock, settings):
    """Filing's status of an institution (the draw's candidates), applied in filing's
    sequence order whatever order the bus delivers in."""
    event_type = type(event).DESCRIPTOR.name
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        log.warning("%s %s without institution_id: ignored", event_type, event.meta.event_id)
        return False
    details = {}
    if event_type in ("InstitutionFiled", "FilingRenewed") and event.HasField("receipt"):
        details["name"] = event.receipt.institution_name
    if event_type == "InstitutionFiled" and event.district_code:
        details["district_code"] = event.district_code
    return uow.repo.set_institution_status(institution_id, STATUS_BY_FILING_EVENT[event_type],
                                           event.meta.sequence, details)


GRADE_NAMES = {"GRADE_A": "A", "GRADE_B": "B", "GRADE_C": "C", "GRADE_D": "D",
               "GRADE_UNGRADED": "UNGRADED"}


def grade_published(event, uow, clock, settings):
    """grading's GradePublished / GradeRevised: the stratum of the institution's draws."""
    from vocreg.grading.v1 import events_pb2 as grading

    grade = GRADE_NAMES.get(grading.Grade.Name(event.grade))
    institution_id = normalize_id(event.institution_id)
    if not grade or not institution_id:
        log.warning("%s %s without a grade or institution: ignored",
                    type(event).DESCRIPTOR.name, event.meta.event_id)
        return False
    return uow.repo.set_grade(institution_id, grade, event.year, event.revision or 1)


def certificates_issued(event, uow, clock, settings):
    """Late reporting (ch.6 art.2(8)) and a burst far above the usual volume (a monitoring
    anomaly, ch.6 art.2(5)) open a special case."""
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        return None
    month = rules.month_of(event.issued_on or _today(clock).isoformat())
    before = uow.repo.add_issued(institution_id, month, event.total)
    months = sorted({*before, month})
    uow.repo.prune_months(institution_id, set(months[-13:]))
    late = sum(c.late_reported_count for c in event.counts)
    notes = []
    if late:
        notes.append(f"{late} certificates reported late ({rules.LATE_REPORTING})")
    if rules.is_burst(before, month, event.total, settings.burst_min, settings.burst_factor):
        notes.append(f"a batch of {event.total} far above the usual monthly volume "
                     f"({rules.BURST_ARTICLE})")
    if not notes:
        return None
    return _anomaly(uow, clock, institution_id, f"CertificatesIssued:{event.batch_id}",
                    "; ".join(notes)).case_id


def _anomaly(uow, clock, institution_id: str, trigger_id: str, note: str):
    return _trigger(uow, clock, subject_kind=EVAL_ORG, subject_id=institution_id,
                    subject_name=_name_of(uow, EVAL_ORG, institution_id),
                    origin=rules.ORIGIN_ANOMALY, trigger_id=trigger_id, note=note)


def evaluation_lapsed(event, uow, clock, settings):
    """filing: 6 months without evaluation (a tier-3 ground, ch.6 art.3(3))."""
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        return None
    return _anomaly(uow, clock, institution_id, f"EvaluationLapsed:{event.meta.event_id}",
                    f"no evaluation for {event.months} months since {event.last_evaluation_on} "
                    f"({rules.LAPSE_ARTICLE})").case_id


def termination_proposed(event, uow, clock, settings):
    """filing's proposal to terminate (e.g. fewer than 500 in 12 months, ch.6 art.4(7))."""
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        return None
    grounds = ", ".join(event.grounds) or rules.TERMINATION_GROUND
    return _anomaly(uow, clock, institution_id, f"TerminationProposed:{event.proposal_id}",
                    f"termination proposed: {grounds} ({rules.TERMINATION_GROUND})").case_id


def refund_complaint_filed(event, uow, clock, settings):
    """escrow: a trainee's refund complaint against the institution."""
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        return None
    return _anomaly(uow, clock, institution_id, f"RefundComplaintFiled:{event.complaint_id}",
                    "prepaid-fee refund complaint").case_id


def cheating_confirmed(event, uow, clock, settings):
    """courses: confirmed cheating on an online course: a case against the platform."""
    provider_id = (event.provider_id or "").strip()
    if not provider_id:
        return None
    subject_kind, subject_id = "SUBJECT_KIND_ONLINE_PLATFORM", provider_id
    if not uscc_problem(normalize_id(provider_id)) and uow.repo.institution(
            normalize_id(provider_id)) is not None:
        subject_kind, subject_id = EVAL_ORG, normalize_id(provider_id)
    return _trigger(uow, clock, subject_kind=subject_kind, subject_id=subject_id,
                    subject_name=_name_of(uow, subject_kind, subject_id),
                    origin=rules.ORIGIN_ANOMALY, trigger_id=f"CheatingConfirmed:{event.case_id}",
                    note="online-course cheating confirmed"
                         + (" again after rectification" if event.repeat_after_rectification
                            else "")).case_id
