"""Filing's handlers: one function per RPC, event and timer, `(command, uow, clock, settings)`.
The rules are in domain/, the queries in repository.py; no nameko here."""
from __future__ import annotations

import logging
import time
import uuid
from datetime import date

from mongoengine.errors import NotUniqueError

from services.common import paging
from services.common.auth import SYSTEM, Identity, require_own_institution
from services.common.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.vocabulary import drop_empty, normalize_id
from services.common.workdays import today_in_shanghai
from services.filing import domain
from services.filing.models import Application, Institution
from services.filing.views import (
    activity_view,
    application_answer,
    application_view,
    institution_view,
    open_excess_view,
    open_proposals_view,
    receipt_view,
    register_entry_view,
)

log = logging.getLogger(__name__)

# A write that claims a quota seat another write took since it was read is refused by the
# database (the unique index on Institution.seats); the call then reads again and plans anew,
# up to this many times (a seat is lost to a concurrent writer at most once per free seat).
SEAT_ATTEMPTS = 6
# Who changes a filing on inspection's decisions (the decision's own actor is inspection's).
INSPECTION = Identity(subject="inspection", role="service")


def _today(clock) -> date:
    return today_in_shanghai(clock.now())


def _application(uow, application_id) -> Application:
    application_id = application_id.strip() if isinstance(application_id, str) else ""
    if not application_id:
        raise InvalidArgument("application_id: required")
    app = uow.repo.application(application_id)
    if app is None:
        raise NotFound(f"application {application_id} not found")
    return app


def _institution(uow, institution_id, caller: Identity) -> Institution:
    institution_id = normalize_id(institution_id)
    if not institution_id:
        raise InvalidArgument("institution_id: required")
    require_own_institution(caller, institution_id, "institution")
    institution = uow.repo.institution(institution_id)
    if institution is None:
        raise NotFound(f"institution {institution_id} is not filed")
    return institution


def _institution_answer(uow, clock, institution: Institution) -> dict:
    activity = activity_view(uow.repo.activity(institution.institution_id), _today(clock))
    return {"institution": institution_view(institution, activity)}


# --- quota seats (ch.6 art.5; domain/quotas.py) ------------------------------------------------
def _write_now(uow, institution: Institution, answer: dict | None = None) -> bool:
    """Write the institution now, so a lost seat race is seen inside the call: False when the
    database refused it because a seat it claims was taken meanwhile (it is then forgotten:
    the caller reads it again and plans anew). `answer`: the call's answer, stored with its
    request record in this write, as the unit of work's last write would store it."""
    if answer is not None and uow.request is not None:
        uow.answer = answer
    try:
        uow.flush(institution)
    except (AlreadyExists, NotUniqueError):
        uow.forget([institution])
        return False
    return True


def _new_excess_id() -> str:
    return uuid.uuid4().hex[:12]


def _settle_seats(uow, settings, inst: Institution, today: date, cause: str, ref: str,
                  actor) -> list[dict]:
    """Claim the seats the institution's scope needs where it now is (keeping those it holds),
    release the others, and record an excess where every seat is held by others; end the
    excesses that no longer stand. The new excess records (each a violation and a
    QuotaExceeded) are returned. The caller writes with _write_now."""
    limit_of = settings.quota_limit
    needs = domain.seat_needs(inst.scope, inst.district_code, settings.areas) \
        if inst.status in domain.REGISTER_STATUSES else []
    taken = uow.repo.seats_taken(domain.seat_candidates(needs, limit_of), inst.institution_id)
    plan = domain.plan_seats(needs, inst.seats or [], taken, limit_of)
    counts = {}
    if plan.lacking:
        codes = sorted({code for _, code in plan.lacking})
        counts = {key: n + 1 for key, n in domain.filed_per_need(
            uow.repo.register_scopes(codes), plan.lacking, settings.areas,
            inst.institution_id).items()}
    change = domain.settle_excess(list(inst.quota_excess or []), needs, plan.lacking, counts,
                                  limit_of, cause, ref, today, _new_excess_id)
    _record_seats(uow, inst, plan.seats, change, actor)
    return change.recorded


def _release_seats(uow, settings, inst: Institution, today: date, gone_reason: str,
                   actor) -> None:
    """Give up the seats (and end the excesses) of what the institution no longer evaluates
    where it is: everything, once off the register. Never claims, so never races."""
    needs = domain.seat_needs(inst.scope, inst.district_code, settings.areas) \
        if inst.status in domain.REGISTER_STATUSES else []
    kept = [t for t in inst.seats or [] if domain.seat_of(t)[:2] in set(needs)]
    lacking = [key for key in domain.standing_excess(inst.quota_excess) if key in set(needs)]
    change = domain.settle_excess(list(inst.quota_excess or []), needs, lacking, {},
                                  settings.quota_limit, "", "", today, _new_excess_id,
                                  gone_reason)
    _record_seats(uow, inst, sorted(kept), change, actor)


def _record_seats(uow, inst: Institution, seats: list[str], change, actor) -> None:
    if sorted(inst.seats or []) != seats:
        inst.seats = seats
    if change.recorded or change.ended:
        inst.quota_excess = change.excess
    for record in change.recorded:
        inst.violations.append(domain.excess_violation(record))
        uow.emit(inst, "QuotaExceeded", {
            "institution_id": inst.institution_id, "excess_id": record["excess_id"],
            "occupation_code": record["occupation_code"], "area": record["area"],
            "limit": record["limit"], "count": record["count"], "cause": record["cause"]}, actor)
    for record, reason in change.ended:
        uow.emit(inst, "QuotaExcessEnded", {
            "institution_id": inst.institution_id, "excess_id": record["excess_id"],
            "reason": reason}, actor)


# --- applications (ch.2 art.3-7) -------------------------------------------------------------
def _unmet(settings, conditions: dict | None, received_on: date) -> list[str]:
    return domain.unmet_conditions(
        conditions, received_on, settings.urgent_occupations,
        min_years=(domain.MIN_HISTORY_YEARS, settings.urgent_min_years),
        min_count=(domain.MIN_PERSON_TIMES_3Y, settings.urgent_min_person_times))


