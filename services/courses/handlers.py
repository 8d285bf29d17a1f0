"""The course review's handlers: one function per RPC and timer, `(command, uow, clock,
settings)` plus the worker's signature index (`reuse`) where reuse is checked. No nameko."""
from __future__ import annotations

import hashlib
import logging

from prometheus_client import Counter, Histogram

from services.common import paging
from services.common.auth import require_own_party
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.common.vocabulary import parse_date
from services.common.workdays import today_in_shanghai
from services.courses.domain import checks, content, learning, lifecycle, reuse
from services.courses.models import (
    CheatingCase,
    CourseProvider,
    CourseRating,
    CourseRecord,
    EmployerStanding,
    TraineeLearning,
)
from services.courses.views import (
    case_view,
    check_view,
    course_view,
    employer_view,
    learning_view,
    provider_view,
    prune,
    score_view,
    summary_view,
)

log = logging.getLogger(__name__)

FINDINGS = Counter("vocreg_course_findings_total", "Findings of the automatic checks by rule.",
                   ["rule"])
REUSE_CHECK = Histogram("vocreg_course_reuse_check_seconds",
                        "One course's reuse check: signature, index query and verification.",
                        buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0))
# At most this many reuse findings per course (the largest shares).
MAX_REUSE_FINDINGS = 10


def _short_id(*parts) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:16]


def _today(clock) -> str:
    return today_in_shanghai(clock.now()).isoformat()


def _course_or_404(uow, course_id: str, for_change: bool = True) -> CourseRecord:
    course = uow.repo.course(course_id) if for_change else uow.repo.read_course(course_id)
    if course is None:
        raise NotFound(f"course {course_id} not found", reason="COURSE_NOT_FOUND")
    return course


def _own(caller, course: CourseRecord) -> None:
    require_own_party(caller, course.provider_id, "course")


# --- the checks -----------------------------------------------------------------------------------
def _conflict(rule, course_id, other_course="", other_provider="", resources=(), today=""):
    return {"conflict_id": "cc-" + _short_id(course_id, rule, other_course),
            "state": lifecycle.CONFLICT_OPEN, "rule": rule, "resource_ids": list(resources),
            "other_course_id": other_course, "other_provider_id": other_provider,
            "opened_on": today}


def run_checks(uow, reuse_index, settings, course_id: str, provider_id: str, body: dict,
               sig: reuse.Signature | None, today: str) -> tuple[list[dict], list[dict]]:
    """(findings, copyright conflicts) of a course against the rules and every other stored
    course. `course_id` is left out of the comparisons (a stored course checked again)."""
    findings = checks.static_findings(body)
    conflicts = []
    problem = checks.copyright_holder_problem(provider_id, body["copyright"]) \
        if provider_id else None
    if problem:
        conflict = _conflict(checks.COPYRIGHT_HOLDER, course_id, today=today)
        conflicts.append(conflict)
        findings.append(checks.finding(checks.COPYRIGHT_HOLDER, checks.ERROR, problem,
                                       ["copyright"], conflict_id=conflict["conflict_id"]))
    findings += _resource_findings(uow, settings, course_id, provider_id, body, conflicts, today)
    # A course caught as resubmitted or repackaged is not reported as reused besides.
    flagged = {f.get("related_course_id") for f in findings if f["rule"] == checks.REPACKAGED}
    for other in uow.repo.courses_by_hash(content.content_hash(body)):
        if other["_id"] == course_id or other["_id"] in flagged:
            continue
        if other["state"] == lifecycle.REJECTED:
            findings.append(checks.finding(
                checks.RESUBMITTED_UNCHANGED, checks.ERROR,
                "the course was rejected and is uploaded again unchanged", ["content"],
                related_course_id=other["_id"], related_provider_id=other["provider_id"]))
            flagged.add(other["_id"])
        elif other["state"] in (lifecycle.REJECTED_PERMANENTLY, lifecycle.DELISTED_PERMANENTLY):
            findings.append(checks.finding(
                checks.REPACKAGED, checks.ERROR,
                "the course is a permanently rejected course uploaded again", ["content"],
                related_course_id=other["_id"], related_provider_id=other["provider_id"],
                share=1.0))
            flagged.add(other["_id"])
    if sig is not None:
        findings += _reuse_findings(uow, reuse_index, settings, course_id, sig, flagged)
    for f in findings:
        FINDINGS.labels(f["rule"].removeprefix("CHECK_RULE_").lower()).inc()
    return findings, conflicts


