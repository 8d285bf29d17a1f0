"""Grading's RPC handlers: one function per RPC, `(command, uow, clock, settings)`. No nameko
here; the rules are in domain/, the facts from other services in facts.py."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import date

import numpy as np
from eventlet import sleep as give_way
from eventlet import spawn
from prometheus_client import Counter, Histogram

from services.common import paging
from services.common.auth import Identity, require_own_institution
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.workdays import today_in_shanghai
from services.grading import domain, views
from services.grading.models import (
    GradeRecord,
    GradingInstitution,
    GradingYearDoc,
    IndicatorSystemDoc,
    IntegrityListing,
    SelfAssessmentDoc,
    pack_entries,
    pack_values,
    unpack_values,
)
from services.grading.repository import grade_id

log = logging.getLogger(__name__)

GRADES_PUBLISHED = Counter("vocreg_grades_published_total", "Grades published, by grade.",
                           ["grade"])
GRADES_REVISED = Counter("vocreg_grades_revised_total", "Grade revisions, by cause.", ["cause"])
SCORING_SECONDS = Histogram("vocreg_grading_scoring_seconds",
                            "Time in the vectorised scoring of one ComputeGrades/PublishGrades.",
                            buckets=(0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))

# Grade records written per step of a publication before the worker gives other calls a turn.
PUBLISH_STEP = 200


def _today(clock):
    return today_in_shanghai(clock.now())


def _iso(clock) -> str:
    return views.ts(clock.now())


def _invalid(errors: list) -> None:
    if errors:
        raise InvalidArgument(errors)


# --- indicator systems -------------------------------------------------------------------------
_parsed: dict[tuple[str, str], domain.IndicatorSystem] = {}


def system_of(uow, system_id: str, published_only: bool = True) -> domain.IndicatorSystem:
    """A version as the domain's IndicatorSystem: the built-in catalogue, or a stored one
    (parsed once per content)."""
    if system_id == domain.DEFAULT_SYSTEM_ID:
        return domain.default_system()
    doc = uow.repo.system_doc(system_id)
    if doc is None or (published_only and doc.state != domain.SYSTEM_PUBLISHED):
        raise NotFound(f"indicator system {system_id!r} is not published",
                       reason="SYSTEM_NOT_FOUND")
    key = (system_id, domain.canonical_hash(doc.definition))
    if key not in _parsed:
        _parsed[key] = domain.parse_system(dict(doc.definition))
    return _parsed[key]


def _info(doc: IndicatorSystemDoc, system: domain.IndicatorSystem) -> dict:
    return views.system_info(system, doc.state, doc.canonical_hash, doc.created_at,
                             doc.published_at)


def _builtin_info() -> dict:
    system = domain.default_system()
    return views.system_info(system, domain.SYSTEM_PUBLISHED, system.canonical_hash,
                             built_in=True)


def create_indicator_system(cmd, uow, clock, settings):
    try:
        system = domain.parse_system(cmd.request.get("system") or {}, "system",
                                     reserved_ids=(domain.DEFAULT_SYSTEM_ID,))
    except ValueError as exc:
        raise InvalidArgument(exc.args[0], reason="MALFORMED_INDICATOR_SYSTEM") from None
    doc = uow.repo.system_doc(system.system_id)
    if doc is not None and doc.state == domain.SYSTEM_PUBLISHED:
        raise FailedPrecondition(
            f"indicator system {system.system_id} is published and never changes; create "
            "the new version under another system_id", reason="SYSTEM_PUBLISHED",
            subject=f"indicator-system/{system.system_id}")
    if doc is None:
        doc = uow.add(IndicatorSystemDoc(system_id=system.system_id,
                                         state=domain.SYSTEM_DRAFT, definition={},
                                         created_at=clock.now()))
    doc.definition = system.to_dict()
    doc.canonical_hash = system.canonical_hash
    doc.counts = list(system.counts)
    doc.created_at = clock.now()
    doc.created_by = cmd.caller.audit_name()
    return {"info": _info(doc, system)}


def publish_indicator_system(cmd, uow, clock, settings):
    system_id = (cmd.request.get("system_id") or "").strip()
    if not system_id:
        raise InvalidArgument("system_id: required")
    if system_id == domain.DEFAULT_SYSTEM_ID:
        raise FailedPrecondition("the built-in catalogue is published with the platform",
                                 reason="SYSTEM_PUBLISHED", subject="indicator-system/default")
    doc = uow.repo.system_doc(system_id)
    if doc is None:
        raise NotFound(f"indicator system {system_id!r} not found", reason="SYSTEM_NOT_FOUND")
    if doc.state == domain.SYSTEM_PUBLISHED:
        raise FailedPrecondition(f"indicator system {system_id} is already published",
                                 reason="SYSTEM_PUBLISHED",
                                 subject=f"indicator-system/{system_id}")
    system = domain.parse_system(dict(doc.definition))
    doc.state = domain.SYSTEM_PUBLISHED
    doc.canonical_hash = system.canonical_hash
    doc.published_at = clock.now()
    doc.published_by = cmd.caller.audit_name()
    uow.emit(doc, "IndicatorSystemPublished", {
        "system_id": system_id, "version": system.version,
        "canonical_hash": doc.canonical_hash, "leaf_count": len(system.leaves)}, cmd.caller)
    return {"info": _info(doc, system)}


def get_indicator_system(cmd, uow, clock, settings):
    system_id = (cmd.request.get("system_id") or "").strip()
    if not system_id:
        raise InvalidArgument("system_id: required")
    if system_id == domain.DEFAULT_SYSTEM_ID:
        system = domain.default_system()
        return {"info": _builtin_info(), "system": system.to_dict()}
    doc = uow.repo.system_doc(system_id)
    if doc is None or (doc.state != domain.SYSTEM_PUBLISHED and cmd.caller.role != "regulator"):
        raise NotFound(f"indicator system {system_id!r} not found", reason="SYSTEM_NOT_FOUND")
    system = domain.parse_system(dict(doc.definition))
    return {"info": _info(doc, system), "system": system.to_dict()}


def list_indicator_systems(cmd, uow, clock, settings):
    page = paging.page(cmd, clock.now())
    systems = []
    size = page.size
    if page.after is None:
        systems.append(_builtin_info())
        size -= 1
    docs, last = uow.repo.systems_page(cmd.caller.role == "regulator", max(size, 1), page.after)
    if size == 0:  # a page of one: the built-in alone, the stored ones from the next page
        docs, last = [], ("" if docs else None)
    systems.extend(_info(d, domain.parse_system(dict(d.definition))) for d in docs)
    return {"systems": systems, "page": page.response(last)}


# --- the year ------------------------------------------------------------------------------------
def open_grading_year(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    today = _today(clock)
    year = domain.check_open_year(request.get("year"), today, errors)
    system_id = (request.get("system_id") or "").strip()
    if not system_id:
        errors.append("system_id: required (\"default\": the built-in catalogue)")
    days = domain.check_days(request.get("self_assessment_working_days"), errors)
    reviewers = domain.parse_reviewers(request.get("reviewers"), errors)
    _invalid(errors)
    doc = uow.repo.system_doc(system_id) if system_id != domain.DEFAULT_SYSTEM_ID else None
    if system_id != domain.DEFAULT_SYSTEM_ID and doc is None:
        raise NotFound(f"indicator system {system_id!r} not found", reason="SYSTEM_NOT_FOUND")
    if doc is not None and doc.state != domain.SYSTEM_PUBLISHED:
        raise FailedPrecondition(f"indicator system {system_id} is a draft: publish it first",
                                 reason="SYSTEM_NOT_PUBLISHED",
                                 subject=f"indicator-system/{system_id}")
    system = system_of(uow, system_id)
    if uow.repo.year(year) is not None:
        raise AlreadyExists(f"grading year {year} is already open", reason="YEAR_OPEN")
    due = settings.calendar.add_working_days(today, days)
    doc = uow.add(GradingYearDoc(
        year_id=str(year), year=year, system_id=system_id, system_hash=system.canonical_hash,
        state=domain.YEAR_OPEN, opened_on=today.isoformat(), opened_by=cmd.caller.audit_name(),
        self_assessment_due=due.date.isoformat(), due_provisional=due.provisional,
        reviewers=reviewers), on_duplicate=lambda: AlreadyExists(
            f"grading year {year} is already open", reason="YEAR_OPEN"))
    uow.emit(doc, "GradingYearOpened", {
        "year": year, "system_id": system_id, "system_hash": system.canonical_hash,
        "self_assessment_due": due.to_dict()}, cmd.caller)
    return {"year": views.year_view(doc)}


def _year(uow, year: int) -> GradingYearDoc:
    doc = uow.repo.year(year)
    if doc is None:
        raise NotFound(f"grading year {year} is not open", reason="YEAR_NOT_OPEN")
    return doc


def get_grading_year(cmd, uow, clock, settings):
    errors = []
    year = domain.check_year(cmd.request.get("year"), errors)
    _invalid(errors)
    doc = _year(uow, year)
    role = cmd.caller.role
    return {"year": views.year_view(doc, assessor_id=cmd.caller.party_id if role == "assessor"
                                    else None, hide_reviewers=role == "institution")}


# --- self-assessment and review ------------------------------------------------------------------
def _own_institution(request: dict, caller: Identity, errors: list) -> str:
    institution_id = domain.check_institution_id(request.get("institution_id"),
                                                 "institution_id", errors, required=False)
    if caller.role == "institution":
        if institution_id:
            require_own_institution(caller, institution_id, "self-assessment")
        return caller.institution_id
    if not institution_id:
        errors.append("institution_id: required")
    return institution_id


def _may_review(caller: Identity, year_doc: GradingYearDoc, institution_id: str) -> None:
    """The regulator reviews any institution; an assessor only those assigned to it."""
    if caller.role == "assessor" and \
            domain.assessor_of(year_doc.reviewers, institution_id) != caller.party_id:
        raise PermissionDenied(f"institution {institution_id} is not assigned to assessor "
                               f"{caller.party_id} in {year_doc.year}",
                               reason="NOT_ASSIGNED")


ENDED_BY_STATUS = {"INSTITUTION_STATUS_TERMINATED": "TERMINATED",
                   "INSTITUTION_STATUS_EXPIRED": "EXPIRED"}


def _learn_from_filing(uow, institution_id: str, filing) -> GradingInstitution | None:
    """An institution grading has not heard of yet, as filing answers for it (its
    InstitutionFiled is on its way and will find the same first filing day)."""
    answer = filing.institution(institution_id) if filing is not None else None
    if not answer or not answer.get("filed_on"):
        return None
    inst = institution_for(uow, institution_id)
    inst.filed_on = min(filter(None, (inst.filed_on, answer["filed_on"])))
    inst.name = inst.name or answer.get("name")
    inst.district_code = inst.district_code or answer.get("district_code")
    status = answer.get("status") or ""
    inst.status = status.removeprefix("INSTITUTION_STATUS_") or inst.status
    if status in ENDED_BY_STATUS and not inst.ended_on:
        changes = [h for h in answer.get("history") or () if h.get("status") == status]
        inst.ended_on = (changes[-1].get("effective_on") if changes else None) or \
            answer.get("valid_until")
        inst.end_kind = ENDED_BY_STATUS[status]
    return inst


def _graded_institution(uow, institution_id: str, year: int, filing=None) -> GradingInstitution:
    """A filed institution graded in `year`, or FailedPrecondition saying why not."""
    inst = uow.repo.institution(institution_id)
    if inst is None or not inst.filed_on:
        inst = _learn_from_filing(uow, institution_id, filing) or inst
    subject = f"institution/{institution_id}"
    if inst is None or not inst.filed_on:
        raise FailedPrecondition(f"institution {institution_id} is not filed",
                                 reason="INSTITUTION_NOT_FILED", subject=subject)
    if not domain.in_population(inst.filed_on, inst.ended_on, year):
        raise FailedPrecondition(f"institution {institution_id} was not filed in {year}",
                                 reason="NOT_FILED_IN_YEAR", subject=subject)
    why = domain.ungraded_reason(inst.filed_on, inst.ended_on, inst.end_kind, year)
    if why:
        raise FailedPrecondition(f"institution {institution_id} is UNGRADED in {year}: {why}",
                                 reason="UNGRADED", subject=subject)
    return inst


def submit_self_assessment(cmd, uow, clock, settings, filing=None):
    request, errors = cmd.request, []
    year = domain.check_year(request.get("year"), errors)
    institution_id = _own_institution(request, cmd.caller, errors)
    final = bool(request.get("final"))
    year_doc = uow.repo.year(year) if not errors else None
    system = system_of(uow, year_doc.system_id) if year_doc else None
    values = domain.parse_values(system, request.get("values"), final, errors) if system else []
    _invalid(errors)
    if year_doc is None:
        raise NotFound(f"grading year {year} is not open", reason="YEAR_NOT_OPEN")
    if year_doc.state != domain.YEAR_OPEN:
        raise FailedPrecondition(f"grading year {year} is published", reason="YEAR_PUBLISHED",
                                 subject=f"grading-year/{year}")
    today = _today(clock)
    if today.isoformat() > year_doc.self_assessment_due:
        raise FailedPrecondition(
            f"self-assessments for {year} were due by {year_doc.self_assessment_due}",
            reason="SELF_ASSESSMENT_DEADLINE_PASSED", subject=f"grading-year/{year}")
    _graded_institution(uow, institution_id, year, filing)
    doc = uow.repo.assessment(year, institution_id)
    if doc is not None and doc.submitted_at is not None:
        raise FailedPrecondition(f"the self-assessment for {year} was submitted on "
                                 f"{views.ts(doc.submitted_at)}", reason="ALREADY_SUBMITTED",
                                 subject=f"self-assessment/{grade_id(year, institution_id)}")
    if doc is None:
        doc = uow.add(SelfAssessmentDoc(
            assessment_id=grade_id(year, institution_id), year=year,
            institution_id=institution_id, system_id=year_doc.system_id,
            state=domain.ASSESSMENT_DRAFT, reviewed=pack_values([-1] * len(system.leaves))))
    declared = [-1] * len(system.leaves)
    for value in values:
        declared[system.index[value.indicator_id]] = value.value
    doc.declared = pack_values(declared)
    doc.entries = pack_entries([v.entry(system.leaf(v.indicator_id)) for v in values])
    doc.updated_at = clock.now()
    if final:
        doc.state, doc.submitted_at = domain.ASSESSMENT_SUBMITTED, clock.now()
    return {"assessment": views.assessment_view(doc)}


def get_self_assessment(cmd, uow, clock, settings):
    errors = []
    year = domain.check_year(cmd.request.get("year"), errors)
    institution_id = _own_institution(cmd.request, cmd.caller, errors)
    _invalid(errors)
    year_doc = _year(uow, year)
    _may_review(cmd.caller, year_doc, institution_id)
    doc = uow.repo.assessment(year, institution_id)
    if doc is None:
        raise NotFound(f"no self-assessment of {institution_id} for {year}",
                       reason="ASSESSMENT_NOT_FOUND")
    return {"assessment": views.assessment_view(doc)}


def review_assessment(cmd, uow, clock, settings, filing=None):
    request, errors = cmd.request, []
    year = domain.check_year(request.get("year"), errors)
    institution_id = domain.check_institution_id(request.get("institution_id"),
                                                 "institution_id", errors)
    year_doc = uow.repo.year(year) if not errors else None
    if year_doc is not None:
        _may_review(cmd.caller, year_doc, institution_id)
    system = system_of(uow, year_doc.system_id) if year_doc else None
    adjustments = findings = []
    overall = None
    if system is not None:
        adjustments = domain.parse_adjustments(system, request.get("adjustments"), errors)
        findings = domain.parse_findings(system, request.get("offences"), errors)
        overall = domain.parse_overall(request.get("overall"), errors)
        if not (request.get("adjustments") or request.get("offences") or request.get("overall")):
            errors.append("adjustments: a review adjusts values, finds offences or judges "
                          "overall")
    _invalid(errors)
    if year_doc is None:
        raise NotFound(f"grading year {year} is not open", reason="YEAR_NOT_OPEN")
    if year_doc.state != domain.YEAR_OPEN:
        raise FailedPrecondition(f"grading year {year} is published: a grade changes by "
                                 "appeal only", reason="YEAR_PUBLISHED",
                                 subject=f"grading-year/{year}")
    _graded_institution(uow, institution_id, year, filing)
    doc = uow.repo.assessment(year, institution_id)
    before_deadline = _today(clock).isoformat() <= year_doc.self_assessment_due
    if (doc is None or doc.submitted_at is None) and before_deadline:
        raise FailedPrecondition(
            f"{institution_id} has not submitted its self-assessment; it may until "
            f"{year_doc.self_assessment_due}", reason="NOT_SUBMITTED",
            subject=f"self-assessment/{grade_id(year, institution_id)}")
    leaves = len(system.leaves)
    if doc is None:
        doc = uow.add(SelfAssessmentDoc(
            assessment_id=grade_id(year, institution_id), year=year,
            institution_id=institution_id, system_id=year_doc.system_id,
            state=domain.ASSESSMENT_REVIEWED, declared=pack_values([-1] * leaves),
            reviewed=pack_values([-1] * leaves)))
    review_id = uow.new_id()
    at = _iso(clock)
    reviewed = unpack_values(doc.reviewed, leaves)
    reasons = dict(doc.adjustment_reasons or {})
    for adjustment in adjustments:
        reviewed[system.index[adjustment.indicator_id]] = adjustment.value
        reasons[adjustment.indicator_id] = {"reason": adjustment.reason, "review_id": review_id}
    doc.reviewed, doc.adjustment_reasons = pack_values(reviewed), reasons
    kept = {f["offence_id"]: f for f in doc.offences or ()}
    for finding in findings:
        kept[finding["offence_id"]] = {**finding, "review_id": review_id}
    doc.offences = list(kept.values())
    if overall is not None:
        doc.overall = {**overall, "by": cmd.caller.audit_name(), "at": at,
                       "review_id": review_id}
    doc.reviews.append({
        "review_id": review_id, "reviewer": cmd.caller.audit_name(),
        "assessor_id": cmd.caller.party_id if cmd.caller.role == "assessor" else None,
        "reviewed_at": at,
        "adjustments": [a.entry(system.leaf(a.indicator_id)) for a in adjustments],
        "offences": findings,
        "overall": {"grade": domain.GRADE_NAMES[overall["grade"]], "reason": overall["reason"]}
        if overall else None})
    doc.state, doc.updated_at = domain.ASSESSMENT_REVIEWED, clock.now()
    log.info("review %s of %s/%s by %s: %d adjustments, %d offences, override %s", review_id,
             year, institution_id, cmd.caller.audit_name(), len(adjustments), len(findings),
             overall["grade"] if overall else "-")
    return {"assessment": views.assessment_view(doc)}


# --- scoring a year ------------------------------------------------------------------------------
@dataclass
class YearInputs:
    ids: list
    districts: list
    declared: np.ndarray
    reviewed: np.ndarray
    values: np.ndarray
    sources: np.ndarray
    override: np.ndarray
    direct_d: np.ndarray
    ungraded: np.ndarray
    reasons: dict = field(default_factory=dict)      # row -> UNGRADED reason
    offences: dict = field(default_factory=dict)     # row -> offences found
    refs: dict = field(default_factory=dict)         # row -> {leaf id: [event ids]}
    overall: dict = field(default_factory=dict)      # row -> the overall judgement
    facts: dict = field(default_factory=dict)        # row -> the year's facts


def year_inputs(uow, year: int, system: domain.IndicatorSystem) -> YearInputs:
    """Every institution the year grades, as scoring rows: declared (if submitted) and
    reviewed values, the year's platform facts over them, offences, overrides, UNGRADED."""
    first, last = domain.year_bounds(year)
    # The two reads at once: the database server prepares one while the worker decodes the
    # other (15-20 % of the load time on the local server).
    reading = spawn(uow.repo.assessment_rows, year)
    rows = [r for r in uow.repo.institution_rows(last)
            if domain.in_population(r.get("filed_on"), r.get("ended_on"), year)]
    assessments = reading.wait()
    leaves = len(system.leaves)
    none = pack_values([-1] * leaves)
    found = [assessments.get(r["_id"]) or {} for r in rows]
    # A draft never submitted declares nothing: the reviewers' values alone count for it.
    declared = b"".join((a.get("declared") or none) if a.get("submitted_at") else none
                        for a in found)
    reviewed = b"".join(a.get("reviewed") or none for a in found)
    declared = np.frombuffer(declared, dtype="<i4").astype(np.int64).reshape(-1, leaves)
    reviewed = np.frombuffer(reviewed, dtype="<i4").astype(np.int64).reshape(-1, leaves)
    values, sources = domain.assemble(system, declared, reviewed)
    n = len(rows)
    inputs = YearInputs([r["_id"] for r in rows], [r.get("district_code") or "" for r in rows],
                        declared, reviewed, values, sources, np.zeros(n, np.int64),
                        np.zeros(n, bool),
                        np.zeros(n, bool))
    for i, (row, assessment) in enumerate(zip(rows, found, strict=True)):
        if i % 1000 == 999:
            give_way(0)  # 10,000 rows: other calls get their turn
        why = domain.ungraded_reason(row["filed_on"], row.get("ended_on"), row.get("end_kind"),
                                     year)
        if why:
            inputs.ungraded[i] = True
            inputs.reasons[i] = why
        facts = domain.facts_in_year(row.get("facts"), year)
        findings = assessment.get("offences") or []
        if facts:
            inputs.facts[i] = facts
            inputs.refs[i] = domain.apply_facts(system, inputs.values[i], inputs.sources[i],
                                                facts)
        if facts or findings:
            offences = domain.offences_found(system, facts, findings)
            if offences:
                inputs.offences[i] = offences
                inputs.direct_d[i] = True
        overall = assessment.get("overall") or {}
        if overall.get("grade"):
            inputs.overall[i] = overall
            inputs.override[i] = int(overall["grade"])
    return inputs