def _open_application(cmd, uow, clock, settings, *, kind: str, institution: dict, scope: list,
                      materials: list, conditions: dict | None,
                      filed: Institution | None = None) -> Application:
    """A new application, a scope change or a renewal: received today, on the same acceptance
    clock. One open application per institution (the database's unique open_key); its id is
    the request's (uow.new_id), so a retry racing the first call never opens a second."""
    institution_id = institution["institution_id"]
    now = clock.now()
    today = today_in_shanghai(now)
    due = domain.acceptance_due(today, settings.calendar)

    def already_open() -> AlreadyExists:
        return AlreadyExists(f"institution {institution_id} already has an open application "
                             f"{uow.repo.open_application_id(institution_id)}".strip())

    app = uow.add(Application(
        application_id=uow.new_id(), open_key=institution_id,
        institution_id=institution_id, institution=institution, scope=scope,
        materials=materials, state=domain.RECEIVED, submitted_at=now,
        received_on=today.isoformat(), acceptance_due=due.date.isoformat(),
        acceptance_due_provisional=due.provisional, kind=kind,
        conditions=conditions or {}, unmet_conditions=_unmet(settings, conditions, today),
        filing_code_before=filed.filing_code if filed else None), on_duplicate=already_open)
    uow.emit(app, "ApplicationSubmitted", {
        "application_id": app.application_id, "institution_id": institution_id,
        "received_on": app.received_on, "acceptance_due": due.to_dict()}, cmd.caller)
    if kind == domain.RENEWAL:
        uow.emit(app, "RenewalApplied", {
            "application_id": app.application_id, "institution_id": institution_id,
            "valid_until": filed.valid_until}, cmd.caller)
    return app


def submit_application(cmd, uow, clock, settings):
    request = cmd.request
    submission, conditions = domain.parse_application(request, settings.areas)
    institution_id = submission.institution["institution_id"]
    require_own_institution(cmd.caller, institution_id, "application")
    filed = uow.repo.institution(institution_id)
    if filed is not None and filed.status in domain.REGISTER_STATUSES:
        raise FailedPrecondition(f"institution {institution_id} is already filed "
                                 f"({filed.filing_code}); changes and renewals are separate")
    app = _open_application(
        cmd, uow, clock, settings, kind=domain.NEW, institution=submission.institution,
        scope=submission.scope, materials=submission.materials, conditions=conditions)
    return application_answer(app)


def request_supplement(cmd, uow, clock, settings):
    app = _application(uow, cmd.request.get("application_id"))
    requested, other_items = domain.parse_supplement_notice(cmd.request)
    notice = domain.supplement_notice(
        requested, other_items, app.state, 1 if app.supplement else 0,
        domain.missing_materials(app.materials), _today(clock), app.acceptance_due)
    app.state = domain.SUPPLEMENT_REQUESTED
    app.supplement = notice
    app.supplement_due = notice["due_on"]
    uow.emit(app, "SupplementRequested", {
        "application_id": app.application_id, "institution_id": app.institution_id,
        "missing_materials": requested, "other_items": other_items,
        "due_on": app.supplement_due}, cmd.caller)
    return application_answer(app)


def supplement_application(cmd, uow, clock, settings):
    app = _application(uow, cmd.request.get("application_id"))
    require_own_institution(cmd.caller, app.institution_id, "application")
    domain.require_state(app.state, {domain.SUPPLEMENT_REQUESTED}, "supplement")
    today = _today(clock)
    domain.check_supplement_open(app.supplement_due, today)
    supplied, answered = domain.parse_supplement(cmd.request, app.supplement)
    app.materials, app.supplement, complete = domain.apply_supplement(
        app.supplement, app.materials, supplied, answered, today)
    payload = {"application_id": app.application_id, "institution_id": app.institution_id,
               "complete": complete}
    if complete:  # the day the supplement is complete counts as the new day of receipt
        due = domain.acceptance_due(today, settings.calendar)
        app.state = domain.RECEIVED
        app.received_on = today.isoformat()
        app.acceptance_due = due.date.isoformat()
        app.acceptance_due_provisional = due.provisional
        payload.update(received_on=app.received_on, acceptance_due=due.to_dict())
    uow.emit(app, "ApplicationSupplemented", payload, cmd.caller)
    return application_answer(app)


def accept_application(cmd, uow, clock, settings):
    request = cmd.request
    app = _application(uow, request.get("application_id"))
    today = _today(clock)
    decision = domain.acceptance_decision(
        request.get("decision") or "ACCEPTANCE_DECISION_UNSPECIFIED", app.state,
        app.acceptance_due, domain.missing_materials(app.materials), request.get("reasons"),
        today)
    if decision.accepted:
        _accept(uow, settings, app, decision, SYSTEM if decision.deemed else cmd.caller)
    else:
        app.state = domain.NOT_ACCEPTED
        app.reasons = list(decision.reasons)
        app.decided_on = today.isoformat()
        app.open_key = None
        uow.emit(app, "ApplicationNotAccepted", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "reasons": list(decision.reasons)}, cmd.caller)
    return application_answer(app)


def _accept(uow, settings, app: Application, acceptance, actor) -> None:
    due = domain.decision_due(acceptance.accepted_on, settings.calendar)
    app.state = domain.ACCEPTED
    app.accepted_on = acceptance.accepted_on.isoformat()
    app.accepted_by = acceptance.accepted_by
    app.decision_due = due.date.isoformat()
    app.decision_due_provisional = due.provisional
    uow.emit(app, "ApplicationAccepted", {
        "application_id": app.application_id, "institution_id": app.institution_id,
        "accepted_on": app.accepted_on, "accepted_by": app.accepted_by,
        "decision_due": due.to_dict()}, actor)


def decide_application(cmd, uow, clock, settings):
    request = cmd.request
    app = _application(uow, request.get("application_id"))
    outcome = request.get("outcome") or "DECISION_OUTCOME_UNSPECIFIED"
    evaluation = request.get("evaluation") or {}
    from_blockers = bool(request.get("reasons_from_blockers"))
    if from_blockers and outcome != domain.DECISION_REFUSE:
        raise InvalidArgument("reasons_from_blockers: only with DECISION_OUTCOME_REFUSE")
    if app.state == domain.FILED and outcome == domain.DECISION_FILE:
        # A retried decision (e.g. after a timeout) answers with the same receipt.
        institution = uow.repo.institution(app.institution_id)
        return {**application_answer(app), "receipt": receipt_view(institution)}
    domain.require_state(app.state, {domain.ACCEPTED}, "decide")
    today = _today(clock)
    if from_blockers:  # the written refusal, its reasons the blockers as they stand (art.6)
        blockers = _blockers(uow, settings, app, today)
        if not blockers:
            raise FailedPrecondition("nothing blocks filing this application: refuse with "
                                     "reasons of your own, or file it")
        request = {**request, "reasons": blockers + list(request.get("reasons") or [])}
    reasons = domain.check_filing_decision(outcome, evaluation, request.get("reasons"))
    app.evaluation = {k: evaluation[k] for k in ("materials_check_passed", "expert_review_passed",
                                                 "site_visit_passed", "notes") if k in evaluation}
    app.decided_on = today.isoformat()
    if outcome == domain.DECISION_REFUSE:
        app.open_key = None
        app.state = domain.REFUSED
        app.reasons = reasons
        uow.emit(app, "ApplicationRefused", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "reasons": reasons}, cmd.caller)
        return application_answer(app)
    apply = {domain.SCOPE_CHANGE: _apply_scope_change,
             domain.RENEWAL: _apply_renewal}.get(app.kind or domain.NEW, _file)
    codes: dict = {}  # a new institution's filing code, reserved once for every attempt
    for _ in range(SEAT_ATTEMPTS):
        blockers = _blockers(uow, settings, app, today)
        if blockers:  # nothing stored: the regulator refuses in writing, with these reasons
            raise FailedPrecondition("cannot file: " + "; ".join(blockers))
        institution = apply(cmd, uow, clock, settings, app, today, codes)
        # The register changes first: a crash before the application is marked FILED is
        # finished by the retried decision, which finds the change applied (each apply_*
        # checks). A seat taken since it was read: read the register again and decide anew.
        if _write_now(uow, institution):
            break
    else:
        raise Conflict("the quota seats kept changing while filing; decide again")
    app.open_key = None
    app.state = domain.FILED
    app.filing_code = institution.filing_code
    return {**application_answer(app), "receipt": receipt_view(institution)}