def _resource_findings(uow, settings, course_id, provider_id, body, conflicts, today):
    """Copyright (the same resource claimed by another provider) and repackaging (the
    resources of a permanently rejected course) from the resources' media and text hashes."""
    keys = content.keys_of(body)
    mine = {k: rid for rid, ks in keys.by_resource.items() for k in ks}
    found = []
    for other in uow.repo.courses_with_keys(keys.all):
        if other["_id"] == course_id:
            continue
        shared = sorted({mine[k] for k in other.get("resource_keys", []) if k in mine})
        if other["state"] in (lifecycle.REJECTED_PERMANENTLY, lifecycle.DELISTED_PERMANENTLY) \
                and len(shared) >= settings.repackage_share * max(1, len(keys.by_resource)):
            found.append(checks.finding(
                checks.REPACKAGED, checks.ERROR,
                f"{len(shared)} of {len(keys.by_resource)} resources are those of a "
                "permanently rejected course", [f"resources {r}" for r in shared],
                related_course_id=other["_id"], related_provider_id=other["provider_id"],
                share=round(len(shared) / max(1, len(keys.by_resource)), 4)))
        elif provider_id and other["provider_id"] != provider_id and other["state"] not in (
                lifecycle.REJECTED, lifecycle.REJECTED_PERMANENTLY):
            conflict = _conflict(checks.COPYRIGHT_SAME_RESOURCE, course_id, other["_id"],
                                 other["provider_id"], shared, today)
            conflicts.append(conflict)
            found.append(checks.finding(
                checks.COPYRIGHT_SAME_RESOURCE, checks.ERROR,
                f"provider {other['provider_id']} submitted the same resource(s) claiming the "
                "rights", [f"resources {r}" for r in shared], related_course_id=other["_id"],
                related_provider_id=other["provider_id"], conflict_id=conflict["conflict_id"]))
    return found


def _reuse_findings(uow, reuse_index, settings, course_id, sig, flagged) -> list[dict]:
    with REUSE_CHECK.time():
        candidates = reuse_index.candidates(uow.repo, sig) - {course_id} - flagged
        matches = reuse.verify(sig, uow.repo.signatures(candidates), settings.reuse_threshold)
    facts = uow.repo.course_facts(m.key for m in matches)
    found = []
    for match in matches:
        other = facts.get(match.key)
        if other is None:  # deleted since (or a signature whose course was never written)
            continue
        share = round(match.share, 4)
        if other["state"] in (lifecycle.REJECTED_PERMANENTLY, lifecycle.DELISTED_PERMANENTLY) \
                and match.share >= settings.repackage_share:
            found.append(checks.finding(
                checks.REPACKAGED, checks.ERROR,
                f"{100 * share:.1f} % of the course is the text of a permanently rejected "
                "course", ["content"], related_course_id=match.key,
                related_provider_id=other["provider_id"], share=share))
        else:
            found.append(checks.finding(
                checks.CONTENT_REUSED, checks.WARNING,
                f"{100 * share:.1f} % of the course's text is found in course {match.key} "
                f"({100 * match.reverse_share:.1f} % of that course)", ["content"],
                related_course_id=match.key, related_provider_id=other["provider_id"],
                share=share))
        if len(found) >= MAX_REUSE_FINDINGS:
            break
    return found


# --- submission and review --------------------------------------------------------------------
def submit_course(cmd, uow, clock, settings, reuse_index):
    provider_id = cmd.caller.party_id
    errors: list[str] = []
    body = content.parse_content(cmd.request.get("course"), errors)
    if errors:
        raise InvalidArgument(errors)
    provider = uow.repo.provider(provider_id)
    if provider is not None and lifecycle.provider_standing(
            provider.sanctions) == lifecycle.STANDING_PERMANENTLY_DELISTED:
        raise FailedPrecondition("the provider was delisted permanently: no course is accepted",
                                 reason="PROVIDER_DELISTED", subject=f"provider/{provider_id}")
    today = _today(clock)
    course_id = uow.new_id()
    sig = reuse.signature(content.course_text(body))
    findings, conflicts = run_checks(uow, reuse_index, settings, course_id, provider_id, body,
                                     sig, today)
    course = uow.add(CourseRecord(
        course_id=course_id, provider_id=provider_id, state=lifecycle.SUBMITTED,
        title=body["title"], class_hours=body["class_hours"],
        question_count=len(body["questions"]), content=body,
        content_hash=content.content_hash(body), resource_keys=content.keys_of(body).all,
        findings=findings, conflicts=conflicts, submitted_on=today, submitted_at=clock.now()))
    uow.emit(course, "CourseSubmitted", {"course_id": course_id, "provider_id": provider_id,
                                         "findings_count": len(findings)}, cmd.caller)
    for conflict in conflicts:
        _emit_conflict(uow, course, conflict, cmd.caller)
        if conflict["other_course_id"]:
            _mirror_conflict(uow, conflict, course, today, cmd.caller)
    if sig is not None:
        uow.repo.store_signature(course_id, provider_id, sig)
        reuse_index.added(course_id, sig)
    return {"course": course_view(course)}