def score_in_chunks(system, inputs: YearInputs, chunk: int) -> tuple[list, float]:
    """[(first row, Scored)] and the seconds spent scoring; between chunks the worker gives
    its other calls their turn (one eventlet hub: a health check waits for nothing)."""
    parts, spent = [], 0.0
    for start in range(0, len(inputs.ids), chunk):
        rows = slice(start, start + chunk)
        began = time.perf_counter()
        parts.append((start, domain.score(system, inputs.values[rows], inputs.sources[rows],
                                          inputs.override[rows], inputs.direct_d[rows],
                                          inputs.ungraded[rows])))
        spent += time.perf_counter() - began
        give_way(0)
    SCORING_SECONDS.observe(spent)
    return parts, spent


def _counts(parts) -> dict:
    counts: dict[str, int] = {}
    for _, scored in parts:
        for grade, n in zip(*np.unique(scored.grades, return_counts=True), strict=True):
            counts[str(int(grade))] = counts.get(str(int(grade)), 0) + int(n)
    return counts


def _counts_view(counts: dict) -> list:
    return [{"grade": domain.GRADE_NAMES[int(g)], "count": n}
            for g, n in sorted(counts.items(), key=lambda kv: int(kv[0]))]


def compute_grades(cmd, uow, clock, settings):
    errors = []
    year = domain.check_year(cmd.request.get("year"), errors)
    _invalid(errors)
    year_doc = _year(uow, year)
    if year_doc.state == domain.YEAR_PUBLISHED:
        raise FailedPrecondition(f"grading year {year} is published", reason="YEAR_PUBLISHED",
                                 subject=f"grading-year/{year}")
    system = system_of(uow, year_doc.system_id)
    began = time.perf_counter()
    inputs = year_inputs(uow, year, system)
    loaded = time.perf_counter()
    parts, scoring = score_in_chunks(system, inputs, settings.scoring_chunk)
    stored = time.perf_counter()
    computation_id = uow.new_id()
    uow.repo.store_computation([{
        "_id": f"{computation_id}:{k}", "year": year, "computation_id": computation_id,
        "chunk": k, "institution_ids": inputs.ids[start:start + len(scored.totals)],
        "totals": scored.totals.tolist(), "grades": scored.grades.tolist(),
        "scores": scored.scores.astype(np.int16).tobytes()} for k, (start, scored) in
        enumerate(parts)])
    year_doc.computation_id = computation_id
    year_doc.computed_at = clock.now()
    year_doc.counts = _counts(parts)
    uow.flush(year_doc)
    uow.repo.drop_computations(year, keep=computation_id)
    done = time.perf_counter()
    return {"year": year, "institutions": len(inputs.ids),
            "counts": _counts_view(year_doc.counts), "system_hash": year_doc.system_hash,
            "computed_at": views.ts(year_doc.computed_at), "scoring_ms": scoring * 1000,
            "load_ms": (loaded - began) * 1000, "store_ms": (done - stored) * 1000}