def _claim_or_refuse(uow, settings, inst: Institution, needs: list[tuple[str, str]]) -> None:
    """The seats an application's new needs take: it is filed only if each has one (the count
    said so when read; a concurrent filing or move may have taken the last since)."""
    limit_of = settings.quota_limit
    all_needs = domain.seat_needs(inst.scope, inst.district_code, settings.areas)
    taken = uow.repo.seats_taken(domain.seat_candidates(all_needs, limit_of), inst.institution_id)
    plan = domain.plan_seats(all_needs, inst.seats or [], taken, limit_of)
    lost = [key for key in plan.lacking if key in set(needs)]
    if lost:
        raise FailedPrecondition("cannot file: " + "; ".join(
            f"quota: occupation {code} has no seat left in {domain.area_words(area)} "
            f"(at most {limit_of(area)})" for area, code in lost))
    inst.seats = plan.seats


def _file(cmd, uow, clock, settings, app: Application, today: date,
          codes: dict) -> Institution:
    """Create (or, after a crash mid-decision, find) the filed institution and its receipt."""
    institution = uow.repo.institution(app.institution_id)
    if institution is not None and institution.application_id == app.application_id:
        return institution  # this decision already filed it; finish the application
    if "code" not in codes:
        codes["code"] = institution.filing_code if institution is not None else \
            domain.filing_code(settings.province_code,
                               uow.repo.next_site_serial(settings.province_code))
    fields = domain.filed_fields(app.institution, app.scope, codes["code"], today,
                                 app.application_id)
    change = domain.status_entry(domain.ACTIVE, "filed", app.application_id, clock.now(),
                                 cmd.caller.audit_name(), today)
    if institution is None:
        institution = uow.add(Institution(institution_id=app.institution_id, history=[change],
                                          **fields))
    else:  # filed again after termination or expiry: the code stays its own
        for key, value in fields.items():
            setattr(institution, key, value)
        institution.history.append(change)
    _claim_or_refuse(uow, settings, institution,
                     domain.seat_needs(app.scope, institution.district_code, settings.areas))
    uow.emit(institution, "InstitutionFiled", {
        "application_id": app.application_id, "institution_id": app.institution_id,
        "receipt": receipt_view(institution), "district_code": institution.district_code},
        cmd.caller)
    return institution


def _apply_scope_change(cmd, uow, clock, settings, app: Application, today: date,
                        codes: dict) -> Institution:
    institution = uow.repo.institution(app.institution_id)
    if institution.scope_history and \
            institution.scope_history[-1].get("decision_ref") == app.application_id:
        return institution  # a crash after this write: finish the application only
    added, removed = domain.scope_diff(institution.scope, app.scope)
    needs = _new_needs(uow, settings, app)
    _set_scope(institution, list(app.scope), today, app.application_id)
    _claim_or_refuse(uow, settings, institution, needs)
    _release_seats(uow, settings, institution, today, "the scope changed", cmd.caller)
    uow.emit(institution, "ScopeChanged", {
        "institution_id": institution.institution_id, "scope": list(app.scope),
        "added_occupations": added, "removed_occupations": removed,
        "effective_on": today.isoformat(), "reason": "scope change filed",
        "decision_ref": app.application_id}, cmd.caller)
    return institution


def _apply_renewal(cmd, uow, clock, settings, app: Application, today: date,
                   codes: dict) -> Institution:
    institution = uow.repo.institution(app.institution_id)
    if any(h.get("decision_ref") == app.application_id for h in institution.history):
        return institution  # a crash after this write: finish the application only
    was = institution.status
    renewed = domain.renewal(institution.status, date.fromisoformat(institution.valid_until))
    institution.valid_until = renewed.valid_until.isoformat()
    _set_status(institution, renewed.status, renewed.reason, app.application_id, clock,
                cmd.caller, today)
    if was not in domain.REGISTER_STATUSES:  # expired while its timely renewal was evaluated
        _settle_seats(uow, settings, institution, today,
                      f"the renewal decided after the filing expired ({app.application_id})",
                      app.application_id, cmd.caller)
    uow.emit(institution, "FilingRenewed", {
        "institution_id": institution.institution_id, "application_id": app.application_id,
        "valid_until": institution.valid_until, "receipt": receipt_view(institution)},
        cmd.caller)
    return institution


def _blockers(uow, settings, app: Application, today: date) -> list[str]:
    """Why filing this application now would be refused: unmet conditions, quotas, an
    allocation to an area that already has an institution for the occupation."""
    needs = _new_needs(uow, settings, app)
    city_filed = uow.repo.count_filed(other_than=app.institution_id) \
        if (app.kind or domain.NEW) == domain.NEW else None
    filed = _filed_counts(uow, settings, needs, app.institution_id)
    allocated = domain.allocated_needs(list(app.scope), needs,
                                       app.institution["district_code"], settings.areas)
    return list(app.unmet_conditions or []) + domain.quota_blockers(
        needs, filed, settings.quota_limit, city_filed, settings.city_quota(today.year)) + \
        domain.allocation_blockers(allocated, filed)


def _new_needs(uow, settings, app: Application) -> list[tuple[str, str]]:
    """The seats the application adds; a scope change counts where the institution is now
    (it may have moved since it applied)."""
    filed_scope, district = [], app.institution.get("district_code")
    if app.kind == domain.SCOPE_CHANGE:
        current = uow.repo.institution(app.institution_id)
        if current is not None:
            filed_scope, district = list(current.scope), current.district_code or district
    return domain.new_needs(app.kind, list(app.scope), filed_scope, district, settings.areas)


def _filed_counts(uow, settings, needs: list[tuple[str, str]], applicant: str | None) -> dict:
    codes = sorted({code for _, code in needs})
    return domain.filed_per_need(uow.repo.register_scopes(codes), needs, settings.areas,
                                 applicant)


def get_application(cmd, uow, clock, settings):
    app = _application(uow, cmd.request.get("application_id"))
    require_own_institution(cmd.caller, app.institution_id, "application")
    return application_answer(app)