def _emit_conflict(uow, course, conflict, actor):
    uow.emit(course, "CopyrightConflictOpened", {
        "conflict_id": conflict["conflict_id"], "course_id": course.course_id,
        "provider_id": course.provider_id, "rule": conflict["rule"],
        "other_course_id": conflict["other_course_id"],
        "other_provider_id": conflict["other_provider_id"]}, actor)


def _mirror_conflict(uow, conflict, course, today, actor):
    """The other course's provider claims the same resource: the conflict is its too."""
    other = uow.repo.course(conflict["other_course_id"])
    if other is None:
        return
    mirrored = _conflict(conflict["rule"], other.course_id, course.course_id,
                         course.provider_id, conflict["resource_ids"], today)
    if any(c["conflict_id"] == mirrored["conflict_id"] for c in other.conflicts):
        return
    other.conflicts = [*other.conflicts, mirrored]
    _emit_conflict(uow, other, mirrored, actor)


def check_course(cmd, uow, clock, settings, reuse_index):
    request = cmd.request
    course_id = (request.get("course_id") or "").strip()
    draft = request.get("draft")
    if bool(course_id) == bool(draft):
        raise InvalidArgument("course_id: give a stored course's id or a draft, not both")
    today = _today(clock)
    if course_id:
        course = _course_or_404(uow, course_id, for_change=False)
        _own(cmd.caller, course)
        body, provider_id = dict(course.content), course.provider_id
    else:
        errors: list[str] = []
        body = content.parse_content(draft, errors, "draft")
        if errors:
            raise InvalidArgument(errors)
        provider_id = cmd.caller.party_id if cmd.caller.role == "provider" else ""
        course_id = ""
    sig = reuse.signature(content.course_text(body))
    findings, _ = run_checks(uow, reuse_index, settings, course_id, provider_id, body, sig, today)
    resolved = set()
    if course_id:
        resolved = {c["conflict_id"] for c in course.conflicts
                    if c["state"] == lifecycle.CONFLICT_CONFIRMED}
    return check_view(findings, content.content_hash(body), resolved)


def get_course(cmd, uow, clock, settings):
    errors: list[str] = []
    course_id = lifecycle.check_id(cmd.request.get("course_id"), "course_id", errors)
    if errors:
        raise InvalidArgument(errors)
    course = _course_or_404(uow, course_id, for_change=False)
    _own(cmd.caller, course)
    return {"course": course_view(course)}


def _resolved(course) -> set:
    return {c["conflict_id"] for c in course.conflicts
            if c["state"] == lifecycle.CONFLICT_CONFIRMED}


def review_course(cmd, uow, clock, settings):
    course_id, outcome, reasons = lifecycle.parse_review(cmd.request)
    course = _course_or_404(uow, course_id)
    blocking = checks.error_count(course.findings, _resolved(course))
    blocking += sum(1 for c in course.conflicts if c["state"] == lifecycle.CONFLICT_OPEN
                    and not any(f.get("conflict_id") == c["conflict_id"] for f in course.findings))
    refusal = lifecycle.review_refusal(course.state, outcome, blocking)
    if refusal:
        raise refusal
    today = _today(clock)
    course.state = lifecycle.STATE_AFTER_REVIEW[outcome]
    course.reviews = [*course.reviews, {"outcome": outcome, "reasons": reasons,
                                        "reviewer": cmd.caller.audit_name(),
                                        "reviewed_on": today}]
    uow.emit(course, "CourseReviewed", {"course_id": course_id,
                                        "provider_id": course.provider_id, "outcome": outcome,
                                        "reviewed_on": today}, cmd.caller)
    uow.repo.set_listed(course_id, course.state == lifecycle.LISTED)
    return {"course": course_view(course)}