def grade_reason(inputs_reason: str | None, offences: list, overall: dict | None,
                 grade: int) -> tuple[str, str]:
    """(the grade's reason, the override's reason) for a revision."""
    if grade == domain.UNGRADED:
        return inputs_reason or "", ""
    override_reason = (overall or {}).get("reason") or ""
    if offences:
        return "direct D: " + "; ".join(f"{o['title']} ({o['legal_basis']})"
                                        for o in offences), override_reason
    if override_reason:
        return f"overall judgement: {override_reason}", override_reason
    return "", ""


def revision_of(scored: domain.Scored, j: int, number: int, reason: str, override_reason: str,
                offences: list, at: str, actor: str, appeal_id: str = "") -> dict:
    return {k: v for k, v in {
        "revision": number, "grade": int(scored.grades[j]), "score": int(scored.totals[j]),
        "banded": int(scored.banded[j]), "reason": reason, "at": at, "actor": actor,
        "appeal_id": appeal_id, "offences": [o["offence_id"] for o in offences],
        "override_reason": override_reason, "scores": scored.scores[j].tolist(),
        "top": scored.reasons(j), "what_if": scored.what_if(j),
        "next_grade": int(scored.next_grade[j]), "gap": int(scored.gap[j])}.items()
        if v not in ("", None)}