def list_applications(cmd, uow, clock, settings):
    request = cmd.request
    page = paging.page(cmd, clock.now())
    institution_id = normalize_id(request.get("institution_id"))
    if cmd.caller.role == "institution":
        if institution_id and institution_id != cmd.caller.institution_id:
            raise PermissionDenied("an institution lists only its own applications")
        institution_id = cmd.caller.institution_id
    rows, last = uow.repo.applications_page(institution_id, request.get("state"),
                                            request.get("kind"), page.size, page.after)
    return {"applications": [application_view(a) for a in rows], "page": page.response(last)}


def list_pending_decisions(cmd, uow, clock, settings):
    """The in-tray: decisions by due date, open proposals and quota excesses awaiting a
    decision by institution, each list paged on its own key (the token carries the three
    positions)."""
    page = paging.page(cmd, clock.now())
    after = page.after if isinstance(page.after, dict) else {}
    today = _today(clock)
    pending = uow.repo.pending_applications()
    needs = {a.application_id: _new_needs(uow, settings, a) for a in pending
             if a.state == domain.ACCEPTED}
    allocated = {a.application_id: domain.allocated_needs(
        list(a.scope), needs[a.application_id], a.institution.get("district_code"),
        settings.areas) for a in pending if a.state == domain.ACCEPTED}
    ranking = domain.competition(
        (domain.Contender(
            a.application_id, tuple(needs[a.application_id]),
            frozenset(allocated[a.application_id]),
            {o["occupation_code"]: o["person_times_last_3_years"]
             for o in (a.conditions or {}).get("occupations", [])},
            (a.conditions or {}).get("evaluation_history_since", ""), a.received_on)
         for a in pending if a.state == domain.ACCEPTED), settings.urgent_occupations)
    decisions = []
    for app in sorted(pending, key=_pending_key):
        if after.get("d") is not None and _pending_key(app) <= tuple(after["d"]):
            continue
        if len(decisions) > page.size:
            break
        clock_entry = domain.pending_clock(
            app.state, app.acceptance_due, app.acceptance_due_provisional, app.decision_due,
            app.decision_due_provisional, today, settings.calendar)
        if cmd.request.get("overdue_only") and not clock_entry["overdue"]:
            continue
        entry = {"application_id": app.application_id, "institution_id": app.institution_id,
                 "institution_name": app.institution.get("name", ""),
                 "kind": app.kind or domain.NEW, **clock_entry}
        if app.state == domain.ACCEPTED:
            app_needs = needs[app.application_id]
            entry["quota"] = domain.quota_standing(
                app.application_id, app_needs, allocated[app.application_id],
                settings.quota_limit, _filed_counts(uow, settings, app_needs, app.institution_id),
                ranking, settings.urgent_occupations)
            entry["blockers"] = _blockers(uow, settings, app, today)
            entry["refusal_ready"] = bool(entry["blockers"])
        decisions.append((_pending_key(app), entry))
    proposals = _after(sorted(((p["institution_id"], p["proposal"]["proposal_id"]), p)
                              for inst in uow.repo.with_open_proposals()
                              for p in open_proposals_view(inst)), after.get("p"))
    excess = _after(sorted(((e["institution_id"], e["excess"]["excess_id"]), e)
                           for inst in uow.repo.with_open_excess()
                           for e in open_excess_view(inst)), after.get("q"))
    more = len(decisions) > page.size or len(proposals) > page.size or len(excess) > page.size
    decisions, proposals, excess = (decisions[:page.size], proposals[:page.size],
                                    excess[:page.size])
    last = None
    if more:  # each list goes on after its last entry shown (or where it was, if it is done)
        last = {"d": list(decisions[-1][0]) if decisions else after.get("d"),
                "p": list(proposals[-1][0]) if proposals else after.get("p"),
                "q": list(excess[-1][0]) if excess else after.get("q")}
    return {"decisions": [e for _, e in decisions], "proposals": [p for _, p in proposals],
            "quota_excess": [e for _, e in excess],
            "city_quota": settings.city_quota(today.year), "city_filed": uow.repo.count_filed(),
            "page": page.response(last)}


def _after(rows: list[tuple], position) -> list[tuple]:
    """The rows (key, entry) after a page's last key (all of them on the first page)."""
    return rows if position is None else [(k, e) for k, e in rows if k > tuple(position)]


def _pending_key(app: Application) -> tuple[str, str]:
    return (app.decision_due or app.acceptance_due or "", app.application_id)


# --- the register ---------------------------------------------------------------------------
def get_institution(cmd, uow, clock, settings):
    return _institution_answer(uow, clock,
                               _institution(uow, cmd.request.get("institution_id"), cmd.caller))


def list_register(cmd, uow, clock, settings):
    page = paging.page(cmd, clock.now())
    rows, last = uow.repo.register_page(cmd.request.get("occupation_code"),
                                        cmd.request.get("district_code"), page.size, page.after,
                                        (cmd.request.get("name") or "").strip() or None)
    return {"entries": [register_entry_view(i) for i in rows], "page": page.response(last)}


def list_areas(cmd, uow, clock, settings):
    """The city's districts and counties as configured, by code, with their quota."""
    page = paging.page(cmd, clock.now())
    codes = sorted(c for c in settings.areas if page.after is None or c > page.after)
    shown = codes[:page.size]
    areas = []
    for code in shown:
        name, kind = settings.areas[code]
        area = domain.quota_area(code, settings.areas)
        areas.append({"district_code": code, "name": name, "kind": AREA_KINDS[kind],
                      "quota_per_occupation": settings.quota_limit(area)})
    return {"areas": areas, "page": page.response(shown[-1] if len(codes) > page.size else None)}


AREA_KINDS = {"district": "AREA_KIND_DISTRICT", "county": "AREA_KIND_COUNTY"}