def list_courses(cmd, uow, clock, settings):
    request, caller = cmd.request, cmd.caller
    errors: list[str] = []
    state = request.get("state") or None
    if state is not None and state not in lifecycle.COURSE_STATES:
        errors.append("state: not a course state")
    provider_id = (request.get("provider_id") or "").strip() or None
    try:
        page = paging.page(cmd, clock.now())
    except InvalidArgument as exc:
        errors.extend(exc.violations)
    if errors:
        raise InvalidArgument(errors)
    filters = {}
    if caller.role in ("regulator", "expert"):
        if state:
            filters["state"] = state
        if provider_id:
            filters["provider_id"] = provider_id
    elif caller.role == "provider" and provider_id in (None, caller.party_id):
        filters["provider_id"] = caller.party_id
        if state:
            filters["state"] = state
    else:
        if state not in (None, lifecycle.LISTED):
            raise PermissionDenied("only listed courses are public", reason="STATE_NOT_PUBLIC")
        filters["state"] = lifecycle.LISTED
        if provider_id:
            filters["provider_id"] = provider_id
    rows, last = uow.repo.list_page(filters, page.size, page.after)
    return {"courses": [summary_view(c) for c in rows], "page": page.response(last)}


def delete_course(cmd, uow, clock, settings, reuse_index):
    errors: list[str] = []
    course_id = lifecycle.check_id(cmd.request.get("course_id"), "course_id", errors)
    if errors:
        raise InvalidArgument(errors)
    course = _course_or_404(uow, course_id)
    _own(cmd.caller, course)
    refusal = lifecycle.deletion_refusal(course.state, cmd.caller.role == "provider")
    if refusal:
        raise refusal
    # The event is kept by the provider's record: the course's own document is gone.
    provider = uow.repo.provider(course.provider_id) or uow.add(
        CourseProvider(provider_id=course.provider_id))
    uow.emit(provider, "CourseDeleted", {"course_id": course_id,
                                         "provider_id": course.provider_id}, cmd.caller)
    uow.flush(provider)
    deleted = uow.repo.delete_course(course)
    uow.repo.delete_views(course_id)
    reuse_index.removed(course_id)
    return {"course_id": course_id, "signature_deleted": deleted}