def publish_grades(cmd, uow, clock, settings):
    errors = []
    year = domain.check_year(cmd.request.get("year"), errors)
    _invalid(errors)
    year_doc = _year(uow, year)
    if year_doc.state == domain.YEAR_PUBLISHED:
        raise FailedPrecondition(f"grading year {year} was published on "
                                 f"{year_doc.published_on}", reason="YEAR_PUBLISHED",
                                 subject=f"grading-year/{year}")
    today = _today(clock)
    if today.isoformat() <= year_doc.self_assessment_due:
        raise FailedPrecondition(f"self-assessments for {year} are received until "
                                 f"{year_doc.self_assessment_due}",
                                 reason="SELF_ASSESSMENT_OPEN", subject=f"grading-year/{year}")
    system = system_of(uow, year_doc.system_id)
    inputs = year_inputs(uow, year, system)
    parts, _ = score_in_chunks(system, inputs, settings.scoring_chunk)
    appeal_due = settings.calendar.add_working_days(today, domain.APPEAL_WORKING_DAYS)
    existing = uow.repo.grade_ids(year)  # a retry after a crash finishes what is missing
    at, actor = _iso(clock), cmd.caller.audit_name()
    published = 0
    for start, scored in parts:
        for j in range(len(scored.totals)):
            i = start + j
            institution_id = inputs.ids[i]
            grade = int(scored.grades[j])
            offences = inputs.offences.get(i, []) if grade != domain.UNGRADED else []
            reason, override_reason = grade_reason(inputs.reasons.get(i), offences,
                                                   inputs.overall.get(i), grade)
            if grade_id(year, institution_id) not in existing:
                rec = uow.add(GradeRecord(
                    grade_id=grade_id(year, institution_id), year=year,
                    institution_id=institution_id, district_code=inputs.districts[i],
                    system_id=year_doc.system_id, system_hash=year_doc.system_hash,
                    grade=domain.GRADE_NAMES[grade], score=int(scored.totals[j]), revision=1,
                    reason=reason, published_on=today.isoformat(),
                    appeal_due=appeal_due.date.isoformat(),
                    appeal_due_provisional=appeal_due.provisional,
                    declared=inputs.declared[i].tolist(), reviewed=inputs.reviewed[i].tolist(),
                    values=inputs.values[i].tolist(), sources=inputs.sources[i].tolist(),
                    fact_refs=inputs.refs.get(i, {}), facts=inputs.facts.get(i, []),
                    offences=offences,
                    overall=inputs.overall.get(i) or {},
                    ungraded_reason=inputs.reasons.get(i),
                    revisions=[revision_of(scored, j, 1, reason, override_reason, offences,
                                           at, actor)]))
                uow.emit(rec, "GradePublished", {
                    "institution_id": institution_id, "year": year,
                    "grade": domain.GRADE_NAMES[grade],
                    "score_centipoints": int(scored.totals[j]),
                    "system_hash": year_doc.system_hash, "revision": 1,
                    "reason": reason if grade == domain.UNGRADED or offences else "",
                    "district_code": inputs.districts[i]}, actor)
                GRADES_PUBLISHED.labels(domain.GRADE_NAMES[grade]).inc()
                published += 1
            if grade == domain.GRADE_A:
                list_red(uow, clock, institution_id, inputs.districts[i], year, actor)
            if offences:
                list_black_for_offences(uow, clock, settings, institution_id,
                                        inputs.districts[i], year, offences, actor)
            if (j + 1) % PUBLISH_STEP == 0:
                uow.flush()
                give_way(0)
    year_doc.state = domain.YEAR_PUBLISHED
    year_doc.published_on = today.isoformat()
    year_doc.published_by = actor
    year_doc.appeal_due = appeal_due.date.isoformat()
    year_doc.appeal_due_provisional = appeal_due.provisional
    year_doc.counts = _counts(parts)
    year_doc.computed_at = clock.now()
    return {"year": views.year_view(year_doc), "published": len(inputs.ids)}