def list_quota_usage(cmd, uow, clock, settings):
    """Per quota area and occupation, by area then code: the limit, the institutions on the
    register evaluating it there (seat holders, and those beyond the quota with their
    recorded excess: awaiting a decision, or kept with the reason)."""
    request = cmd.request
    page = paging.page(cmd, clock.now())
    district = (request.get("district_code") or "").strip()
    if district and district not in settings.areas:
        raise InvalidArgument(f"district_code: {district} is not a district or county of "
                              "this city")
    only_area = domain.quota_area(district, settings.areas) if district else None
    code_filter = (request.get("occupation_code") or "").strip()
    rows: dict[tuple[str, str], list[dict]] = {}
    for inst in uow.repo.register_rows(code_filter or None):
        seats = {domain.seat_of(t)[:2] for t in inst.seats or []}
        excess = domain.standing_excess(inst.quota_excess)
        for item in inst.scope:
            key = (domain.occupation_area(item, inst.district_code, settings.areas),
                   item["occupation_code"])
            if (only_area and key[0] != only_area) or (code_filter and key[1] != code_filter):
                continue
            rows.setdefault(key, []).append(drop_empty({
                "institution_id": inst.institution_id, "filing_code": inst.filing_code,
                "institution_name": inst.name, "district_code": inst.district_code,
                "seat": key in seats, "allocated": bool(item.get("serves_district_code")),
                "excess": drop_empty(dict(excess[key])) if key in excess else None}))
    usage = []
    for (area, code), holders in sorted(rows.items()):
        exceeding = sum(1 for h in holders if not h.get("seat"))
        if request.get("exceeded_only") and not exceeding:
            continue
        usage.append((f"{area}|{code}", drop_empty({
            "area": area, "area_name": _area_name(area, settings.areas),
            "occupation_code": code, "limit": settings.quota_limit(area), "count": len(holders),
            "exceeding": exceeding,
            "institutions": sorted(holders, key=lambda h: h["filing_code"])})))
    usage = [(k, u) for k, u in usage if page.after is None or k > page.after]
    shown = usage[:page.size]
    last = shown[-1][0] if len(usage) > page.size else None
    return {"usage": [u for _, u in shown], "page": page.response(last)}


def _area_name(area: str, areas: dict) -> str:
    if area == "district":
        return "、".join(name for name, kind in areas.values() if kind == "district")
    return areas.get(area.split(":", 1)[1], ("", ""))[0]


