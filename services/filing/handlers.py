"""Filing's handlers: one function per RPC, event and timer, `(command, uow, clock, settings)`.
The rules are in domain/, the queries in repository.py; no nameko here."""
from __future__ import annotations

import logging
import uuid
from datetime import date

from services.common import paging
from services.common.auth import SYSTEM, Identity, require_own_institution
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.vocabulary import normalize_id
from services.common.workdays import today_in_shanghai
from services.filing import domain
from services.filing.models import Application, Institution
from services.filing.views import (
    activity_view,
    application_answer,
    application_view,
    institution_view,
    open_proposals_view,
    receipt_view,
    register_entry_view,
)

log = logging.getLogger(__name__)


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
    if app.state == domain.FILED and outcome == domain.DECISION_FILE:
        # A retried decision (e.g. after a timeout) answers with the same receipt.
        institution = uow.repo.institution(app.institution_id)
        return {**application_answer(app), "receipt": receipt_view(institution)}
    domain.require_state(app.state, {domain.ACCEPTED}, "decide")
    reasons = domain.check_filing_decision(outcome, evaluation, request.get("reasons"))
    today = _today(clock)
    if outcome == domain.DECISION_FILE:
        blockers = _blockers(uow, settings, app, today)
        if blockers:  # nothing stored: the regulator refuses in writing, with these reasons
            raise FailedPrecondition("cannot file: " + "; ".join(blockers))
    app.evaluation = {k: evaluation[k] for k in ("materials_check_passed", "expert_review_passed",
                                                 "site_visit_passed", "notes") if k in evaluation}
    app.decided_on = today.isoformat()
    app.open_key = None
    if outcome == domain.DECISION_REFUSE:
        app.state = domain.REFUSED
        app.reasons = reasons
        uow.emit(app, "ApplicationRefused", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "reasons": reasons}, cmd.caller)
        return application_answer(app)
    apply = {domain.SCOPE_CHANGE: _apply_scope_change,
             domain.RENEWAL: _apply_renewal}.get(app.kind or domain.NEW, _file)
    institution = apply(cmd, uow, clock, settings, app, today)
    # The register changes first: a crash before the application is marked FILED is finished
    # by the retried decision, which finds the change applied (each apply_* checks).
    uow.flush(institution)
    app.state = domain.FILED
    app.filing_code = institution.filing_code
    return {**application_answer(app), "receipt": receipt_view(institution)}


def _file(cmd, uow, clock, settings, app: Application, today: date) -> Institution:
    """Create (or, after a crash mid-decision, find) the filed institution and its receipt."""
    institution = uow.repo.institution(app.institution_id)
    if institution is not None and institution.application_id == app.application_id:
        return institution  # this decision already filed it; finish the application
    code = institution.filing_code if institution is not None else domain.filing_code(
        settings.province_code, uow.repo.next_site_serial(settings.province_code))
    fields = domain.filed_fields(app.institution, app.scope, code, today, app.application_id)
    change = domain.status_entry(domain.ACTIVE, "filed", app.application_id, clock.now(),
                                 cmd.caller.audit_name(), today)
    if institution is None:
        institution = uow.add(Institution(institution_id=app.institution_id, history=[change],
                                          **fields))
    else:  # filed again after termination or expiry: the code stays its own
        for key, value in fields.items():
            setattr(institution, key, value)
        institution.history.append(change)
    uow.emit(institution, "InstitutionFiled", {
        "application_id": app.application_id, "institution_id": app.institution_id,
        "receipt": receipt_view(institution), "district_code": institution.district_code},
        cmd.caller)
    return institution


def _apply_scope_change(cmd, uow, clock, settings, app: Application,
                        today: date) -> Institution:
    institution = uow.repo.institution(app.institution_id)
    if institution.scope_history and \
            institution.scope_history[-1].get("decision_ref") == app.application_id:
        return institution  # a crash after this write: finish the application only
    added, removed = domain.scope_diff(institution.scope, app.scope)
    _set_scope(institution, list(app.scope), today, app.application_id)
    uow.emit(institution, "ScopeChanged", {
        "institution_id": institution.institution_id, "scope": list(app.scope),
        "added_occupations": added, "removed_occupations": removed,
        "effective_on": today.isoformat(), "reason": "scope change filed",
        "decision_ref": app.application_id}, cmd.caller)
    return institution


def _apply_renewal(cmd, uow, clock, settings, app: Application, today: date) -> Institution:
    institution = uow.repo.institution(app.institution_id)
    if any(h.get("decision_ref") == app.application_id for h in institution.history):
        return institution  # a crash after this write: finish the application only
    renewed = domain.renewal(institution.status, date.fromisoformat(institution.valid_until))
    institution.valid_until = renewed.valid_until.isoformat()
    _set_status(institution, renewed.status, renewed.reason, app.application_id, clock,
                cmd.caller, today)
    uow.emit(institution, "FilingRenewed", {
        "institution_id": institution.institution_id, "application_id": app.application_id,
        "valid_until": institution.valid_until, "receipt": receipt_view(institution)},
        cmd.caller)
    return institution