# --- lists -----------------------------------------------------------------------------------------
def record_entry(uow, inst: GradingInstitution, entry: dict, actor) -> bool:
    """Append an entry to the integrity file (once per entry id) with its IntegrityRecorded."""
    if any(e.get("entry_id") == entry["entry_id"] for e in inst.entries or ()):
        return False
    entry = {k: v for k, v in entry.items() if v not in ("", None)}
    entry.setdefault("source_service", "grading")
    inst.entries.append(entry)
    uow.emit(inst, "IntegrityRecorded", {
        "institution_id": inst.institution_id, "entry_id": entry["entry_id"],
        "kind": entry["kind"], "summary": entry.get("summary", ""),
        "source_service": entry.get("source_service", ""),
        "source_event_id": entry.get("source_event_id", "")}, actor)
    return True


def institution_for(uow, institution_id: str) -> GradingInstitution:
    """The institution's document, made if grading has not heard of it yet (a fact may come
    before filing's InstitutionFiled)."""
    inst = uow.repo.institution(institution_id)
    if inst is None:
        inst = uow.add(GradingInstitution(institution_id=institution_id))
    return inst


def list_red(uow, clock, institution_id: str, district: str, year: int, actor) -> None:
    listing_id = f"red:{year}:{institution_id}"
    listing = uow.repo.listing(listing_id)
    today = _today(clock).isoformat()
    if listing is not None and listing.state == domain.LISTED:
        return
    if listing is None:
        listing = uow.add(IntegrityListing(
            listing_id=listing_id, kind=domain.RED, institution_id=institution_id,
            district_code=district, year=year, incentives=list(domain.RED_INCENTIVES),
            listed_on=today, state=domain.LISTED,
            basis="000 (grade A: incentives)"))
    else:  # A again after a revision took it away
        listing.state, listing.removed_on, listing.removal_reason = domain.LISTED, None, None
        listing.listed_on = today
    uow.emit(listing, "ListedRed", {"institution_id": institution_id, "year": year,
                                    "incentives": list(domain.RED_INCENTIVES)}, actor)
    record_entry(uow, institution_for(uow, institution_id), {
        "entry_id": f"{listing_id}:listed:{listing.version}",
        "kind": "INTEGRITY_ENTRY_KIND_RED_LISTED",
        "summary": f"grade A in {year}: red list with incentives "
                   f"({'; '.join(domain.RED_INCENTIVES)})",
        "recorded_on": today, "year": year, "basis": "000", "public": True,
        "listing_id": listing_id}, actor)


def unlist_red(uow, clock, institution_id: str, year: int, reason: str, actor) -> None:
    listing = uow.repo.listing(f"red:{year}:{institution_id}")
    if listing is None or listing.state != domain.LISTED:
        return
    today = _today(clock).isoformat()
    listing.state, listing.removed_on, listing.removal_reason = domain.REMOVED, today, reason
    record_entry(uow, institution_for(uow, institution_id), {
        "entry_id": f"{listing.listing_id}:removed:{listing.version}",
        "kind": "INTEGRITY_ENTRY_KIND_LIST_REMOVAL", "summary": f"red list {year}: {reason}",
        "recorded_on": today, "year": year, "public": True,
        "listing_id": listing.listing_id}, actor)


def list_black(uow, settings, institution_id: str, district: str, listing_id: str, basis: str,
               decision_ref: str, summary: str, decided_on, source_event_id: str, actor,
               source_service: str = "grading") -> IntegrityListing | None:
    """A black-list entry from a decision (published from the decision for the configured
    period), with its integrity-file entry; once per listing id."""
    if uow.repo.listing(listing_id) is not None:
        return None
    until = domain.publish_until(decided_on, settings.black_list_months)
    listing = uow.add(IntegrityListing(
        listing_id=listing_id, kind=domain.BLACK, institution_id=institution_id,
        district_code=district, basis=basis, decision_ref=decision_ref, summary=summary,
        listed_on=decided_on.isoformat(), repair_from=domain.repair_from(decided_on).isoformat(),
        publish_until=until.isoformat(), state=domain.LISTED, source_event_id=source_event_id,
        year=decided_on.year))
    uow.emit(listing, "ListedBlack", {
        "institution_id": institution_id, "listing_id": listing_id, "basis": basis,
        "decision_ref": decision_ref, "listed_on": listing.listed_on,
        "publish_until": listing.publish_until, "source_event_id": source_event_id}, actor)
    inst = institution_for(uow, institution_id)
    record_entry(uow, inst, {
        "entry_id": f"{listing_id}:listed", "kind": "INTEGRITY_ENTRY_KIND_BLACK_LISTED",
        "summary": f"black list until {listing.publish_until}: {summary}",
        "recorded_on": listing.listed_on, "year": decided_on.year, "basis": basis,
        "decision_ref": decision_ref, "source_service": source_service,
        "source_event_id": source_event_id, "public": True, "listing_id": listing_id}, actor)
    return listing