def resolve_copyright_conflict(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    course_id = lifecycle.check_id(request.get("course_id"), "course_id", errors)
    conflict_id = lifecycle.check_id(request.get("conflict_id"), "conflict_id", errors)
    resolution = request.get("resolution")
    if resolution not in (lifecycle.CONFLICT_CONFIRMED, lifecycle.CONFLICT_REFUSED):
        errors.append(f"resolution: {lifecycle.CONFLICT_CONFIRMED} or {lifecycle.CONFLICT_REFUSED}")
    note = (request.get("note") or "").strip()
    if not note:
        errors.append("note: required")
    if errors:
        raise InvalidArgument(errors)
    course = _course_or_404(uow, course_id)
    conflicts = [dict(c) for c in course.conflicts]
    target = next((c for c in conflicts if c["conflict_id"] == conflict_id), None)
    if target is None:
        raise NotFound(f"conflict {conflict_id} not found on course {course_id}",
                       reason="CONFLICT_NOT_FOUND")
    if target["state"] != lifecycle.CONFLICT_OPEN:
        raise FailedPrecondition("the conflict is settled already", reason="CONFLICT_SETTLED",
                                 subject=f"conflict/{conflict_id}")
    target.update(state=resolution, resolved_on=_today(clock), note=note)
    course.conflicts = conflicts
    return {"course": course_view(course)}


# --- providers -----------------------------------------------------------------------------------
def _provider_id(value, errors) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        errors.append("provider_id: required")
    elif len(text) > 64:
        errors.append("provider_id: at most 64 characters")
    return text


def record_provider_issue(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    provider_id = _provider_id(request.get("provider_id"), errors)
    kind = request.get("kind")
    if kind not in lifecycle.ISSUE_KINDS:
        errors.append(f"kind: required, one of {', '.join(lifecycle.ISSUE_KINDS)}")
    description = (request.get("description") or "").strip()
    if not description:
        errors.append("description: required")
    course_ids = [c.strip() for c in request.get("course_ids") or []]
    if errors:
        raise InvalidArgument(errors)
    known = uow.repo.course_facts(course_ids)
    unknown = [c for c in course_ids if c not in known or known[c]["provider_id"] != provider_id]
    if unknown:
        raise NotFound(f"no course {unknown[0]} of provider {provider_id}",
                       reason="COURSE_NOT_FOUND")
    provider = uow.repo.provider(provider_id) or uow.add(CourseProvider(provider_id=provider_id))
    employer_id = cmd.caller.party_id if cmd.caller.role == "employer" else ""
    issue = {"issue_id": uow.new_id(), "kind": kind, "description": description,
             "course_ids": course_ids, "reported_by": cmd.caller.audit_name(),
             "employer_id": employer_id, "recorded_on": _today(clock)}
    provider.issues = [*provider.issues, issue]
    uow.emit(provider, "ProviderIssueRecorded", {
        "issue_id": issue["issue_id"], "provider_id": provider_id, "kind": kind,
        "employer_id": employer_id}, cmd.caller)
    return {"issue": issue}


def sanction_provider(cmd, uow, clock, settings):
    request = cmd.request
    today = today_in_shanghai(clock.now())
    errors: list[str] = []
    provider_id = _provider_id(request.get("provider_id"), errors)
    kind = request.get("kind")
    if kind not in lifecycle.SANCTIONS:
        errors.append(f"kind: required, one of {', '.join(lifecycle.SANCTIONS)}")
    reason = (request.get("reason") or "").strip()
    if not reason:
        errors.append("reason: required")
    notice = lifecycle.parse_notice(request.get("notice"), kind, today, errors)
    course_ids = [c.strip() for c in request.get("course_ids") or []]
    if course_ids and kind not in lifecycle.DELISTINGS:
        errors.append("course_ids: only a delisting names courses")
    issue_ids = [i.strip() for i in request.get("issue_ids") or []]
    if errors:
        raise InvalidArgument(errors)
    provider = uow.repo.provider(provider_id)
    known_issues = {i["issue_id"] for i in provider.issues} if provider else set()
    missing = [i for i in issue_ids if i not in known_issues]
    if missing:
        raise NotFound(f"issue {missing[0]} is not recorded for provider {provider_id}",
                       reason="ISSUE_NOT_FOUND")
    if provider is None:
        provider = uow.add(CourseProvider(provider_id=provider_id))
    if lifecycle.provider_standing(provider.sanctions) == lifecycle.STANDING_PERMANENTLY_DELISTED:
        raise FailedPrecondition("the provider is delisted permanently already",
                                 reason="PROVIDER_DELISTED", subject=f"provider/{provider_id}")
    delisted = []
    sanction_id = uow.new_id()
    if kind in lifecycle.DELISTINGS:
        courses = uow.repo.provider_courses(provider_id, ids=course_ids or None)
        found = {c.course_id for c in courses}
        if course_ids and set(course_ids) - found:
            raise NotFound(f"no course {sorted(set(course_ids) - found)[0]} of provider "
                           f"{provider_id}", reason="COURSE_NOT_FOUND")
        permanent = kind == lifecycle.PERMANENT_DELISTING
        for course in courses:
            if not lifecycle.delistable(course.state, kind):
                continue
            course.state = (lifecycle.DELISTED_PERMANENTLY if permanent
                            else lifecycle.DELISTED_TEMPORARILY)
            course.delisted_by = sanction_id
            delisted.append(course.course_id)
            uow.emit(course, "CourseDelisted", {
                "course_id": course.course_id, "provider_id": provider_id,
                "permanent": permanent, "reason": reason, "sanction_id": sanction_id,
                "delisted_on": today.isoformat()}, cmd.caller)
            uow.repo.set_listed(course.course_id, False)
        if course_ids and not delisted:
            raise FailedPrecondition("none of the courses named can be delisted (none is "
                                     "listed)", reason="NOTHING_TO_DELIST")
    sanction = {"sanction_id": sanction_id, "kind": kind,
                "state": (lifecycle.SANCTION_RECTIFYING if kind in lifecycle.RECTIFIED_SANCTIONS
                          else lifecycle.SANCTION_DONE),
                "reason": reason, "notice": notice, "course_ids": delisted,
                "issue_ids": issue_ids, "issued_on": today.isoformat()}
    provider.sanctions = [*provider.sanctions, sanction]
    uow.emit(provider, "ProviderSanctioned", {
        "sanction_id": sanction_id, "provider_id": provider_id, "kind": kind, "reason": reason,
        "rectification_due": notice.get("due_on", "")}, cmd.caller)
    return {"sanction": sanction}


def accept_rectification(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    provider_id = _provider_id(request.get("provider_id"), errors)
    sanction_id = lifecycle.check_id(request.get("sanction_id"), "sanction_id", errors)
    report = (request.get("report_ref") or "").strip()
    if not report:
        errors.append("report_ref: required (the written rectification report)")
    if errors:
        raise InvalidArgument(errors)
    provider = uow.repo.provider(provider_id)
    sanctions = [dict(s) for s in (provider.sanctions if provider else [])]
    sanction = next((s for s in sanctions if s["sanction_id"] == sanction_id), None)
    if sanction is None:
        raise NotFound(f"sanction {sanction_id} of provider {provider_id} not found",
                       reason="SANCTION_NOT_FOUND")
    if sanction["state"] != lifecycle.SANCTION_RECTIFYING:
        raise FailedPrecondition("the sanction is not waiting for a rectification",
                                 reason="NOT_RECTIFYING", subject=f"sanction/{sanction_id}")
    today = _today(clock)
    sanction.update(state=lifecycle.SANCTION_RECTIFIED, rectified_on=today,
                    rectification_report_ref=report)
    provider.sanctions = sanctions
    relisted = []
    if sanction["kind"] == lifecycle.TEMPORARY_DELISTING and sanction["course_ids"]:
        for course in uow.repo.provider_courses(provider_id, ids=sanction["course_ids"]):
            if course.state != lifecycle.DELISTED_TEMPORARILY or course.delisted_by != sanction_id:
                continue
            course.state, course.delisted_by = lifecycle.LISTED, None
            relisted.append(course.course_id)
            uow.emit(course, "CourseRelisted", {"course_id": course.course_id,
                                                "provider_id": provider_id,
                                                "reason": "rectification accepted"}, cmd.caller)
            uow.repo.set_listed(course.course_id, True)
    return {"sanction": sanction, "relisted_course_ids": relisted}


def get_provider(cmd, uow, clock, settings):
    errors: list[str] = []
    provider_id = _provider_id(cmd.request.get("provider_id"), errors)
    if errors:
        raise InvalidArgument(errors)
    require_own_party(cmd.caller, provider_id, "provider record")
    provider = uow.repo.read_provider(provider_id)
    courses = uow.repo.course_summaries(provider_id)
    if provider is None and not courses:
        raise NotFound(f"provider {provider_id} has no record", reason="PROVIDER_NOT_FOUND")
    return {"provider": provider_view(provider_id, provider, courses)}


# --- learning and cheating -------------------------------------------------------------------
def learning_key(trainee_ref: str, course_id: str) -> str:
    return hashlib.sha256(f"learning:{trainee_ref}:{course_id}".encode()).hexdigest()[:32]


def record_learning(cmd, uow, clock, settings):
    session = learning.parse_session(cmd.request, today_in_shanghai(clock.now()))
    course = _course_or_404(uow, session.course_id, for_change=False)
    if cmd.caller.role == "provider":
        _own(cmd.caller, course)
    if course.state != lifecycle.LISTED:
        raise FailedPrecondition("learning is recorded on listed courses only",
                                 reason="COURSE_NOT_LISTED", subject=f"course/{course.course_id}")
    questions = {q["question_id"] for q in course.content.get("questions", [])}
    for i, attempt in enumerate(session.attempts):
        unknown = [r["question_id"] for r in attempt["responses"]
                   if r["question_id"] not in questions]
        if unknown:
            raise InvalidArgument(f"attempts[{i}].responses: question {unknown[0]} is not in "
                                  "the course's bank")
    key = learning_key(session.trainee_ref, session.course_id)
    record = uow.repo.learning(key)
    if record is None:
        record = uow.add(TraineeLearning(key=key, trainee_ref=session.trainee_ref,
                                         course_id=course.course_id,
                                         provider_id=course.provider_id,
                                         employer_id=session.employer_id))
    elif record.employer_id != session.employer_id:
        raise FailedPrecondition("the trainee studies this course for another employer",
                                 reason="EMPLOYER_MISMATCH", subject=f"learning/{key}")
    record.credited_minutes = (record.credited_minutes or 0) + session.minutes
    record.attempts = (record.attempts or 0) + len(session.attempts)
    record.updated_at = clock.now()
    first = next((a for a in session.attempts if a["attempt_number"] == 1), None)
    counting = first is not None and not record.first_attempt
    if counting:
        record.first_attempt = {"passed": first["passed"], "taken_on": first["taken_on"],
                                "responses": first["responses"]}
        # Counted before the record is written, once per learning record (the statistics
        # remember the records they counted): a retry after a failed write counts nothing more.
        uow.repo.count_first_attempt(course.course_id, key, bool(first["passed"]),
                                     learning.first_attempt_increments(first["responses"]))
    case_id = ""
    if session.flags:
        case_id = uow.new_id()
        case = uow.add(CheatingCase(
            case_id=case_id, state=learning.CASE_OPEN, course_id=course.course_id,
            provider_id=course.provider_id, employer_id=session.employer_id,
            trainee_ref=session.trainee_ref, learning_key=key, flags=session.flags,
            opened_on=session.session_on))
        record.case_ids = [*record.case_ids, case_id]
        uow.emit(case, "CheatingCaseOpened", {
            "case_id": case_id, "course_id": course.course_id, "provider_id": course.provider_id,
            "employer_id": session.employer_id,
            "flags": [f.removeprefix("PROCTORING_FLAG_") for f in session.flags]}, cmd.caller)
    return {"record": learning_view(record), "case_id": case_id}


def confirm_cheating(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    case_id = lifecycle.check_id(request.get("case_id"), "case_id", errors)
    note = (request.get("note") or "").strip()
    if not note:
        errors.append("note: required")
    if errors:
        raise InvalidArgument(errors)
    case = uow.repo.case(case_id)
    if case is None:
        raise NotFound(f"cheating case {case_id} not found", reason="CASE_NOT_FOUND")
    if case.state != learning.CASE_OPEN:
        raise FailedPrecondition(f"the case is {case.state.removeprefix('CASE_STATE_')} already",
                                 reason="CASE_DECIDED", subject=f"case/{case_id}")
    today = _today(clock)
    case.decided_on, case.note = today, note
    employer = uow.repo.employer(case.employer_id)
    if not request.get("confirmed"):
        case.state = learning.CASE_DISMISSED
        return {"cheating_case": case_view(case),
                "employer": employer_view(case.employer_id, employer, _cases(uow, employer))}
    record = uow.repo.learning(case.learning_key)
    zeroed = record.credited_minutes if record else 0
    if record is not None:
        record.zeroed_minutes = (record.zeroed_minutes or 0) + zeroed
        record.credited_minutes = 0
    if employer is None:
        employer = uow.add(EmployerStanding(employer_id=case.employer_id,
                                            standing=learning.GOOD))
    outcome = learning.confirm(employer.standing, employer.rectified_since_last_case or (
        employer.standing == learning.RECTIFIED))
    case.state, case.minutes_zeroed = learning.CASE_CONFIRMED, zeroed
    case.repeat_after_rectification = outcome.repeat_after_rectification
    case.subsidy_revoked = outcome.subsidy_revoked
    employer.standing = outcome.standing
    employer.case_ids = [*employer.case_ids, case_id]
    employer.rectified_since_last_case = False
    if outcome.subsidy_revoked:
        employer.revoked_by_case_id = case_id
    uow.emit(case, "CheatingConfirmed", {
        "case_id": case_id, "course_id": case.course_id, "provider_id": case.provider_id,
        "employer_id": case.employer_id, "trainee_ref": case.trainee_ref,
        "minutes_zeroed": zeroed,
        "repeat_after_rectification": outcome.repeat_after_rectification,
        "subsidy_revoked": outcome.subsidy_revoked, "confirmed_on": today}, cmd.caller)
    return {"cheating_case": case_view(case),
            "employer": employer_view(case.employer_id, employer, _cases(uow, employer, case))}


def _cases(uow, employer, current=None) -> list:
    if employer is None:
        return []
    ids = [i for i in employer.case_ids if current is None or i != current.case_id]
    return uow.repo.cases(ids) + ([current] if current is not None else [])


def accept_employer_rectification(cmd, uow, clock, settings):
    request = cmd.request
    today = today_in_shanghai(clock.now())
    errors: list[str] = []
    employer_id = lifecycle.check_id(request.get("employer_id"), "employer_id", errors)
    interviewed = parse_date(request.get("interviewed_on"), "interviewed_on", errors)
    if interviewed is not None and interviewed > today:
        errors.append(f"interviewed_on: {interviewed} is in the future")
    report = (request.get("report_ref") or "").strip()
    if not report:
        errors.append("report_ref: required (the written rectification report)")
    if not request.get("pledge_signed"):
        errors.append("pledge_signed: the quality pledge must be signed")
    if errors:
        raise InvalidArgument(errors)
    employer = uow.repo.employer(employer_id)
    if employer is None or not learning.rectification_due(employer.standing,
                                                          employer.rectified_since_last_case):
        raise FailedPrecondition("no rectification is due from this employer",
                                 reason="NO_RECTIFICATION_DUE", subject=f"employer/{employer_id}")
    employer.rectifications = [*employer.rectifications, {
        "interviewed_on": interviewed.isoformat(), "report_ref": report, "pledge_signed": True,
        "accepted_on": today.isoformat()}]
    employer.standing = learning.standing_after_rectification(employer.standing)
    employer.rectified_since_last_case = True
    return {"employer": employer_view(employer_id, employer, _cases(uow, employer))}


def get_employer_status(cmd, uow, clock, settings):
    errors: list[str] = []
    employer_id = lifecycle.check_id(cmd.request.get("employer_id"), "employer_id", errors)
    if errors:
        raise InvalidArgument(errors)
    require_own_party(cmd.caller, employer_id, "employer record")
    employer = uow.repo.employer(employer_id)
    return {"employer": employer_view(employer_id, employer, _cases(uow, employer))}


# --- statistics and ratings ----------------------------------------------------------------
def get_item_statistics(cmd, uow, clock, settings):
    errors: list[str] = []
    course_id = lifecycle.check_id(cmd.request.get("course_id"), "course_id", errors)
    if errors:
        raise InvalidArgument(errors)
    course = _course_or_404(uow, course_id, for_change=False)
    _own(cmd.caller, course)
    stats = uow.repo.item_stats(course_id)
    firsts, passed = stats.get("first_attempts", 0), stats.get("passed", 0)
    items = []
    for q in course.content.get("questions", []):
        sums = stats["items"].get(q["question_id"], {})
        items.append({"question_id": q["question_id"], "type": q["type"],
                      "responses": sums.get("n", 0), "correct": sums.get("x", 0),
                      "facility": round(learning.facility(sums), 4),
                      "discrimination": round(learning.discrimination(sums), 4)})
    return prune({"course_id": course_id, "first_attempts": firsts,
                  "first_attempts_passed": passed,
                  "first_attempt_pass_rate": round(learning.pass_rate(firsts, passed), 4),
                  "too_easy": learning.too_easy(firsts, passed, settings.too_easy_min_attempts),
                  "items": [prune(i) for i in items]})


def rate_course(cmd, uow, clock, settings):
    errors: list[str] = []
    course_id = lifecycle.check_id(cmd.request.get("course_id"), "course_id", errors)
    try:
        stars = learning.check_stars(cmd.request.get("stars"))
    except InvalidArgument as exc:
        errors.extend(exc.violations)
    if errors:
        raise InvalidArgument(errors)
    course = _course_or_404(uow, course_id, for_change=False)
    trainee = cmd.caller.party_id
    record = uow.repo.learning(learning_key(trainee, course_id))
    if record is None or (record.credited_minutes or 0) <= 0:
        raise FailedPrecondition("only a trainee with credited hours on the course may rate it",
                                 reason="NO_CREDITED_HOURS", subject=f"course/{course_id}")
    key = learning_key(trainee, course_id)
    rating = uow.repo.rating(key)
    changed = rating is not None and rating.stars != stars
    if rating is None:
        rating = uow.add(CourseRating(key=key, course_id=course_id, trainee_ref=trainee,
                                      stars=stars, rated_on=_today(clock)))
    else:
        rating.stars, rating.rated_on = stars, _today(clock)
    row = uow.repo.refresh_score(course, key, stars)
    prior_mean, _ = _prior(uow.repo.scores())
    return {"stars": stars, "changed": changed,
            "score": score_view(row, prior_mean, settings.prior_weight)}


def _prior(rows: list[dict]) -> tuple[float, list[dict]]:
    """The mean of all rated courses' means (each course counts once), and the rows."""
    rated = [r for r in rows if r["count"] > 0]
    if not rated:
        return 0.0, []
    return sum(r["total"] / r["count"] for r in rated) / len(rated), rated


def list_top_courses(cmd, uow, clock, settings):
    """The ranking, computed from every rated course's sums (one small document per course),
    paged by rank: a page token continues after the last rank it showed."""
    page = paging.page(cmd, clock.now())
    after = page.after if isinstance(page.after, int) and page.after >= 0 else 0
    prior_mean, rated = _prior(uow.repo.scores())
    weight = settings.prior_weight
    listed = [r for r in rated if r.get("listed")]
    listed.sort(key=lambda r: (-learning.shrunk(prior_mean, weight, r["total"], r["count"]),
                               -r["count"], r["course_id"]))
    shown = listed[after:after + page.size]
    last = after + len(shown) if after + len(shown) < len(listed) else None
    return {"courses": [score_view(r, prior_mean, weight, rank) for rank, r in
                        enumerate(shown, start=after + 1)],
            "prior_mean": round(prior_mean, 4), "prior_weight": weight,
            "page": page.response(last)}