# --- changes and renewal (ch.2 art.8-9) -------------------------------------------------------
def file_change(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    kind, request_id = domain.parse_change_kind(request, errors)
    institution = _changeable(uow, request, cmd.caller)
    if kind == domain.CHANGE_SCOPE:
        scope, materials, conditions = domain.parse_scope_change(
            request, list(institution.scope), errors, institution.district_code or "",
            settings.areas)
        app = _open_application(cmd, uow, clock, settings, kind=domain.SCOPE_CHANGE,
                                institution=_details(institution), scope=scope,
                                materials=materials, conditions=conditions, filed=institution)
        return {**_institution_answer(uow, clock, institution), **application_answer(app)}
    for _ in range(SEAT_ATTEMPTS):
        answer, moved = _details_change(cmd, uow, clock, settings, institution, request_id,
                                        list(errors))
        if not moved or _write_now(uow, institution, answer):
            return answer
        institution = _changeable(uow, request, cmd.caller)  # a seat was taken: read again
    raise Conflict("the quota seats kept changing; file the change again")


def _changeable(uow, request: dict, caller) -> Institution:
    institution = _institution(uow, request.get("institution_id"), caller)
    if institution.status not in domain.REGISTER_STATUSES:
        status = institution.status.replace("INSTITUTION_STATUS_", "").lower()
        raise FailedPrecondition(f"cannot file a change: the filing is {status}")
    return institution


def _details_change(cmd, uow, clock, settings, institution: Institution, request_id: str,
                    errors: list) -> tuple[dict, bool]:
    """(the answer, whether the institution moved to another quota area). A move is examined
    under the same conditions as a filing (ch.2 art.8): in the new area each occupation takes
    a free seat, or is recorded as an excess awaiting the regulator's decision."""
    today = _today(clock)
    current = {k: getattr(institution, k) or "" for k in domain.DETAIL_FIELDS}
    changes, changed_on = domain.details_change(
        cmd.request, current, settings.areas, domain.PROHIBITED_NAME_WORDS, today, errors)
    if errors:
        raise InvalidArgument(errors)
    before = domain.seat_needs(institution.scope, institution.district_code, settings.areas)
    for key, value in changes.items():
        setattr(institution, key, value)
    overdue = domain.change_overdue(institution.institution_id, list(changes), changed_on,
                                    today, request_id)
    if overdue:
        violation, payload = overdue
        institution.violations.append(violation)
        uow.emit(institution, "ChangeOverdue", payload, cmd.caller)
    moved = domain.seat_needs(institution.scope, institution.district_code,
                              settings.areas) != before
    recorded = []
    if moved:
        recorded = _settle_seats(
            uow, settings, institution, today,
            f"the change of address on {changed_on} from {current['district_code']} to "
            f"{institution.district_code}", request_id, cmd.caller)
    uow.emit(institution, "DetailsChanged", {
        "institution_id": institution.institution_id, "changed_fields": sorted(changes),
        "changed_on": changed_on.isoformat(), "filed_on": today.isoformat(),
        "receipt": receipt_view(institution)}, cmd.caller)
    answer = {**_institution_answer(uow, clock, institution), "late": bool(overdue)}
    if recorded:
        answer["quota_excess"] = [drop_empty(dict(r)) for r in recorded]
    return answer, moved


def _details(institution: Institution) -> dict:
    """The filed details an application of this institution carries."""
    details = {k: getattr(institution, k) or "" for k in domain.DETAIL_FIELDS}
    return {"institution_id": institution.institution_id,
            **{k: v for k, v in details.items() if v}}


def apply_renewal(cmd, uow, clock, settings):
    request = cmd.request
    institution_id, _, materials = domain.parse_renewal(request)
    institution = _institution(uow, institution_id, cmd.caller)
    conditions = domain.parse_conditions(request.get("conditions"), list(institution.scope))
    domain.check_renewal(institution.status, date.fromisoformat(institution.valid_until),
                         _today(clock))
    app = _open_application(
        cmd, uow, clock, settings, kind=domain.RENEWAL, institution=_details(institution),
        scope=list(institution.scope), materials=materials, conditions=conditions,
        filed=institution)
    return {**application_answer(app), "apply_by": domain.renewal_apply_by(
        date.fromisoformat(institution.valid_until)).isoformat()}


# --- status decisions (ch.6 art.3-4) ------------------------------------------------------------
def _set_status(institution: Institution, status: str, reason: str, ref: str, clock,
                actor: Identity, effective_on: date) -> None:
    institution.status = status
    institution.status_reason = reason
    institution.status_decision_ref = ref
    institution.history.append(domain.status_entry(status, reason, ref, clock.now(),
                                                    actor.audit_name(), effective_on))


def _status_decision(cmd, uow, clock, settings, action: str, event_type: str) -> dict:
    institution_id, reason, ref = domain.parse_status_decision(cmd.request)
    institution = _institution(uow, institution_id, cmd.caller)
    proposal_id = (cmd.request.get("proposal_id") or "").strip()
    if proposal_id:
        proposal = domain.open_proposal(institution.proposals, proposal_id,
                                        institution.institution_id)
        if proposal["kind"] != domain.PROPOSAL_TERMINATION:
            raise FailedPrecondition("proposal_id: not a termination proposal")
    target = domain.check_status_change(action, institution.status)
    today = _today(clock)
    holds = _holds(institution)
    if action == "reinstate":
        standing = domain.inspection_holds(holds)
        if standing:
            raise FailedPrecondition(
                "cannot reinstate: suspended by inspection decision "
                f"{', '.join(h['decision_ref'] for h in standing)} until its rectification is "
                "accepted or it is reversed")
        institution.suspensions = domain.lift_manual_holds(holds)
    elif action == "suspend":
        institution.suspensions = [*holds, domain.manual_hold(ref, reason, today.isoformat())]
    _set_status(institution, target, reason, ref, clock, cmd.caller, today)
    payload = {"institution_id": institution.institution_id, "reason": reason,
               "decision_ref": ref, "effective_on": today.isoformat()}
    if event_type == "FilingTerminated":
        payload["filing_code"] = institution.filing_code
    uow.emit(institution, event_type, payload, cmd.caller)
    if proposal_id:  # the termination the regulator decided on this proposal
        institution.proposals = domain.decide_proposal(
            list(institution.proposals), proposal_id, domain.PROPOSAL_APPROVED, today, reason,
            ref)
    if target == domain.TERMINATED:
        _end_filing(uow, settings, institution, today, ref, "the filing was terminated",
                    cmd.caller)
    return _institution_answer(uow, clock, institution)


def _holds(institution: Institution) -> list[dict]:
    """The standing suspensions; a document suspended before they were kept has its one."""
    holds = list(institution.suspensions or [])
    if institution.status == domain.SUSPENDED and not holds:
        last = institution.history[-1] if institution.history else {}
        holds = [domain.manual_hold(institution.status_decision_ref or "",
                                    institution.status_reason or "",
                                    last.get("effective_on") or "")]
    return holds


def _end_filing(uow, settings, institution: Institution, today: date, ref: str,
                why: str, actor) -> None:
    """Off the register (terminated or expired): its seats are free, its excesses over, its
    open proposals closed."""
    if institution.status == domain.TERMINATED:
        institution.proposals = domain.close_proposals_on_termination(
            list(institution.proposals), today, ref)
    _release_seats(uow, settings, institution, today, why, actor)


def suspend_institution(cmd, uow, clock, settings):
    return _status_decision(cmd, uow, clock, settings, "suspend", "InstitutionSuspended")


def reinstate_institution(cmd, uow, clock, settings):
    return _status_decision(cmd, uow, clock, settings, "reinstate", "InstitutionReinstated")


def terminate_filing(cmd, uow, clock, settings):
    return _status_decision(cmd, uow, clock, settings, "terminate", "FilingTerminated")


def decide_proposal(cmd, uow, clock, settings):
    decision = domain.parse_proposal_decision(cmd.request)
    institution = _institution(uow, decision.institution_id, cmd.caller)
    proposal = domain.open_proposal(institution.proposals, decision.proposal_id,
                                    institution.institution_id)
    if proposal["kind"] == domain.PROPOSAL_TERMINATION and decision.approve:
        return _status_decision(cmd, uow, clock, settings, "terminate", "FilingTerminated")
    today = _today(clock)
    if not decision.approve:
        state = domain.PROPOSAL_DISMISSED
        uow.emit(institution, "ProposalDismissed", {
            "institution_id": institution.institution_id, "proposal_id": decision.proposal_id,
            "reason": decision.reason, "decision_ref": decision.decision_ref}, cmd.caller)
    else:
        state = domain.PROPOSAL_APPROVED
        _remove_occupation(uow, settings, institution, proposal["occupation_code"], today,
                           decision.reason, decision.decision_ref, cmd.caller)
    institution.proposals = domain.decide_proposal(
        list(institution.proposals), decision.proposal_id, state, today, decision.reason,
        decision.decision_ref)
    return _institution_answer(uow, clock, institution)


def _remove_occupation(uow, settings, institution: Institution, code: str, today: date,
                       reason: str, ref: str, actor) -> None:
    """The scope without one occupation (ch.6 art.6, or a quota excess reduced): its seat is
    free, its excess over."""
    scope = domain.scope_without(list(institution.scope), code)
    _set_scope(institution, scope, today)
    _release_seats(uow, settings, institution, today, f"occupation {code} removed from the "
                   "scope", actor)
    uow.emit(institution, "ScopeChanged", {
        "institution_id": institution.institution_id, "scope": scope,
        "removed_occupations": [code], "effective_on": today.isoformat(),
        "reason": reason, "decision_ref": ref}, actor)


def decide_quota_excess(cmd, uow, clock, settings):
    """Keep the institution beyond the quota with a reason, or reduce its scope by the
    occupation (ch.6 art.5); only an excess awaiting a decision is decided."""
    decision = domain.parse_excess_decision(cmd.request, domain.decision_text)
    institution = _institution(uow, decision.institution_id, cmd.caller)
    today = _today(clock)
    records, record = domain.decide_excess(list(institution.quota_excess or []), decision,
                                           today)
    institution.quota_excess = records
    uow.emit(institution, "QuotaExcessDecided", {
        "institution_id": institution.institution_id, "excess_id": record["excess_id"],
        "outcome": domain.QUOTA_KEEP if decision.keep else domain.QUOTA_REDUCE,
        "reason": decision.reason, "decision_ref": decision.decision_ref}, cmd.caller)
    if not decision.keep:
        _remove_occupation(uow, settings, institution, record["occupation_code"], today,
                           decision.reason, decision.decision_ref, cmd.caller)
    return _institution_answer(uow, clock, institution)


def _set_scope(institution: Institution, scope: list, effective_on: date,
               decision_ref: str | None = None) -> None:
    for key, value in domain.scope_transition(
            list(institution.scope), institution.scope_since, institution.scope_history,
            institution.filed_on, scope, effective_on, decision_ref).items():
        setattr(institution, key, value)


# --- questions ---------------------------------------------------------------------------------
def check_evaluation_right(cmd, uow, clock, settings):
    question = domain.parse_evaluation_question(cmd.request)
    require_own_institution(cmd.caller, question.institution_id, "institution")
    inst = uow.repo.institution(question.institution_id)
    snapshot = None if inst is None else {
        "status": inst.status, "filed_on": inst.filed_on, "valid_until": inst.valid_until,
        "history": list(inst.history), "scope": list(inst.scope),
        "scope_history": list(inst.scope_history or [])}
    right = domain.evaluation_right(snapshot, question.occupation_code, question.skill_level,
                                    question.on)
    answer = {"allowed": right.allowed, "reason": right.reason}
    if right.denial:
        answer["denial"] = right.denial
    if inst is not None:
        answer.update(filing_code=inst.filing_code, status=inst.status,
                      valid_until=inst.valid_until)
    return answer


def check_name(cmd, uow, clock, settings):
    name = cmd.request.get("name")
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise InvalidArgument("name: required")
    words, problems = domain.check_name(name, domain.PROHIBITED_NAME_WORDS)
    return {"acceptable": not problems, "prohibited_words": words, "problems": problems}


# --- certificates' facts (ch.6 art.4 (七), art.6) ---------------------------------------------
def count_certificates_issued(event, uow, clock, settings):
    """Count the certificates of a CertificatesIssued batch per institution and occupation,
    from `institution_id`, `assessment_date` and `counts` (occupation_code, count); the
    certificates service owns the message. An entry without an occupation or a positive count
    is skipped with a warning and the rest still counts; a body that does not parse never
    reaches here (on_event refuses it)."""
    event_id = event.meta.event_id
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        log.warning("CertificatesIssued %s without institution_id: ignored", event_id)
        return 0
    per_occupation, skipped = domain.issued_activity(
        ((c.occupation_code, c.count) for c in event.counts), event.assessment_date)
    if skipped:
        log.warning("CertificatesIssued %s: %d malformed entries skipped", event_id, skipped)
    for code, slot in per_occupation.items():
        uow.repo.add_activity(institution_id, code, slot["days"], slot["last"], event_id)
    return len(per_occupation)


# --- inspection's decisions (ch.6 art.3-4, art.7-8; domain/sanctions.py) -----------------------
def sanction_decided(event, uow, clock, settings):
    """SanctionDecided: suspend (until RectificationAccepted for it) or terminate the filing,
    once per decision id."""
    sanction = domain.Sanction(event.decision_id.strip(), event.case_id, event.basis,
                               event.summary, event.decided_on, event.suspend_filing,
                               event.terminate_filing)
    return _apply_decision_event(event, uow, clock, settings, lambda inst, today: (
        domain.sanction_decided(list(inst.inspection_decisions), _holds(inst), inst.status,
                                list(inst.history), sanction, today)))


def rectification_accepted(event, uow, clock, settings):
    """RectificationAccepted: the decision's suspension ends; active again if none stands."""
    return _apply_decision_event(event, uow, clock, settings, lambda inst, today: (
        domain.rectification_accepted(list(inst.inspection_decisions), _holds(inst),
                                      inst.status, list(inst.history),
                                      event.decision_id.strip(), event.accepted_on, today)))


def decision_reversed(event, uow, clock, settings):
    """DecisionReversed: undo what the decision did (suspension lifted, termination undone)."""
    return _apply_decision_event(event, uow, clock, settings, lambda inst, today: (
        domain.decision_reversed(list(inst.inspection_decisions), _holds(inst), inst.status,
                                 inst.status_decision_ref or "", list(inst.history),
                                 event.decision_id.strip(), event.review_id, event.reason,
                                 event.reversed_on, today, inst.valid_until)))


def _apply_decision_event(event, uow, clock, settings, decide) -> str:
    """Apply one of inspection's decision events to the institution it names, keyed on the
    decision id in the institution's own document (a redelivery, or the same decision's event
    published twice, finds its part done). Written here, not after: a concurrent change (or a
    quota seat taken meanwhile) is met by reading again and deciding anew, since an event
    handler that raises loses its message."""
    event_type = type(event).DESCRIPTOR.name
    institution_id = normalize_id(event.institution_id)
    if not institution_id or not event.decision_id.strip():
        log.warning("%s %s without institution_id or decision_id: ignored", event_type,
                    event.meta.event_id)
        return "ignored"
    for _ in range(SEAT_ATTEMPTS):
        inst = uow.repo.institution(institution_id)
        if inst is None:
            log.info("%s %s: institution not filed here; nothing to apply", event_type,
                     event.meta.event_id)
            return "not filed"
        today = _today(clock)
        outcome = decide(inst, today)
        if not outcome.changed:
            return "already applied"
        _apply_outcome(uow, clock, settings, inst, outcome, today)
        try:
            if _write_now(uow, inst):
                return "applied"
        except Conflict:
            uow.forget([inst])
    raise Conflict(f"{event_type} {event.meta.event_id}: {institution_id} kept changing")


def _apply_outcome(uow, clock, settings, inst: Institution, outcome, today: date) -> None:
    records = [r for r in inst.inspection_decisions or []
               if r.get("decision_id") != outcome.record["decision_id"]]
    inst.inspection_decisions = [*records, outcome.record]
    inst.suspensions = outcome.holds
    decision_id = outcome.record["decision_id"]
    for step in outcome.steps:
        effective_on = date.fromisoformat(step.effective_on)
        _set_status(inst, step.status, step.reason, decision_id, clock, INSPECTION,
                    effective_on)
        payload = {"institution_id": inst.institution_id, "reason": step.reason,
                   "decision_ref": decision_id, "effective_on": step.effective_on}
        if step.event_type == "FilingTerminated":
            payload["filing_code"] = inst.filing_code
        if step.event_type == "FilingExpired":
            payload = {"institution_id": inst.institution_id, "valid_until": inst.valid_until,
                       "filing_code": inst.filing_code}
        uow.emit(inst, step.event_type, payload, INSPECTION)
    if outcome.leaves_register:
        _end_filing(uow, settings, inst, today, decision_id,
                    f"the filing was terminated by decision {decision_id}", INSPECTION)
    if outcome.rejoins_register:
        _settle_seats(uow, settings, inst, today,
                      f"the termination undone on the reversal of decision {decision_id}",
                      decision_id, INSPECTION)


# --- the clock ---------------------------------------------------------------------------------
def sweep(uow, clock, settings):
    """Deemed acceptance and deemed withdrawal (art.5). Safe to run twice or in two workers at
    once: each change is conditional on the version read, and a changed one is skipped."""
    today = _today(clock)
    changed = 0
    for app in uow.repo.overdue_applications(today.isoformat()):
        action = domain.sweep_action(app.state, app.acceptance_due, app.supplement_due, today)
        if action is None:
            continue
        with uow.step(f"application {app.application_id}") as step:
            if action == "deem_accepted":
                _accept(uow, settings, app, domain.deemed_acceptance(app.acceptance_due), SYSTEM)
            else:
                _deem_withdrawn(uow, app, today)
        changed += step.done
    return {"changed": changed}


def _deem_withdrawn(uow, app: Application, today: date) -> None:
    reason = domain.withdrawal_reason(app.supplement_due)
    app.state = domain.WITHDRAWN
    app.open_key = None
    app.decided_on = today.isoformat()
    app.reasons = [reason]
    uow.emit(app, "ApplicationWithdrawn", {
        "application_id": app.application_id, "institution_id": app.institution_id,
        "reason": reason}, SYSTEM)


def lifecycle_sweep(uow, clock, settings):
    """Expiry, the quota seats, RenewalDue notices, dynamic-scope proposals, evaluation lapses
    and the pruning of per-day activity, each institution its own step."""
    today = _today(clock)
    done = {"expired": 0, "renewal_due": 0, "proposals": 0, "seats": 0, "lapsed": 0,
            "pruned": 0}
    for inst in _one_at_a_time(uow, uow.repo.expired_ids(today.isoformat())):
        with uow.step(f"expiry of {inst.institution_id}") as step:
            reason, effective_on = domain.expiry(inst.valid_until)
            _set_status(inst, domain.EXPIRED, reason, inst.application_id, clock, SYSTEM,
                        effective_on)
            uow.emit(inst, "FilingExpired", {
                "institution_id": inst.institution_id, "valid_until": inst.valid_until,
                "filing_code": inst.filing_code}, SYSTEM)
            _end_filing(uow, settings, inst, today, inst.application_id,
                        "the filing expired", SYSTEM)
        done["expired"] += step.done
    done["seats"] = _check_seats(uow, settings, today)
    due = [institution_id for institution_id, valid_until, notice_for
           in uow.repo.renewal_candidates(today.isoformat())
           if domain.renewal_notice(valid_until, notice_for, today) is not None]
    for inst in _one_at_a_time(uow, due):
        notice = domain.renewal_notice(inst.valid_until, inst.renewal_notice_for, today)
        if notice is None:
            continue
        with uow.step(f"renewal notice of {inst.institution_id}") as step:
            inst.renewal_notice_for = inst.valid_until
            uow.emit(inst, "RenewalDue", {"institution_id": inst.institution_id, **notice},
                     SYSTEM)
        done["renewal_due"] += step.done
    done["proposals"], done["lapsed"] = _judge_activity(uow, today)
    done["pruned"] = _prune_activity(uow, today)
    return done


def _one_at_a_time(uow, institution_ids, last_phase: bool = False):
    """Each institution loaded for change in turn and let go once its step is written, unless
    it has events still to publish and a later phase of the sweep may change it again (that
    phase must change this copy, not load the stored one with the same events): a sweep holds
    few at a time, since a step looks for changes in every aggregate held. Between
    institutions the worker's other calls get their turn (time.sleep(0) is eventlet's yield in
    a worker, nothing elsewhere)."""
    for institution_id in institution_ids:
        time.sleep(0)
        inst = uow.repo.institution(institution_id)
        if inst is None:
            continue
        yield inst
        if last_phase or not inst.pending_events:
            uow.forget([inst])


def _check_seats(uow, settings, today: date) -> int:
    """Every institution on the register holds a seat for each occupation where it is, or has
    a standing excess: a seat freed (by a termination, an expiry, a move away, a scope
    reduced) goes to the institution that has waited longest beyond the quota; a lowered
    quota, or a document from before seats were kept, is settled (an excess recorded where no
    seat is free). Only what changes is written; a seat taken meanwhile waits for tomorrow."""
    rows = uow.repo.register_rows()  # read only: just the ones that change are loaded
    holders = {token: i.institution_id for i in rows for token in i.seats or []}
    limit_of = settings.quota_limit

    def waited(inst) -> str:
        standing = domain.standing_excess(inst.quota_excess).values()
        return min((e.get("recorded_on") or "" for e in standing), default="9999-12-31")

    changed = 0
    for row in sorted(rows, key=lambda i: (waited(i), i.filing_code)):
        time.sleep(0)  # the worker's other calls get their turn
        needs = domain.seat_needs(row.scope, row.district_code, settings.areas)
        plan = domain.plan_seats(needs, row.seats or [], [
            t for t, who in holders.items() if who != row.institution_id], limit_of)
        if plan.seats == sorted(row.seats or []) and \
                set(plan.lacking) == set(domain.standing_excess(row.quota_excess)):
            continue
        inst = uow.repo.institution(row.institution_id)
        if inst is None or inst.status not in domain.REGISTER_STATUSES:
            continue
        lowered = [domain.seat_of(t) for t in inst.seats or []
                   if domain.seat_of(t)[2] > limit_of(domain.seat_of(t)[0])]
        cause = ("being on the register before quota seats were kept" if inst.seats is None
                 else f"the quota of {domain.area_words(lowered[0][0])} lowered to "
                      f"{limit_of(lowered[0][0])}" if lowered else "the daily check of quota seats")
        before = list(inst.seats or [])
        _settle_seats(uow, settings, inst, today, cause, f"seats:{today.isoformat()}", SYSTEM)
        try:
            written = _write_now(uow, inst)
        except Conflict:
            uow.forget([inst])
            written = False
        if not inst.pending_events:
            uow.forget([inst])
        if written:
            changed += 1
            for token in before:
                holders.pop(token, None)
            holders.update({token: inst.institution_id for token in inst.seats or []})
    return changed


def _judge_activity(uow, today: date) -> tuple[int, int]:
    """(proposals made, lapses raised): the dynamic scope (ch.6 art.4 (七), art.6) and
    EvaluationLapsed (ch.6 art.3 (三)), once a day per active institution."""
    sole = domain.sole_providers(scope for _, _, scope in uow.repo.register_scopes())
    made = lapsed = 0
    for inst in _one_at_a_time(uow, uow.repo.activity_unchecked_ids(today.isoformat()),
                               last_phase=True):
        activity = {a["occupation_code"]: a for a in uow.repo.activity(inst.institution_id)}
        findings = domain.activity_findings(list(inst.scope), inst.scope_since, inst.filed_on,
                                            activity, sole, list(inst.proposals), today)
        lapse = domain.evaluation_lapse(
            max((a["last"] for a in activity.values()), default=""), inst.filed_on,
            domain.active_since(list(inst.history), inst.filed_on), inst.lapse_raised_for,
            today)
        with uow.step(f"activity of {inst.institution_id}") as step:
            for finding in findings:
                record, event_type, payload = domain.new_proposal(
                    finding, uuid.uuid4().hex[:12], inst.institution_id, today)
                inst.proposals.append(record)
                uow.emit(inst, event_type, payload, SYSTEM)
            if lapse:
                inst.lapse_raised_for = lapse["since"]
                uow.emit(inst, "EvaluationLapsed", {
                    "institution_id": inst.institution_id,
                    "last_evaluation_on": lapse["last_evaluation_on"],
                    "months": lapse["months"]}, SYSTEM)
            inst.activity_checked_on = today.isoformat()
        made += len(findings) if step.done else 0
        lapsed += 1 if lapse and step.done else 0
    return made, lapsed


# An activity document with no day left: nothing to prune until a certificate adds a day.
NO_DAYS = "9999-12-31"


def _prune_activity(uow, today: date) -> int:
    """Per-day counts past the window go into the monthly summary (domain.prune_activity), so
    an occupation's activity document holds about 13 months of days, not every day ever."""
    pruned = 0
    for doc in uow.repo.activity_to_prune(domain.activity_cutoff(today)):
        stale, monthly = domain.prune_activity(doc["days"], today)
        remaining = [d for d in doc["days"] if d not in stale]
        new_first = min(remaining) if remaining else NO_DAYS
        if not stale and doc["first_day"] == new_first:
            continue
        pruned += uow.repo.fold_activity_days(doc["key"], doc["first_day"], stale, monthly,
                                              new_first)
    return pruned