def list_black_for_offences(uow, clock, settings, institution_id: str, district: str,
                            year: int, offences: list, actor) -> None:
    """A direct-D offence is a serious violation: the black list, unless the facts behind it
    already listed the institution (a black-list fact, or a sanction's own listing)."""
    listings = [x for x in uow.repo.listings_of(institution_id) if x.kind == domain.BLACK]
    listed_decisions = {x.decision_ref for x in listings} | {x.source_event_id for x in listings}
    for offence in offences:
        events, decisions = offence.get("event_ids") or [], offence.get("decision_refs") or []
        if any(ref in listed_decisions for ref in (*decisions, *events)):
            continue  # the decision behind the fact listed the institution already
        list_black(uow, settings, institution_id, district,
                   f"black:grading:{year}:{institution_id}:{offence['offence_id']}",
                   offence["legal_basis"], f"grading:{year}",
                   f"direct-D offence in {year}: {offence['title']}"
                   + (f" ({offence['finding']})" if offence.get("finding") else ""),
                   _today(clock), events[0] if events else "", actor)


# --- grades: reading, appeals, revisions -------------------------------------------------------------
def _full_view_allowed(caller: Identity, rec: GradeRecord, uow) -> bool:
    if caller.role == "regulator":
        return True
    if caller.role == "institution":
        return caller.institution_id == rec.institution_id
    if caller.role == "assessor":
        year_doc = uow.repo.year(rec.year)
        return year_doc is not None and domain.assessor_of(
            year_doc.reviewers, rec.institution_id) == caller.party_id
    return False


def get_grade(cmd, uow, clock, settings):
    errors = []
    institution_id = domain.check_institution_id(cmd.request.get("institution_id"),
                                                 "institution_id", errors)
    year = domain.check_year(cmd.request.get("year"), errors)
    _invalid(errors)
    rec = uow.repo.grade(year, institution_id)
    if rec is None:
        if cmd.caller.role == "regulator":
            preview = _preview(uow, year, institution_id)
            if preview is not None:
                return {"grade": preview}
        raise NotFound(f"no published grade of {institution_id} for {year}",
                       reason="GRADE_NOT_FOUND")
    full = _full_view_allowed(cmd.caller, rec, uow)
    system = system_of(uow, rec.system_id) if full else None
    return {"grade": views.grade_view(rec, system, full)}


def _preview(uow, year: int, institution_id: str) -> dict | None:
    year_doc = uow.repo.year(year)
    if year_doc is None or not year_doc.computation_id:
        return None
    system = system_of(uow, year_doc.system_id)
    for chunk in uow.repo.computation_chunks(year, year_doc.computation_id):
        ids = chunk["institution_ids"]
        if institution_id in ids:
            row = ids.index(institution_id)
            scores = np.frombuffer(chunk["scores"], dtype=np.int16).reshape(
                len(ids), len(system.leaves))[row]
            return views.preview_view(year_doc, institution_id, chunk["totals"][row],
                                      chunk["grades"][row], scores, system)
    return None