def _blockers(uow, settings, app: Application, today: date) -> list[str]:
    """Why filing this application now would be refused: unmet conditions, quotas."""
    codes = _new_occupations(uow, app)
    area = domain.quota_area(app.institution["district_code"], settings.areas)
    city_filed = uow.repo.count_filed(other_than=app.institution_id) \
        if (app.kind or domain.NEW) == domain.NEW else None
    return list(app.unmet_conditions or []) + domain.quota_blockers(
        codes, area, _filed_counts(uow, settings, codes, area, app.institution_id),
        settings.quota_limit(area), city_filed, settings.city_quota(today.year))


def _new_occupations(uow, app: Application) -> list[str]:
    filed_scope = []
    if app.kind == domain.SCOPE_CHANGE:
        current = uow.repo.institution(app.institution_id)
        filed_scope = list(current.scope) if current else []
    return domain.new_occupations(app.kind, list(app.scope), filed_scope)


def _filed_counts(uow, settings, codes: list[str], area: str, applicant: str) -> dict:
    return domain.filed_per_occupation(uow.repo.register_scopes(codes), codes, area,
                                       settings.areas, applicant)


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
    """The in-tray: decisions by due date and open proposals by institution, each list paged
    on its own key (the token carries both positions)."""
    page = paging.page(cmd, clock.now())
    after = page.after if isinstance(page.after, dict) else {}
    today = _today(clock)
    pending = uow.repo.pending_applications()
    areas = {a.application_id: domain.quota_area(a.institution.get("district_code"),
                                                 settings.areas) for a in pending}
    new = {a.application_id: _new_occupations(uow, a) for a in pending
           if a.state == domain.ACCEPTED}
    ranking = domain.competition(
        (domain.Contender(
            a.application_id, areas[a.application_id], tuple(new[a.application_id]),
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
            area, codes = areas[app.application_id], new[app.application_id]
            entry["quota"] = domain.quota_standing(
                app.application_id, codes, area, settings.quota_limit(area),
                _filed_counts(uow, settings, codes, area, app.institution_id), ranking,
                settings.urgent_occupations)
            entry["blockers"] = _blockers(uow, settings, app, today)
        decisions.append((_pending_key(app), entry))
    proposals = sorted(((p["institution_id"], p["proposal"]["proposal_id"]), p)
                       for inst in uow.repo.with_open_proposals()
                       for p in open_proposals_view(inst))
    if after.get("p") is not None:
        proposals = [(k, p) for k, p in proposals if k > tuple(after["p"])]
    more = len(decisions) > page.size or len(proposals) > page.size
    decisions, proposals = decisions[:page.size], proposals[:page.size]
    last = None
    if more:  # each list goes on after its last entry shown (or where it was, if it is done)
        last = {"d": list(decisions[-1][0]) if decisions else after.get("d"),
                "p": list(proposals[-1][0]) if proposals else after.get("p")}
    return {"decisions": [e for _, e in decisions], "proposals": [p for _, p in proposals],
            "city_quota": settings.city_quota(today.year), "city_filed": uow.repo.count_filed(),
            "page": page.response(last)}


def _pending_key(app: Application) -> tuple[str, str]:
    return (app.decision_due or app.acceptance_due or "", app.application_id)


# --- the register ---------------------------------------------------------------------------
def get_institution(cmd, uow, clock, settings):
    return _institution_answer(uow, clock,
                               _institution(uow, cmd.request.get("institution_id"), cmd.caller))


def list_register(cmd, uow, clock, settings):
    page = paging.page(cmd, clock.now())
    rows, last = uow.repo.register_page(cmd.request.get("occupation_code"),
                                        cmd.request.get("district_code"), page.size, page.after)
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


# --- changes and renewal (ch.2 art.8-9) -------------------------------------------------------
def file_change(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    kind, request_id = domain.parse_change_kind(request, errors)
    institution = _institution(uow, request.get("institution_id"), cmd.caller)
    if institution.status not in domain.REGISTER_STATUSES:
        status = institution.status.replace("INSTITUTION_STATUS_", "").lower()
        raise FailedPrecondition(f"cannot file a change: the filing is {status}")
    if kind == domain.CHANGE_SCOPE:
        scope, materials, conditions = domain.parse_scope_change(
            request, list(institution.scope), errors)
        app = _open_application(cmd, uow, clock, settings, kind=domain.SCOPE_CHANGE,
                                institution=_details(institution), scope=scope,
                                materials=materials, conditions=conditions, filed=institution)
        return {**_institution_answer(uow, clock, institution), **application_answer(app)}

    today = _today(clock)
    current = {k: getattr(institution, k) or "" for k in domain.DETAIL_FIELDS}
    changes, changed_on = domain.details_change(
        request, current, settings.areas, domain.PROHIBITED_NAME_WORDS, today, errors)
    if errors:
        raise InvalidArgument(errors)
    for key, value in changes.items():
        setattr(institution, key, value)
    overdue = domain.change_overdue(institution.institution_id, list(changes), changed_on,
                                    today, request_id)
    if overdue:
        violation, payload = overdue
        institution.violations.append(violation)
        uow.emit(institution, "ChangeOverdue", payload, cmd.caller)
    uow.emit(institution, "DetailsChanged", {
        "institution_id": institution.institution_id, "changed_fields": sorted(changes),
        "changed_on": changed_on.isoformat(), "filed_on": today.isoformat(),
        "receipt": receipt_view(institution)}, cmd.caller)
    return {**_institution_answer(uow, clock, institution), "late": bool(overdue)}


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


def _status_decision(cmd, uow, clock, action: str, event_type: str) -> dict:
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
        institution.proposals = domain.close_proposals_on_termination(
            list(institution.proposals), today, ref)
    return _institution_answer(uow, clock, institution)


def suspend_institution(cmd, uow, clock, settings):
    return _status_decision(cmd, uow, clock, "suspend", "InstitutionSuspended")


def reinstate_institution(cmd, uow, clock, settings):
    return _status_decision(cmd, uow, clock, "reinstate", "InstitutionReinstated")


def terminate_filing(cmd, uow, clock, settings):
    return _status_decision(cmd, uow, clock, "terminate", "FilingTerminated")


def decide_proposal(cmd, uow, clock, settings):
    decision = domain.parse_proposal_decision(cmd.request)
    institution = _institution(uow, decision.institution_id, cmd.caller)
    proposal = domain.open_proposal(institution.proposals, decision.proposal_id,
                                    institution.institution_id)
    if proposal["kind"] == domain.PROPOSAL_TERMINATION and decision.approve:
        return _status_decision(cmd, uow, clock, "terminate", "FilingTerminated")
    today = _today(clock)
    if not decision.approve:
        state = domain.PROPOSAL_DISMISSED
        uow.emit(institution, "ProposalDismissed", {
            "institution_id": institution.institution_id, "proposal_id": decision.proposal_id,
            "reason": decision.reason, "decision_ref": decision.decision_ref}, cmd.caller)
    else:
        state = domain.PROPOSAL_APPROVED
        code = proposal["occupation_code"]
        scope = domain.scope_without(list(institution.scope), code)
        _set_scope(institution, scope, today)
        uow.emit(institution, "ScopeChanged", {
            "institution_id": institution.institution_id, "scope": scope,
            "removed_occupations": [code], "effective_on": today.isoformat(),
            "reason": decision.reason, "decision_ref": decision.decision_ref}, cmd.caller)
    institution.proposals = domain.decide_proposal(
        list(institution.proposals), decision.proposal_id, state, today, decision.reason,
        decision.decision_ref)
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
    """Expiry, RenewalDue notices and dynamic-scope proposals, each institution its own step."""
    today = _today(clock)
    done = {"expired": 0, "renewal_due": 0, "proposals": 0}
    for inst in uow.repo.expired_institutions(today.isoformat()):
        with uow.step(f"expiry of {inst.institution_id}") as step:
            reason, effective_on = domain.expiry(inst.valid_until)
            _set_status(inst, domain.EXPIRED, reason, inst.application_id, clock, SYSTEM,
                        effective_on)
            uow.emit(inst, "FilingExpired", {
                "institution_id": inst.institution_id, "valid_until": inst.valid_until,
                "filing_code": inst.filing_code}, SYSTEM)
        done["expired"] += step.done
    for inst in uow.repo.valid_institutions(today.isoformat()):
        notice = domain.renewal_notice(inst.valid_until, inst.renewal_notice_for, today)
        if notice is None:
            continue
        with uow.step(f"renewal notice of {inst.institution_id}") as step:
            inst.renewal_notice_for = inst.valid_until
            uow.emit(inst, "RenewalDue", {"institution_id": inst.institution_id, **notice},
                     SYSTEM)
        done["renewal_due"] += step.done
    done["proposals"] = _propose_from_activity(uow, today)
    return done


def _propose_from_activity(uow, today: date) -> int:
    sole = domain.sole_providers(scope for _, _, scope in uow.repo.register_scopes())
    made = 0
    for inst in uow.repo.activity_unchecked(today.isoformat()):
        activity = {a["occupation_code"]: a for a in uow.repo.activity(inst.institution_id)}
        findings = domain.activity_findings(list(inst.scope), inst.scope_since, inst.filed_on,
                                            activity, sole, list(inst.proposals), today)
        with uow.step(f"activity of {inst.institution_id}") as step:
            for finding in findings:
                record, event_type, payload = domain.new_proposal(
                    finding, uuid.uuid4().hex[:12], inst.institution_id, today)
                inst.proposals.append(record)
                uow.emit(inst, event_type, payload, SYSTEM)
            inst.activity_checked_on = today.isoformat()
        made += len(findings) if step.done else 0
    return made