def list_grades(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    year = request.get("year") or 0
    if year:
        domain.check_year(year, errors)
    grade = request.get("grade") or "GRADE_UNSPECIFIED"
    district = (request.get("district_code") or "").strip()
    if district and not (len(district) == 6 and district.isdigit()):
        errors.append("district_code: 6 digits (GB/T 2260)")
    try:
        page = paging.page(cmd, clock.now())
    except InvalidArgument as exc:
        errors.extend(exc.violations)
    _invalid(errors)
    filters = {k: v for k, v in (("year", year), ("district_code", district)) if v}
    if grade != "GRADE_UNSPECIFIED":
        filters["grade"] = grade if isinstance(grade, str) else domain.GRADE_NAMES.get(grade)
    rows, last = uow.repo.grades_page(filters, page.size, page.after)
    return {"grades": [views.grade_view(r, None, False) for r in rows],
            "page": page.response(last)}


def appeal_grade(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    year = domain.check_year(request.get("year"), errors)
    _invalid(errors)
    institution_id = cmd.caller.institution_id
    rec = uow.repo.grade(year, institution_id)
    if rec is None:
        raise NotFound(f"no published grade of {institution_id} for {year}",
                       reason="GRADE_NOT_FOUND")
    system = system_of(uow, rec.system_id)
    items = domain.parse_appeal_items(system, request.get("indicators"), errors)
    _invalid(errors)
    subject = f"grade/{rec.grade_id}"
    if rec.grade == "GRADE_UNGRADED":
        raise FailedPrecondition("an UNGRADED year has no indicators to contest: it follows "
                                 "from the filing dates", reason="UNGRADED", subject=subject)
    today = _today(clock).isoformat()
    if today > rec.appeal_due:
        raise FailedPrecondition(
            f"appeals against the {year} grade were received until {rec.appeal_due} "
            f"({domain.APPEAL_WORKING_DAYS} working days after publication on "
            f"{rec.published_on})", reason="APPEAL_PERIOD_OVER", subject=subject)
    if any(a["state"] == domain.APPEAL_FILED for a in rec.appeals or ()):
        raise FailedPrecondition("an appeal against this grade is being decided",
                                 reason="APPEAL_PENDING", subject=subject)
    appeal = {"appeal_id": uow.new_id(), "revision": rec.revision, "indicators": items,
              "state": domain.APPEAL_FILED, "filed_at": _iso(clock),
              "filed_by": cmd.caller.audit_name()}
    rec.appeals.append(appeal)
    return {"appeal": views.appeal_view(appeal), "grade": views.grade_view(rec, system, True)}


def decide_appeal(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    appeal_id = (request.get("appeal_id") or "").strip()
    if not appeal_id:
        raise InvalidArgument("appeal_id: required")
    rec = uow.repo.grade_by_appeal(appeal_id)
    if rec is None:
        raise NotFound(f"appeal {appeal_id} not found", reason="APPEAL_NOT_FOUND")
    year_doc = _year(uow, rec.year)
    _may_review(cmd.caller, year_doc, rec.institution_id)
    index = next(i for i, a in enumerate(rec.appeals) if a["appeal_id"] == appeal_id)
    appeal = dict(rec.appeals[index])
    system = system_of(uow, rec.system_id)
    contested = [i["indicator_id"] for i in appeal["indicators"]]
    decisions = domain.parse_appeal_decisions(system, contested, request.get("decisions"),
                                              errors)
    _invalid(errors)
    if appeal["state"] != domain.APPEAL_FILED:
        raise FailedPrecondition(f"appeal {appeal_id} was decided", reason="APPEAL_DECIDED",
                                 subject=f"appeal/{appeal_id}")
    accepted = {system.index[d["indicator_id"]]: d["value"] for d in decisions if d["accepted"]}
    revised = False
    if accepted:
        reasons = "; ".join(f"{d['indicator_id']}: {d['reason']}" for d in decisions
                            if d["accepted"])
        revised = rescore(uow, clock, settings, rec, system, f"appeal {appeal_id}: {reasons}",
                          cmd.caller.audit_name(), fixed=accepted, appeal_id=appeal_id)
    appeal.update({
        "state": domain.APPEAL_DECIDED, "decided_at": _iso(clock),
        "decided_by": cmd.caller.audit_name(),
        "decision_items": [{"indicator_id": d["indicator_id"], "accepted": d["accepted"],
                            **domain.value_fields(system.leaf(d["indicator_id"]), d["value"]),
                            "reason": d["reason"]} for d in decisions],
        "resulting_revision": rec.revision if revised else None})
    rec.appeals[index] = appeal
    return {"appeal": views.appeal_view(appeal), "grade": views.grade_view(rec, system, True),
            "revised": revised}


def rescore(uow, clock, settings, rec: GradeRecord, system, reason: str, actor: str,
            fixed: dict | None = None, appeal_id: str = "", facts: list | None = None) -> bool:
    """Score a published grade again from its inputs (an appeal's values, the year's facts as
    they stand now); a changed grade or score is a new revision with its reason and
    GradeRevised, never an overwrite. True if revised."""
    appealed = {int(c): v for c, v in (rec.appealed or {}).items()}
    appealed.update(fixed or {})
    values, sources = domain.assemble(system, np.array([rec.declared]), np.array([rec.reviewed]))
    values, sources = values[0], sources[0]
    offences = list(rec.offences or ())
    facts_changed = facts is not None
    if facts is None:  # the facts as they were scored
        facts = [f for f in rec.facts or ()]
    else:  # the facts changed: the offences they show again (the reviewers' findings stay)
        findings = [{"offence_id": o["offence_id"], "reason": o["finding"]}
                    for o in offences if o.get("finding")]
        offences = domain.offences_found(system, facts, findings)
    refs = domain.apply_facts(system, values, sources, facts,
                              fixed={c: appealed[c] for c in appealed})
    ungraded = bool(rec.ungraded_reason)
    override = int((rec.overall or {}).get("grade") or 0)
    scored = domain.score(system, values[None, :], sources[None, :], np.array([override]),
                          np.array([bool(offences)]), np.array([ungraded]))
    grade, total = int(scored.grades[0]), int(scored.totals[0])
    rec.values, rec.sources, rec.fact_refs = values.tolist(), sources.tolist(), refs
    rec.appealed = {str(c): v for c, v in appealed.items()}
    rec.facts = facts
    rec.offences = offences if grade != domain.UNGRADED else []
    previous = domain.GRADE_BY_NAME[rec.grade]
    if grade == previous and total == rec.score:
        return False
    _, override_reason = grade_reason(rec.ungraded_reason, rec.offences, rec.overall, grade)
    rec.revision += 1
    rec.revisions.append(revision_of(scored, 0, rec.revision, reason, override_reason,
                                     rec.offences, _iso(clock), actor, appeal_id))
    rec.grade, rec.score, rec.reason = domain.GRADE_NAMES[grade], total, reason
    uow.emit(rec, "GradeRevised", {
        "institution_id": rec.institution_id, "year": rec.year, "revision": rec.revision,
        "grade": rec.grade, "previous_grade": domain.GRADE_NAMES[previous],
        "score_centipoints": total, "reason": reason, "appeal_id": appeal_id}, actor)
    GRADES_REVISED.labels("appeal" if appeal_id else "facts").inc()
    if grade == domain.GRADE_A and previous != domain.GRADE_A:
        list_red(uow, clock, rec.institution_id, rec.district_code or "", rec.year, actor)
    elif previous == domain.GRADE_A and grade != domain.GRADE_A:
        unlist_red(uow, clock, rec.institution_id, rec.year,
                   f"revision {rec.revision}: grade {rec.grade}", actor)
    if rec.offences and facts_changed:
        list_black_for_offences(uow, clock, settings, rec.institution_id,
                                rec.district_code or "", rec.year, rec.offences, actor)
    return True


# --- commendations, credit repair, the integrity file -------------------------------------------------
def record_commendation(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    institution_id = domain.check_institution_id(request.get("institution_id"),
                                                 "institution_id", errors)
    year = domain.check_year(request.get("year"), errors)
    kind = request.get("kind") or ""
    if kind not in ("INTEGRITY_ENTRY_KIND_COMMENDATION", "INTEGRITY_ENTRY_KIND_REWARD"):
        errors.append("kind: INTEGRITY_ENTRY_KIND_COMMENDATION or INTEGRITY_ENTRY_KIND_REWARD")
    summary = (request.get("summary") or "").strip()
    if not summary:
        errors.append("summary: required")
    _invalid(errors)
    inst = uow.repo.institution(institution_id)
    if inst is None or not inst.filed_on:
        raise NotFound(f"institution {institution_id} is not filed", reason="NOT_FILED")
    today = _today(clock).isoformat()
    actor = cmd.caller.audit_name()
    entries = []
    basis = (request.get("basis") or "").strip() or (
        "001 ch.7 art.1(1) 通报表扬" if kind.endswith("COMMENDATION") else "001 ch.7 art.1")
    entry = {"entry_id": f"entry:{uow.new_id()}", "kind": kind, "summary": summary,
             "recorded_on": today, "year": year, "basis": basis, "public": True}
    record_entry(uow, inst, entry, actor)
    entries.append(entry)
    if kind.endswith("COMMENDATION"):
        years = set(inst.commended_years or ()) | {year}
        inst.commended_years = sorted(years)
        for last in range(year, year + domain.PRAISED_YEARS):
            key = f"praised:{last}"
            if domain.praised_running(years, last) and key not in (inst.rewards or ()):
                inst.rewards.append(key)
                reward = {"entry_id": f"reward:{key}", "kind": "INTEGRITY_ENTRY_KIND_REWARD",
                          "summary": f"commended {last - 2}-{last}, three years running: "
                                     "priority recommendation and policy support",
                          "recorded_on": today, "year": last, "basis": "001 ch.7 art.1(1)",
                          "public": True}
                record_entry(uow, inst, reward, actor)
                entries.append(reward)
    return {"entries": [views.entry_view(e, True) for e in entries]}


def _black_listing(uow, listing_id: str) -> IntegrityListing:
    listing = uow.repo.listing(listing_id) if listing_id else None
    if listing is None or listing.kind != domain.BLACK:
        raise NotFound(f"black-list entry {listing_id!r} not found", reason="LISTING_NOT_FOUND")
    return listing


def apply_credit_repair(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    listing_id = (request.get("listing_id") or "").strip()
    if not listing_id:
        errors.append("listing_id: required")
    statement = (request.get("statement") or "").strip()
    if not statement:
        errors.append("statement: required: what was rectified")
    proof = domain.parse_evidence(request.get("proof"), "proof", errors)
    if not request.get("proof"):
        errors.append("proof: at least one document proving the rectification")
    _invalid(errors)
    listing = _black_listing(uow, listing_id)
    require_own_institution(cmd.caller, listing.institution_id, "black-list entry")
    pending = any(r["state"] == domain.REPAIR_APPLIED for r in listing.repairs or ())
    refusal = domain.repair_refusal(listing.state, date.fromisoformat(listing.listed_on),
                                    _today(clock), pending)
    if refusal:
        raise FailedPrecondition(f"credit repair: {refusal}", reason="CREDIT_REPAIR_REFUSED",
                                 subject=f"listing/{listing_id}")
    listing.repairs.append({"repair_id": uow.new_id(), "state": domain.REPAIR_APPLIED,
                            "applied_on": _today(clock).isoformat(), "statement": statement,
                            "proof": proof})
    return {"entry": views.black_view(listing, True)}


def decide_credit_repair(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    listing_id = (request.get("listing_id") or "").strip()
    if not listing_id:
        errors.append("listing_id: required")
    reason = (request.get("reason") or "").strip()
    if not reason:
        errors.append("reason: required")
    _invalid(errors)
    listing = _black_listing(uow, listing_id)
    index = next((i for i, r in enumerate(listing.repairs or ())
                  if r["state"] == domain.REPAIR_APPLIED), None)
    if index is None:
        raise FailedPrecondition("no credit repair application is pending for this entry",
                                 reason="NO_PENDING_REPAIR", subject=f"listing/{listing_id}")
    today = _today(clock).isoformat()
    actor = cmd.caller.audit_name()
    approve = bool(request.get("approve"))
    decision_ref = (request.get("decision_ref") or "").strip() or f"repair:{uow.new_id()}"
    repair = dict(listing.repairs[index])
    repair.update({"state": domain.REPAIR_APPROVED if approve else domain.REPAIR_REFUSED,
                   "decided_on": today, "decided_by": actor, "reason": reason})
    listing.repairs[index] = repair
    if approve:
        inst = institution_for(uow, listing.institution_id)
        listing.state, listing.removed_on = domain.REMOVED, today
        listing.removal_reason = f"credit repair approved: {reason}"
        uow.emit(listing, "CreditRepaired", {
            "institution_id": listing.institution_id, "listing_id": listing_id,
            "decided_on": today, "decision_ref": decision_ref}, actor)
        uow.emit(listing, "BlackListEntryRemoved", {
            "institution_id": listing.institution_id, "listing_id": listing_id,
            "reason": listing.removal_reason, "removed_on": today}, actor)
        record_entry(uow, inst, {
            "entry_id": f"{listing_id}:repair:{repair['repair_id']}",
            "kind": "INTEGRITY_ENTRY_KIND_CREDIT_REPAIR",
            "summary": f"credit repair approved: {reason}", "recorded_on": today,
            "decision_ref": decision_ref, "listing_id": listing_id, "public": False}, actor)
        record_entry(uow, inst, {
            "entry_id": f"{listing_id}:removed", "kind": "INTEGRITY_ENTRY_KIND_LIST_REMOVAL",
            "summary": "removed from the black list's publication (credit repair)",
            "recorded_on": today, "decision_ref": decision_ref, "listing_id": listing_id,
            "public": False}, actor)
    return {"entry": views.black_view(listing, True)}


def get_integrity_file(cmd, uow, clock, settings):
    errors = []
    institution_id = domain.check_institution_id(cmd.request.get("institution_id"),
                                                 "institution_id", errors)
    _invalid(errors)
    caller = cmd.caller
    full = caller.role == "regulator" or (caller.role == "institution"
                                          and caller.institution_id == institution_id)
    inst = uow.repo.institution(institution_id)
    grades = uow.repo.grades_of(institution_id)
    if inst is None and not grades:
        raise NotFound(f"no integrity file for {institution_id}", reason="NOT_FOUND")
    listings = {x.listing_id: x for x in uow.repo.listings_of(institution_id)}
    today = _today(clock).isoformat()

    def published(entry: dict) -> bool:
        listing = listings.get(entry.get("listing_id") or "")
        if listing is not None and listing.kind == domain.BLACK and (
                listing.state != domain.LISTED or (listing.publish_until or "") < today):
            return False  # left publication: kept in the file, no longer public
        return bool(entry.get("public"))

    entries = [(e, published(e)) for e in (inst.entries if inst else ())]
    for rec in grades:
        for rev in rec.revisions:
            entries.append(({
                "entry_id": f"grade:{rec.grade_id}:{rev['revision']}",
                "kind": "INTEGRITY_ENTRY_KIND_GRADE", "year": rec.year,
                "summary": f"{rec.year} grade {domain.GRADE_NAMES[rev['grade']][6:]} "
                           f"({rev['score'] / 100:.2f} points), revision {rev['revision']}"
                           + (f": {rev['reason']}" if rev.get("reason") else ""),
                "recorded_on": (rev.get("at") or "")[:10], "basis": "000",
                "source_service": "grading"}, True))
    entries.sort(key=lambda pair: pair[0].get("recorded_on") or "")
    shown = [views.entry_view(e, p) for e, p in entries if full or p]
    return {"institution_id": institution_id, "entries": shown, "public_view": not full}


def list_red_list(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    year = request.get("year") or 0
    if year:
        domain.check_year(year, errors)
    district = (request.get("district_code") or "").strip()
    try:
        page = paging.page(cmd, clock.now())
    except InvalidArgument as exc:
        errors.extend(exc.violations)
    _invalid(errors)
    filters = {"kind": domain.RED, "state": domain.LISTED}
    if year:
        filters["year"] = year
    if district:
        filters["district_code"] = district
    rows, last = uow.repo.listings_page(filters, page.size, page.after)
    return {"entries": [views.red_view(r) for r in rows], "page": page.response(last)}


def list_black_list(cmd, uow, clock, settings):
    request, errors = cmd.request, []
    district = (request.get("district_code") or "").strip()
    try:
        page = paging.page(cmd, clock.now())
    except InvalidArgument as exc:
        errors.extend(exc.violations)
    _invalid(errors)
    filters = {"kind": domain.BLACK, "state": domain.LISTED}
    if district:
        filters["district_code"] = district
    rows, last = uow.repo.listings_page(filters, page.size, page.after,
                                        published_on=_today(clock).isoformat())
    return {"entries": [views.black_view(r, False) for r in rows], "page": page.response(last)}


# --- the clock -------------------------------------------------------------------------------------
def sweep(uow, clock, settings):
    """Black-list entries whose publication period ended leave publication (the file keeps
    them): BlackListEntryRemoved, once each."""
    today = _today(clock).isoformat()
    ended = 0
    for listing in uow.repo.expired_black(today):
        with uow.step(f"listing {listing.listing_id}") as step:
            listing.state, listing.removed_on = domain.REMOVED, today
            listing.removal_reason = f"publication period ended on {listing.publish_until}"
            uow.emit(listing, "BlackListEntryRemoved", {
                "institution_id": listing.institution_id, "listing_id": listing.listing_id,
                "reason": listing.removal_reason, "removed_on": today}, "system")
            record_entry(uow, institution_for(uow, listing.institution_id), {
                "entry_id": f"{listing.listing_id}:removed",
                "kind": "INTEGRITY_ENTRY_KIND_LIST_REMOVAL",
                "summary": f"black list entry left publication: {listing.removal_reason}",
                "recorded_on": today, "listing_id": listing.listing_id, "public": False},
                "system")
        ended += step.done
    return {"ended": ended}
