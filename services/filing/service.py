"""The filing worker: thin nameko entrypoints over services/filing/domain.py."""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import date, timedelta

import mongoengine
from mongoengine.queryset.visitor import Q
from nameko.events import event_handler
from nameko.timer import timer
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from vocreg.filing.v1 import events_pb2

from services.common import config
from services.common.api import CallContext, Health, api
from services.common.auth import SYSTEM, Identity, require_own_institution
from services.common.bus import Outbox, idempotent, new_event
from services.common.clock import ClockProvider
from services.common.errors import (
    AlreadyExists,
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.common.metrics import WorkerMetrics
from services.common.mongo import MongoConnection
from services.common.paging import decode_token, encode_token, page_size
from services.common.workdays import today_in_shanghai
from services.filing import domain
from services.filing.models import ALIAS, Activity, Application, Institution
from services.filing.settings import SettingsProvider
from services.filing.views import (
    application_view,
    institution_view,
    receipt_view,
    register_entry_view,
)

log = logging.getLogger(__name__)

SWEEP_INTERVAL = config.sweep_interval()


def _request_hash(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class FilingService(Health):
    name = "filing"

    call = CallContext()
    db = MongoConnection(ALIAS)
    outbox = Outbox()
    metrics = WorkerMetrics()
    clock = ClockProvider()
    settings = SettingsProvider()

    # --- helpers --------------------------------------------------------------------
    def _today(self):
        return today_in_shanghai(self.clock.now())

    def _event(self, event_type: str, payload: dict, actor: Identity) -> dict:
        return new_event(events_pb2, self.name, event_type, payload, actor.audit_name(),
                         self.clock.now())

    def _application(self, application_id: str) -> Application:
        if not isinstance(application_id, str) or not application_id.strip():
            raise InvalidArgument("application_id: required")
        app = Application.objects(pk=application_id.strip()).first()
        if app is None:
            raise NotFound(f"application {application_id} not found")
        return app

    def _answer(self, app: Application) -> dict:
        return {"application": application_view(app, domain.missing_materials(app.materials))}

    def _commit(self, doc) -> None:
        doc.commit()
        self.outbox.publish_pending(doc)

    # --- applications ---------------------------------------------------------------
    @api
    def SubmitApplication(self, request, caller):
        submission, conditions = self._parse_application(request)
        institution_id = submission.institution["institution_id"]
        require_own_institution(caller, institution_id, "application")
        request_key = f"{institution_id}:{submission.request_id}"
        request_hash = _request_hash(request)

        existing = Application.objects(request_key=request_key).first()
        if existing is not None:
            return self._replay(existing, request_hash)
        filed = Institution.objects(pk=institution_id, status__in=domain.REGISTER_STATUSES).first()
        if filed is not None:
            raise FailedPrecondition(f"institution {institution_id} is already filed "
                                     f"({filed.filing_code}); changes and renewals are separate")

        now = self.clock.now()
        today = today_in_shanghai(now)
        due = domain.acceptance_due(today, self.settings.calendar)
        app = Application(
            application_id=uuid.uuid4().hex, request_key=request_key, open_key=institution_id,
            institution_id=institution_id, institution=submission.institution,
            scope=submission.scope, materials=submission.materials,
            state=domain.RECEIVED, submitted_at=now, received_on=today.isoformat(),
            acceptance_due=due.date.isoformat(), acceptance_due_provisional=due.provisional,
            request_hash=request_hash, kind=domain.NEW, conditions=conditions or {},
            unmet_conditions=self._unmet(conditions, today))
        app.record(self._event("ApplicationSubmitted", {
            "application_id": app.application_id, "institution_id": institution_id,
            "received_on": app.received_on, "acceptance_due": due.to_dict()}, caller))
        try:
            app.insert()
        except AlreadyExists:
            raced = Application.objects(request_key=request_key).first()
            if raced is not None:
                return self._replay(raced, request_hash)
            open_app = Application.objects(open_key=institution_id).only("application_id").first()
            raise AlreadyExists(
                f"institution {institution_id} already has an open application "
                f"{open_app.application_id if open_app else ''}".strip()) from None
        self.outbox.publish_pending(app)
        return self._answer(app)

    def _replay(self, app: Application, request_hash: str) -> dict:
        """The same request again returns the first answer; another one under its id is refused."""
        if app.request_hash != request_hash:
            raise AlreadyExists("request_id was already used for a different application")
        return self._answer(app)

    @api
    def RequestSupplement(self, request, caller):
        app = self._application(request.get("application_id"))
        today = self._today()
        requested = list(dict.fromkeys(request.get("missing_materials") or []))
        other_items = [i.strip() for i in request.get("other_items") or [] if i.strip()]
        domain.check_supplement_request(
            app.state, 1 if app.supplement else 0, domain.missing_materials(app.materials),
            requested, other_items, today, app.acceptance_due)
        due = domain.supplement_due(today)
        app.state = domain.SUPPLEMENT_REQUESTED
        app.supplement = {"missing_materials": requested, "other_items": other_items,
                          "requested_on": today.isoformat(), "due_on": due.date.isoformat()}
        app.supplement_due = due.date.isoformat()
        app.record(self._event("SupplementRequested", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "missing_materials": requested, "other_items": other_items,
            "due_on": app.supplement_due}, caller))
        self._commit(app)
        return self._answer(app)

    @api
    def SupplementApplication(self, request, caller):
        app = self._application(request.get("application_id"))
        require_own_institution(caller, app.institution_id, "application")
        domain.require_state(app.state, {domain.SUPPLEMENT_REQUESTED}, "supplement")
        today = self._today()
        if domain.overdue(app.supplement_due, today):
            raise FailedPrecondition(f"the supplement was due by {app.supplement_due}: "
                                     "the application is deemed withdrawn")
        errors: list[str] = []
        supplied = domain.check_materials(request.get("materials") or [], errors)
        notice_items = app.supplement.get("other_items", [])
        answered = [i.strip() for i in request.get("answered_items") or [] if i.strip()]
        unknown = [i for i in answered if i not in notice_items]
        if unknown:
            errors.append(f"answered_items: {unknown} are not items of the notice")
        if not supplied and not answered:
            errors.append("materials/answered_items: a supplement must supply something")
        if errors:
            raise InvalidArgument(errors)

        app.materials = domain.merge_materials(app.materials, supplied)
        notice = dict(app.supplement)
        notice["answered_items"] = sorted(set(notice.get("answered_items", [])) | set(answered))
        complete = domain.supplement_complete(notice, app.materials, notice["answered_items"])
        payload = {"application_id": app.application_id, "institution_id": app.institution_id,
                   "complete": complete}
        if complete:
            # The day the supplement is complete counts as the new day of receipt (art.5).
            due = domain.acceptance_due(today, self.settings.calendar)
            notice["completed_on"] = today.isoformat()
            app.state = domain.RECEIVED
            app.received_on = today.isoformat()
            app.acceptance_due = due.date.isoformat()
            app.acceptance_due_provisional = due.provisional
            payload.update(received_on=app.received_on, acceptance_due=due.to_dict())
        app.supplement = notice
        app.record(self._event("ApplicationSupplemented", payload, caller))
        self._commit(app)
        return self._answer(app)

    @api
    def AcceptApplication(self, request, caller):
        app = self._application(request.get("application_id"))
        today = self._today()
        decision = request.get("decision") or "ACCEPTANCE_DECISION_UNSPECIFIED"
        if decision == "ACCEPTANCE_DECISION_ACCEPT":
            if app.state == domain.RECEIVED and domain.overdue(app.acceptance_due, today):
                # The window has passed: by law it was accepted on its last day.
                self._deem_accepted(app)
                return self._answer(app)
            domain.check_acceptance(app.state, domain.missing_materials(app.materials))
            self._accept(app, today, domain.ACCEPTED_BY_REGULATOR, caller)
        elif decision == "ACCEPTANCE_DECISION_NOT_ACCEPT":
            errors: list[str] = []
            reasons = domain.reasons_list(request.get("reasons"), errors)
            if errors:
                raise InvalidArgument(errors)
            domain.require_state(app.state, {domain.RECEIVED}, "decline")
            if domain.overdue(app.acceptance_due, today):
                raise FailedPrecondition(f"the acceptance window ended on {app.acceptance_due}: "
                                         "the application is deemed accepted")
            app.state = domain.NOT_ACCEPTED
            app.reasons = reasons
            app.decided_on = today.isoformat()
            app.open_key = None
            app.record(self._event("ApplicationNotAccepted", {
                "application_id": app.application_id, "institution_id": app.institution_id,
                "reasons": reasons}, caller))
            self._commit(app)
        else:
            raise InvalidArgument("decision: must be ACCEPTANCE_DECISION_ACCEPT or "
                                  "ACCEPTANCE_DECISION_NOT_ACCEPT")
        return self._answer(app)

    def _accept(self, app, accepted_on, accepted_by, actor):
        due = domain.decision_due(accepted_on, self.settings.calendar)
        app.state = domain.ACCEPTED
        app.accepted_on = accepted_on.isoformat()
        app.accepted_by = accepted_by
        app.decision_due = due.date.isoformat()
        app.decision_due_provisional = due.provisional
        app.record(self._event("ApplicationAccepted", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "accepted_on": app.accepted_on, "accepted_by": accepted_by,
            "decision_due": due.to_dict()}, actor))
        self._commit(app)

    def _deem_accepted(self, app):
        self._accept(app, date.fromisoformat(app.acceptance_due), domain.ACCEPTED_BY_DEEMED, SYSTEM)

    @api
    def DecideApplication(self, request, caller):
        app = self._application(request.get("application_id"))
        outcome = request.get("outcome") or "DECISION_OUTCOME_UNSPECIFIED"
        evaluation = request.get("evaluation") or {}
        if app.state == domain.FILED and outcome == "DECISION_OUTCOME_FILE":
            # A retried decision (e.g. after a timeout) answers with the same receipt.
            return {**self._answer(app), "receipt": receipt_view(Institution.objects.get(pk=app.institution_id))}
        domain.require_state(app.state, {domain.ACCEPTED}, "decide")
        reasons = domain.check_filing_decision(outcome, evaluation, request.get("reasons"))
        today = self._today()
        if outcome == "DECISION_OUTCOME_FILE":
            blockers = self._blockers(app, today)
            if blockers:
                # Nothing stored: the regulator refuses in writing, with these reasons.
                raise FailedPrecondition("cannot file: " + "; ".join(blockers))
        app.evaluation = {k: evaluation[k] for k in ("materials_check_passed", "expert_review_passed",
                                                     "site_visit_passed", "notes") if k in evaluation}
        app.decided_on = today.isoformat()
        app.open_key = None
        if outcome == "DECISION_OUTCOME_REFUSE":
            app.state = domain.REFUSED
            app.reasons = reasons
            app.record(self._event("ApplicationRefused", {
                "application_id": app.application_id, "institution_id": app.institution_id,
                "reasons": reasons}, caller))
            self._commit(app)
            return self._answer(app)

        kind = app.kind or domain.NEW
        if kind == domain.SCOPE_CHANGE:
            institution = self._apply_scope_change(app, today, caller)
        elif kind == domain.RENEWAL:
            institution = self._apply_renewal(app, today, caller)
        else:
            institution = self._file(app, today, caller)
        app.state = domain.FILED
        app.filing_code = institution.filing_code
        self._commit(app)
        return {**self._answer(app), "receipt": receipt_view(institution)}

    def _file(self, app, today, caller) -> Institution:
        """Create (or, after a crash mid-decision, find) the filed institution and its receipt."""
        institution = Institution.objects(pk=app.institution_id).first()
        if institution is not None and institution.application_id == app.application_id:
            return institution  # this decision already filed it; finish the application
        details = app.institution
        code = institution.filing_code if institution is not None else domain.filing_code(
            self.settings.province_code, self._next_site_serial())
        fields = dict(
            name=details["name"], legal_representative=details.get("legal_representative"),
            address=details.get("address"), district_code=details.get("district_code"),
            contact_phone=details.get("contact_phone"), filing_code=code, scope=app.scope,
            status=domain.ACTIVE, filed_on=today.isoformat(),
            valid_until=domain.validity_end(today).isoformat(), application_id=app.application_id)
        fields.update(status_reason="filed", status_decision_ref=app.application_id,
                      scope_history=[{"effective_on": today.isoformat(), "scope": list(app.scope)}],
                      scope_since={s["occupation_code"]: today.isoformat() for s in app.scope},
                      renewal_notice_for=None, activity_checked_on=None)
        change = {"status": domain.ACTIVE, "reason": "filed", "decision_ref": app.application_id,
                  "changed_at": self.clock.now().isoformat(), "actor": caller.audit_name(),
                  "effective_on": today.isoformat()}
        is_new = institution is None
        if is_new:
            institution = Institution(institution_id=app.institution_id, history=[change], **fields)
        else:  # filed again after termination or expiry: the code stays its own
            for key, value in fields.items():
                setattr(institution, key, value)
            institution.history.append(change)
        institution.record(self._event("InstitutionFiled", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "receipt": receipt_view(institution), "district_code": institution.district_code},
            caller))
        if is_new:
            institution.insert()
            self.outbox.publish_pending(institution)
        else:
            self._commit(institution)
        return institution

    def _next_site_serial(self) -> int:
        """Serials are never reused: a counter only ever goes up, even if a filing fails after."""
        counters = mongoengine.get_db(ALIAS)["counters"]
        doc = counters.find_one_and_update(
            {"_id": f"site_serial:{self.settings.province_code}"}, {"$inc": {"value": 1}},
            upsert=True, return_document=ReturnDocument.AFTER)
        return int(doc["value"])

    @api
    def GetApplication(self, request, caller):
        app = self._application(request.get("application_id"))
        require_own_institution(caller, app.institution_id, "application")
        return self._answer(app)

    # --- institutions and the register ----------------------------------------------
    @api
    def GetInstitution(self, request, caller):
        institution_id = (request.get("institution_id") or "").strip().upper()
        if not institution_id:
            raise InvalidArgument("institution_id: required")
        require_own_institution(caller, institution_id, "institution")
        institution = Institution.objects(pk=institution_id).first()
        if institution is None:
            raise NotFound(f"institution {institution_id} is not filed")
        return self._institution_answer(institution)

    @api
    def ListRegister(self, request, caller):
        page = request.get("page")
        size = page_size(page)
        after = decode_token(page)
        query = Institution.objects(status__in=domain.REGISTER_STATUSES)
        if request.get("occupation_code"):
            query = query.filter(scope__occupation_code=request["occupation_code"])
        if request.get("district_code"):
            query = query.filter(district_code=request["district_code"])
        if after:
            query = query.filter(filing_code__gt=after)
        rows = list(query.order_by("filing_code").limit(size + 1))
        more = len(rows) > size
        rows = rows[:size]
        return {"entries": [register_entry_view(i) for i in rows],
                "page": {"next_page_token": encode_token(rows[-1].filing_code) if more else ""}}

    # --- the clock ------------------------------------------------------------------
    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        """Deemed acceptance, deemed withdrawal, and events left unpublished. Safe to run
        twice or in two workers at once: each change is conditional on the version read."""
        today = self._today()
        changed = 0
        today_iso = today.isoformat()
        candidates = Application.objects(
            Q(state=domain.RECEIVED, acceptance_due__lt=today_iso)
            | Q(state=domain.SUPPLEMENT_REQUESTED, supplement_due__lt=today_iso))
        for app in candidates:
            action = domain.sweep_action(app.state, app.acceptance_due, app.supplement_due, today)
            try:
                if action == "deem_accepted":
                    self._deem_accepted(app)
                elif action == "deem_withdrawn":
                    self._deem_withdrawn(app)
                else:
                    continue
                changed += 1
            except Conflict:
                log.info("sweep: application %s changed meanwhile; skipped", app.application_id)
        relayed = self.outbox.relay(Application, Institution)
        return {"changed": changed, "relayed": relayed}

    def _deem_withdrawn(self, app):
        app.state = domain.WITHDRAWN
        app.open_key = None
        app.decided_on = self._today().isoformat()
        reason = (f"no complete supplement by {app.supplement_due} "
                  f"({domain.SUPPLEMENT_DAYS} days after the notice): deemed withdrawn")
        app.reasons = [reason]
        app.record(self._event("ApplicationWithdrawn", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "reason": reason}, SYSTEM))
        self._commit(app)

    # --- lifecycle helpers ----------------------------------------------------------
    def _parse_application(self, request: dict, path_prefix: str = ""):
        """The submission and the declared conditions, with every violation of both."""
        errors: list[str] = []
        submission = None
        try:
            submission = domain.parse_submission(request, self.settings.areas)
        except InvalidArgument as exc:
            errors.extend(exc.violations)
        codes = [s.get("occupation_code", "") for s in (request.get("scope") or [])]
        conditions = domain.check_conditions(request.get("conditions"), codes, errors)
        if errors:
            raise InvalidArgument(errors)
        return submission, conditions

    def _unmet(self, conditions: dict | None, received_on: date) -> list[str]:
        s = self.settings
        return domain.unmet_conditions(
            conditions, received_on, s.urgent_occupations,
            min_years=(domain.MIN_HISTORY_YEARS, s.urgent_min_years),
            min_count=(domain.MIN_PERSON_TIMES_3Y, s.urgent_min_person_times))

    def _institution(self, institution_id, caller: Identity) -> Institution:
        if not isinstance(institution_id, str) or not institution_id.strip():
            raise InvalidArgument("institution_id: required")
        institution_id = institution_id.strip().upper()
        require_own_institution(caller, institution_id, "institution")
        institution = Institution.objects(pk=institution_id).first()
        if institution is None:
            raise NotFound(f"institution {institution_id} is not filed")
        return institution

    def _activity(self, institution_id: str) -> list[dict]:
        today = self._today()
        return [{"occupation_code": a.occupation_code, "last_evaluation_on": a.last_evaluation_on,
                 "count_12_months": domain.count_in_window(a.days or {}, today)}
                for a in Activity.objects(institution_id=institution_id).order_by("occupation_code")]

    def _institution_answer(self, institution: Institution) -> dict:
        return {"institution": institution_view(institution,
                                                self._activity(institution.institution_id))}

    def _filed_counts(self, codes: list[str], area: str, exclude: str) -> dict:
        """Institutions filed (active or suspended) in `area` per occupation, but `exclude`."""
        counts = dict.fromkeys(codes, 0)
        for other in Institution.objects(status__in=domain.REGISTER_STATUSES,
                                         scope__occupation_code__in=codes).only(
                "institution_id", "district_code", "scope"):
            if other.institution_id == exclude or \
                    domain.quota_area(other.district_code, self.settings.areas) != area:
                continue
            for item in other.scope:
                if item["occupation_code"] in counts:
                    counts[item["occupation_code"]] += 1
        return counts

    def _new_occupations(self, app: Application) -> list[str]:
        kind = app.kind or domain.NEW
        if kind == domain.RENEWAL:
            return []
        if kind == domain.SCOPE_CHANGE:
            current = Institution.objects(pk=app.institution_id).first()
            before = {s["occupation_code"] for s in (current.scope if current else [])}
            return [s["occupation_code"] for s in app.scope if s["occupation_code"] not in before]
        return [s["occupation_code"] for s in app.scope]

    def _blockers(self, app: Application, today: date) -> list[str]:
        """Why filing this application now would be refused: unmet conditions, quotas."""
        blockers = list(app.unmet_conditions or [])
        codes = self._new_occupations(app)
        area = domain.quota_area(app.institution["district_code"], self.settings.areas)
        limit = domain.quota_limit(area, self.settings.district_quota, self.settings.county_quota)
        city_filed = None
        if (app.kind or domain.NEW) == domain.NEW:
            city_filed = Institution.objects(status__in=domain.REGISTER_STATUSES,
                                             institution_id__ne=app.institution_id).count()
        blockers += domain.quota_blockers(codes, area, self._filed_counts(codes, area,
                                                                          app.institution_id),
                                          limit, city_filed, self.settings.city_quota(today.year))
        return blockers

    def _set_status(self, institution: Institution, status: str, reason: str, ref: str,
                    actor: Identity, effective_on: date) -> None:
        institution.status = status
        institution.status_reason = reason
        institution.status_decision_ref = ref
        institution.history.append({
            "status": status, "reason": reason, "decision_ref": ref,
            "changed_at": self.clock.now().isoformat(), "actor": actor.audit_name(),
            "effective_on": effective_on.isoformat()})

    def _set_scope(self, institution: Institution, scope: list, effective_on: date) -> None:
        since = dict(institution.scope_since or {})
        for item in scope:
            since.setdefault(item["occupation_code"], effective_on.isoformat())
        kept = {s["occupation_code"] for s in scope}
        institution.scope_since = {c: d for c, d in since.items() if c in kept}
        institution.scope = list(scope)
        history = list(institution.scope_history or [])
        if not history:  # slice-era document: its scope was in force since filing
            history.append({"effective_on": institution.filed_on,
                            "scope": list(institution.scope)})
        history = [h for h in history if h["effective_on"] != effective_on.isoformat()]
        history.append({"effective_on": effective_on.isoformat(), "scope": list(scope)})
        institution.scope_history = history

    def _open_application(self, request: dict, caller: Identity, kind: str,
                          institution: Institution, scope: list, materials: list,
                          conditions: dict | None, request_id: str) -> Application:
        """A scope change or a renewal: an application of the filed institution, on the same
        acceptance clock and technical evaluation as a new one."""
        request_key = f"{institution.institution_id}:{request_id}"
        request_hash = _request_hash({"kind": kind, **request})
        existing = Application.objects(request_key=request_key).first()
        if existing is not None:
            if existing.request_hash != request_hash:
                raise AlreadyExists("request_id was already used for a different application")
            return existing
        now = self.clock.now()
        today = today_in_shanghai(now)
        due = domain.acceptance_due(today, self.settings.calendar)
        details = {k: getattr(institution, k) or "" for k in (
            "name", "legal_representative", "address", "district_code", "contact_phone")}
        details["institution_id"] = institution.institution_id
        app = Application(
            application_id=uuid.uuid4().hex, request_key=request_key,
            open_key=institution.institution_id, institution_id=institution.institution_id,
            institution={k: v for k, v in details.items() if v}, scope=scope,
            materials=materials, state=domain.RECEIVED, submitted_at=now,
            received_on=today.isoformat(), acceptance_due=due.date.isoformat(),
            acceptance_due_provisional=due.provisional, request_hash=request_hash, kind=kind,
            conditions=conditions or {}, unmet_conditions=self._unmet(conditions, today),
            filing_code_before=institution.filing_code)
        app.record(self._event("ApplicationSubmitted", {
            "application_id": app.application_id, "institution_id": app.institution_id,
            "received_on": app.received_on, "acceptance_due": due.to_dict()}, caller))
        if kind == domain.RENEWAL:
            app.record(self._event("RenewalApplied", {
                "application_id": app.application_id, "institution_id": app.institution_id,
                "valid_until": institution.valid_until}, caller))
        try:
            app.insert()
        except AlreadyExists:
            open_app = Application.objects(open_key=institution.institution_id).only(
                "application_id").first()
            raise AlreadyExists(
                f"institution {institution.institution_id} already has an open application "
                f"{open_app.application_id if open_app else ''}".strip()) from None
        self.outbox.publish_pending(app)
        return app

    def _apply_scope_change(self, app: Application, today: date, caller) -> Institution:
        institution = Institution.objects.get(pk=app.institution_id)
        if institution.scope_history and institution.scope_history[-1].get("decision_ref") \
                == app.application_id:
            return institution  # a crash after this write: finish the application only
        added, removed = domain.scope_diff(institution.scope, app.scope)
        self._set_scope(institution, list(app.scope), today)
        institution.scope_history[-1]["decision_ref"] = app.application_id
        institution.record(self._event("ScopeChanged", {
            "institution_id": institution.institution_id, "scope": list(app.scope),
            "added_occupations": added, "removed_occupations": removed,
            "effective_on": today.isoformat(), "reason": "scope change filed",
            "decision_ref": app.application_id}, caller))
        self._commit(institution)
        return institution

    def _apply_renewal(self, app: Application, today: date, caller) -> Institution:
        institution = Institution.objects.get(pk=app.institution_id)
        if any(h.get("decision_ref") == app.application_id for h in institution.history):
            return institution
        if institution.status in (domain.TERMINATED,):
            raise FailedPrecondition("cannot renew: the filing was terminated meanwhile")
        old_end = date.fromisoformat(institution.valid_until)
        institution.valid_until = domain.renewed_valid_until(old_end).isoformat()
        status = domain.SUSPENDED if institution.status == domain.SUSPENDED else domain.ACTIVE
        self._set_status(institution, status, f"renewed until {institution.valid_until}",
                         app.application_id, caller, today)
        institution.record(self._event("FilingRenewed", {
            "institution_id": institution.institution_id, "application_id": app.application_id,
            "valid_until": institution.valid_until, "receipt": receipt_view(institution)}, caller))
        self._commit(institution)
        return institution

    # --- lists ----------------------------------------------------------------------
    @api
    def ListApplications(self, request, caller):
        page = request.get("page")
        size = page_size(page)
        after = decode_token(page)
        institution_id = (request.get("institution_id") or "").strip().upper()
        if caller.role == "institution":
            if institution_id and institution_id != caller.institution_id:
                raise PermissionDenied("an institution lists only its own applications")
            institution_id = caller.institution_id
        query = Application.objects()
        if institution_id:
            query = query.filter(institution_id=institution_id)
        if request.get("state"):
            query = query.filter(state=request["state"])
        kind = request.get("kind")
        if kind == domain.NEW:
            query = query.filter(Q(kind=domain.NEW) | Q(kind=None))
        elif kind:
            query = query.filter(kind=kind)
        if after:
            query = query.filter(application_id__gt=after)
        rows = list(query.order_by("application_id").limit(size + 1))
        more = len(rows) > size
        rows = rows[:size]
        return {"applications": [self._answer(a)["application"] for a in rows],
                "page": {"next_page_token": encode_token(rows[-1].application_id) if more else ""}}

    @api
    def ListPendingDecisions(self, request, caller):
        today = self._today()
        calendar = self.settings.calendar
        pending = list(Application.objects(state__in=[domain.RECEIVED, domain.ACCEPTED]))
        # Competition: pending applications for the same occupation seats, ranked.
        seats: dict[tuple, list] = {}
        for app in pending:
            if app.state != domain.ACCEPTED:
                continue
            area = domain.quota_area(app.institution.get("district_code"), self.settings.areas)
            counts = {o["occupation_code"]: o["person_times_last_3_years"]
                      for o in (app.conditions or {}).get("occupations", [])}
            for code in self._new_occupations(app):
                key = domain.rank_key(code in self.settings.urgent_occupations,
                                      counts.get(code, 0),
                                      (app.conditions or {}).get("evaluation_history_since", ""),
                                      app.received_on, app.application_id)
                seats.setdefault((code, area), []).append((key, app.application_id))
        for competitors in seats.values():
            competitors.sort()
        decisions = []
        for app in sorted(pending, key=lambda a: (a.decision_due or a.acceptance_due or "")):
            decision_stage = app.state == domain.ACCEPTED
            due_iso = app.decision_due if decision_stage else app.acceptance_due
            provisional = app.decision_due_provisional if decision_stage \
                else app.acceptance_due_provisional
            late = domain.overdue(due_iso, today)
            if request.get("overdue_only") and not late:
                continue
            entry = {
                "application_id": app.application_id, "institution_id": app.institution_id,
                "institution_name": app.institution.get("name", ""),
                "kind": app.kind or domain.NEW,
                "stage": "PENDING_STAGE_DECISION" if decision_stage else "PENDING_STAGE_ACCEPTANCE",
                "due": {"date": due_iso, "provisional": bool(provisional)}, "overdue": late,
                "working_days_overdue": calendar.working_days_between(
                    date.fromisoformat(due_iso), today) if late else 0,
            }
            if decision_stage:
                area = domain.quota_area(app.institution.get("district_code"), self.settings.areas)
                limit = domain.quota_limit(area, self.settings.district_quota,
                                           self.settings.county_quota)
                codes = self._new_occupations(app)
                filed = self._filed_counts(codes, area, app.institution_id)
                quota = []
                for code in codes:
                    ranked = [a for _, a in seats.get((code, area), [])]
                    quota.append({"occupation_code": code, "area": area, "limit": limit,
                                  "filed": filed.get(code, 0),
                                  "rank": ranked.index(app.application_id) + 1,
                                  "competitors": len(ranked),
                                  "urgently_needed": code in self.settings.urgent_occupations})
                entry["quota"] = quota
                entry["blockers"] = self._blockers(app, today)
            decisions.append(entry)
        proposals = []
        for inst in Institution.objects(proposals__state=domain.PROPOSAL_OPEN):
            for proposal in inst.proposals:
                if proposal.get("state") == domain.PROPOSAL_OPEN:
                    proposals.append({"institution_id": inst.institution_id,
                                      "institution_name": inst.name,
                                      "proposal": {k: v for k, v in proposal.items()
                                                   if v not in (None, "", [])}})
        return {"decisions": decisions, "proposals": proposals,
                "city_quota": self.settings.city_quota(today.year),
                "city_filed": Institution.objects(status__in=domain.REGISTER_STATUSES).count()}

    # --- changes and renewal --------------------------------------------------------
    @api
    def FileChange(self, request, caller):
        kind = request.get("kind") or "CHANGE_KIND_UNSPECIFIED"
        errors: list[str] = []
        request_id = (request.get("request_id") or "").strip()
        if not domain._REQUEST_ID.match(request_id):
            errors.append("request_id: required, 1-64 of A-Z a-z 0-9 . _ : -")
        if kind not in ("CHANGE_KIND_DETAILS", "CHANGE_KIND_SCOPE"):
            errors.append("kind: must be CHANGE_KIND_DETAILS or CHANGE_KIND_SCOPE")
            raise InvalidArgument(errors)
        institution = self._institution(request.get("institution_id"), caller)
        if institution.status not in domain.REGISTER_STATUSES:
            raise FailedPrecondition(f"cannot file a change: the filing is "
                                     f"{institution.status.replace('INSTITUTION_STATUS_', '').lower()}")
        today = self._today()
        if kind == "CHANGE_KIND_SCOPE":
            for key in ("name", "legal_representative", "address", "district_code",
                        "changed_on", "contact_phone"):
                if request.get(key):
                    errors.append(f"{key}: only for CHANGE_KIND_DETAILS")
            scope = domain.check_scope(request.get("scope") or [], errors)
            materials = domain.check_materials(request.get("materials") or [], errors)
            conditions = domain.check_conditions(
                request.get("conditions"), [s["occupation_code"] for s in scope], errors)
            if not errors:
                added, removed = domain.scope_diff(institution.scope, scope)
                if not added and not removed and scope == list(institution.scope):
                    errors.append("scope: the same as the filed scope")
            if errors:
                raise InvalidArgument(errors)
            app = self._open_application(request, caller, domain.SCOPE_CHANGE, institution,
                                         scope, materials, conditions, request_id)
            return {**self._institution_answer(institution), **self._answer(app)}

        if request_id in (institution.change_keys or []):  # a retried change: same answer
            late = any(v.get("ref") == request_id for v in institution.violations or [])
            return {**self._institution_answer(institution), "late": late}
        current = {k: getattr(institution, k) or "" for k in domain.DETAIL_FIELDS}
        changes, changed_on = domain.details_change(
            request, current, self.settings.areas, domain.PROHIBITED_NAME_WORDS, today, errors)
        if errors:
            raise InvalidArgument(errors)
        for key, value in changes.items():
            setattr(institution, key, value)
        institution.change_keys = (list(institution.change_keys or []) + [request_id])[-100:]
        late_days = domain.days_late(changed_on, today)
        if late_days:
            due = domain.change_due(changed_on)
            institution.violations.append({
                "kind": "CHANGE_OVERDUE", "recorded_on": today.isoformat(), "ref": request_id,
                "description": (f"change of {', '.join(changes)} on {changed_on} filed on {today}, "
                                f"{late_days} days after the {domain.CHANGE_FILING_DAYS} days "
                                f"ending {due} (seed 001 ch.2 art.8; ch.6 art.3 (八))")})
            institution.record(self._event("ChangeOverdue", {
                "institution_id": institution.institution_id, "changed_on": changed_on.isoformat(),
                "due_on": due.isoformat(), "filed_on": today.isoformat(),
                "days_late": late_days}, caller))
        institution.record(self._event("DetailsChanged", {
            "institution_id": institution.institution_id, "changed_fields": sorted(changes),
            "changed_on": changed_on.isoformat(), "filed_on": today.isoformat(),
            "receipt": receipt_view(institution)}, caller))
        self._commit(institution)
        return {**self._institution_answer(institution), "late": bool(late_days)}

    @api
    def ApplyRenewal(self, request, caller):
        errors: list[str] = []
        request_id = (request.get("request_id") or "").strip()
        if not domain._REQUEST_ID.match(request_id):
            errors.append("request_id: required, 1-64 of A-Z a-z 0-9 . _ : -")
        materials = domain.check_materials(request.get("materials") or [], errors)
        institution_id = request.get("institution_id")
        if not isinstance(institution_id, str) or not institution_id.strip():
            errors.append("institution_id: required")
        if errors:
            raise InvalidArgument(errors)
        institution = self._institution(institution_id, caller)
        conditions = domain.check_conditions(
            request.get("conditions"), [s["occupation_code"] for s in institution.scope], errors)
        if errors:
            raise InvalidArgument(errors)
        existing = Application.objects(
            request_key=f"{institution.institution_id}:{request_id}").first()
        if existing is None:
            domain.check_renewal(institution.status, date.fromisoformat(institution.valid_until),
                                 self._today())
        app = self._open_application(request, caller, domain.RENEWAL, institution,
                                     list(institution.scope), materials, conditions, request_id)
        return {**self._answer(app), "apply_by": domain.renewal_apply_by(
            date.fromisoformat(institution.valid_until)).isoformat()}

    # --- status decisions -----------------------------------------------------------
    def _status_decision(self, request, caller, action: str, event_type: str) -> dict:
        errors: list[str] = []
        if not (request.get("institution_id") or "").strip():
            errors.append("institution_id: required")
        reason, ref = domain.decision_text(request, errors)
        if errors:
            raise InvalidArgument(errors)
        institution = self._institution(request["institution_id"], caller)
        proposal = None
        if request.get("proposal_id"):
            proposal = self._open_proposal(institution, request["proposal_id"])
            if proposal["kind"] != domain.PROPOSAL_TERMINATION:
                raise FailedPrecondition("proposal_id: not a termination proposal")
        target = domain.check_status_change(action, institution.status)
        today = self._today()
        self._set_status(institution, target, reason, ref, caller, today)
        payload = {"institution_id": institution.institution_id, "reason": reason,
                   "decision_ref": ref, "effective_on": today.isoformat()}
        if event_type == "FilingTerminated":
            payload["filing_code"] = institution.filing_code
        institution.record(self._event(event_type, payload, caller))
        if proposal is not None:
            proposal.update(state=domain.PROPOSAL_APPROVED, decided_on=today.isoformat(),
                            decision_reason=reason, decision_ref=ref)
        self._close_open_proposals_if_terminated(institution, today, ref)
        self._commit(institution)
        return self._institution_answer(institution)

    def _close_open_proposals_if_terminated(self, institution, today, ref):
        if institution.status != domain.TERMINATED:
            return
        for p in institution.proposals:
            if p.get("state") == domain.PROPOSAL_OPEN:
                p.update(state=domain.PROPOSAL_APPROVED if p["kind"] == domain.PROPOSAL_TERMINATION
                         else domain.PROPOSAL_DISMISSED, decided_on=today.isoformat(),
                         decision_reason="filing terminated", decision_ref=ref)

    @api
    def SuspendInstitution(self, request, caller):
        return self._status_decision(request, caller, "suspend", "InstitutionSuspended")

    @api
    def ReinstateInstitution(self, request, caller):
        return self._status_decision(request, caller, "reinstate", "InstitutionReinstated")

    @api
    def TerminateFiling(self, request, caller):
        return self._status_decision(request, caller, "terminate", "FilingTerminated")

    # --- public and service questions -----------------------------------------------
    @api
    def CheckEvaluationRight(self, request, caller):
        errors: list[str] = []
        institution_id = (request.get("institution_id") or "").strip().upper()
        if not institution_id:
            errors.append("institution_id: required")
        code = (request.get("occupation_code") or "").strip()
        if not domain._OCCUPATION_CODE.match(code):
            errors.append("occupation_code: must look like 4-10-01-02")
        level = request.get("skill_level") or 0
        if level not in domain.SKILL_LEVELS:
            errors.append("skill_level: must be 1-5")
        on = domain.parse_date(request.get("on_date"), "on_date", errors)
        if errors:
            raise InvalidArgument(errors)
        require_own_institution(caller, institution_id, "institution")
        inst = Institution.objects(pk=institution_id).first()
        snapshot = None if inst is None else {
            "status": inst.status, "filed_on": inst.filed_on, "valid_until": inst.valid_until,
            "history": list(inst.history), "scope": list(inst.scope),
            "scope_history": list(inst.scope_history or [])}
        right = domain.evaluation_right(snapshot, code, level, on)
        answer = {"allowed": right.allowed, "reason": right.reason}
        if right.denial:
            answer["denial"] = right.denial
        if inst is not None:
            answer.update(filing_code=inst.filing_code, status=inst.status,
                          valid_until=inst.valid_until)
        return answer

    @api
    def CheckName(self, request, caller):
        name = (request.get("name") or "").strip()
        if not name:
            raise InvalidArgument("name: required")
        words, problems = domain.check_name(name, domain.PROHIBITED_NAME_WORDS)
        return {"acceptable": not problems, "prohibited_words": words, "problems": problems}

    # --- dynamic scope --------------------------------------------------------------
    @event_handler("certificates", "CertificatesIssued")
    @idempotent(ALIAS)
    def on_certificates_issued(self, body):
        """Count certificates issued per institution and occupation (ch.6 art.4 (七), art.6).

        Fields relied on, and nothing else (the certificates service owns the message):
        - `meta.event_id` (idempotency, by @idempotent and per activity document);
        - `institution_id`;
        - `counts`: a list of entries with `occupation_code`, `skill_level` (not used for
          the thresholds, which are per occupation), `count` (int > 0) and
          `assessment_date` (ISO date; the event's top-level `assessment_date` if absent).
        A malformed entry is skipped with a warning; the rest of the event still counts.
        """
        body = body if isinstance(body, dict) else {}
        event_id = (body.get("meta") or {}).get("event_id")
        institution_id = str(body.get("institution_id") or "").strip().upper()
        if not institution_id:
            log.warning("CertificatesIssued %s without institution_id: ignored", event_id)
            return 0
        per_occupation: dict[str, dict] = {}
        for entry in body.get("counts") or []:
            if not isinstance(entry, dict):
                continue
            code = str(entry.get("occupation_code") or "").strip()
            count = entry.get("count")
            errors: list[str] = []
            day = domain.parse_date(entry.get("assessment_date") or body.get("assessment_date"),
                                    "assessment_date", errors)
            if not code or not isinstance(count, int) or isinstance(count, bool) \
                    or count <= 0 or day is None:
                log.warning("CertificatesIssued %s: malformed entry skipped", event_id)
                continue
            slot = per_occupation.setdefault(code, {"days": {}, "last": ""})
            slot["days"][day.isoformat()] = slot["days"].get(day.isoformat(), 0) + count
            slot["last"] = max(slot["last"], day.isoformat())
        collection = Activity._get_collection()
        for code, slot in per_occupation.items():
            key = f"{institution_id}:{code}"
            update = {"$inc": {**{f"days.{d}": n for d, n in slot["days"].items()},
                               "total": sum(slot["days"].values())},
                      "$max": {"last_evaluation_on": slot["last"]},
                      "$push": {"event_ids": {"$each": [event_id], "$slice": -500}},
                      "$setOnInsert": {"institution_id": institution_id,
                                       "occupation_code": code}}
            try:
                collection.update_one({"_id": key, "event_ids": {"$ne": event_id}}, update,
                                      upsert=True)
            except DuplicateKeyError:
                pass  # this event was already counted for this occupation
        return len(per_occupation)

    def _open_proposal(self, institution: Institution, proposal_id) -> dict:
        for proposal in institution.proposals:
            if proposal.get("proposal_id") == proposal_id:
                if proposal.get("state") != domain.PROPOSAL_OPEN:
                    raise FailedPrecondition(f"proposal {proposal_id} was already decided")
                return proposal
        raise NotFound(f"proposal {proposal_id} not found for {institution.institution_id}")

    @api
    def DecideProposal(self, request, caller):
        errors: list[str] = []
        if not (request.get("institution_id") or "").strip():
            errors.append("institution_id: required")
        if not (request.get("proposal_id") or "").strip():
            errors.append("proposal_id: required")
        outcome = request.get("outcome") or "PROPOSAL_OUTCOME_UNSPECIFIED"
        if outcome not in ("PROPOSAL_OUTCOME_APPROVE", "PROPOSAL_OUTCOME_DISMISS"):
            errors.append("outcome: must be PROPOSAL_OUTCOME_APPROVE or PROPOSAL_OUTCOME_DISMISS")
        reason, ref = domain.decision_text(request, errors)
        if errors:
            raise InvalidArgument(errors)
        institution = self._institution(request["institution_id"], caller)
        proposal = self._open_proposal(institution, request["proposal_id"].strip())
        if proposal["kind"] == domain.PROPOSAL_TERMINATION and outcome == "PROPOSAL_OUTCOME_APPROVE":
            return self._status_decision(request, caller, "terminate", "FilingTerminated")
        today = self._today()
        if outcome == "PROPOSAL_OUTCOME_DISMISS":
            proposal.update(state=domain.PROPOSAL_DISMISSED, decided_on=today.isoformat(),
                            decision_reason=reason, decision_ref=ref)
            institution.record(self._event("ProposalDismissed", {
                "institution_id": institution.institution_id,
                "proposal_id": proposal["proposal_id"], "reason": reason,
                "decision_ref": ref}, caller))
        else:
            code = proposal["occupation_code"]
            scope = [s for s in institution.scope if s["occupation_code"] != code]
            if not scope:
                raise FailedPrecondition(f"{code} is the last occupation in scope: "
                                         "terminate the filing instead")
            self._set_scope(institution, scope, today)
            proposal.update(state=domain.PROPOSAL_APPROVED, decided_on=today.isoformat(),
                            decision_reason=reason, decision_ref=ref)
            institution.record(self._event("ScopeChanged", {
                "institution_id": institution.institution_id, "scope": scope,
                "removed_occupations": [code], "effective_on": today.isoformat(),
                "reason": reason, "decision_ref": ref}, caller))
        self._commit(institution)
        return self._institution_answer(institution)

    # --- the lifecycle sweep --------------------------------------------------------
    @timer(interval=SWEEP_INTERVAL)
    def lifecycle_sweep(self):
        """Expiry, RenewalDue notices and dynamic-scope proposals. Each change is conditional
        on the version read, so two runs or two workers change a document once."""
        today = self._today()
        done = {"expired": 0, "renewal_due": 0, "proposals": 0}
        today_iso = today.isoformat()
        for inst in Institution.objects(status__in=domain.REGISTER_STATUSES,
                                        valid_until__lt=today_iso):
            try:
                self._set_status(inst, domain.EXPIRED,
                                 f"validity ended on {inst.valid_until}", inst.application_id,
                                 SYSTEM, date.fromisoformat(inst.valid_until) + timedelta(days=1))
                inst.record(self._event("FilingExpired", {
                    "institution_id": inst.institution_id, "valid_until": inst.valid_until,
                    "filing_code": inst.filing_code}, SYSTEM))
                self._commit(inst)
                done["expired"] += 1
            except Conflict:
                continue
        notice_from = (today + timedelta(days=0)).isoformat()
        for inst in Institution.objects(status__in=domain.REGISTER_STATUSES,
                                        valid_until__gte=notice_from):
            valid_until = date.fromisoformat(inst.valid_until)
            if inst.renewal_notice_for == inst.valid_until or \
                    not domain.renewal_notice_due(valid_until, today):
                continue
            inst.renewal_notice_for = inst.valid_until
            inst.record(self._event("RenewalDue", {
                "institution_id": inst.institution_id, "valid_until": inst.valid_until,
                "apply_by": domain.renewal_apply_by(valid_until).isoformat()}, SYSTEM))
            try:
                self._commit(inst)
                done["renewal_due"] += 1
            except Conflict:
                continue
        done["proposals"] = self._propose_from_activity(today)
        return done

    def _propose_from_activity(self, today: date) -> int:
        providers: dict[str, int] = {}
        for inst in Institution.objects(status__in=domain.REGISTER_STATUSES).only("scope"):
            for item in inst.scope:
                providers[item["occupation_code"]] = providers.get(item["occupation_code"], 0) + 1
        sole = {code for code, n in providers.items() if n == 1}
        made = 0
        for inst in Institution.objects(status=domain.ACTIVE,
                                        activity_checked_on__ne=today.isoformat()):
            activity = {a.occupation_code: {"last": a.last_evaluation_on or "",
                                            "days": dict(a.days or {})}
                        for a in Activity.objects(institution_id=inst.institution_id)}
            since = {s["occupation_code"]: (inst.scope_since or {}).get(s["occupation_code"],
                                                                      inst.filed_on)
                     for s in inst.scope}
            findings = domain.scope_proposals(inst.scope, since, activity, sole,
                                              list(inst.proposals), today)
            whole = domain.institution_proposal(date.fromisoformat(inst.filed_on), activity,
                                                list(inst.proposals), today)
            for finding in findings + ([whole] if whole else []):
                proposal_id = uuid.uuid4().hex[:12]
                kind = domain.PROPOSAL_TERMINATION if not finding.occupation_code \
                    else domain.PROPOSAL_SCOPE_REMOVAL
                inst.proposals.append({
                    "proposal_id": proposal_id, "kind": kind,
                    "occupation_code": finding.occupation_code, "grounds": list(finding.grounds),
                    "proposed_on": today.isoformat(), "state": domain.PROPOSAL_OPEN,
                    "count_12_months": finding.count_12_months,
                    "last_evaluation_on": finding.last_evaluation_on})
                if kind == domain.PROPOSAL_TERMINATION:
                    inst.record(self._event("TerminationProposed", {
                        "institution_id": inst.institution_id, "proposal_id": proposal_id,
                        "grounds": list(finding.grounds)}, SYSTEM))
                else:
                    inst.record(self._event("ScopeRemovalProposed", {
                        "institution_id": inst.institution_id, "proposal_id": proposal_id,
                        "occupation_code": finding.occupation_code,
                        "grounds": list(finding.grounds)}, SYSTEM))
                made += 1
            inst.activity_checked_on = today.isoformat()
            try:
                self._commit(inst)
            except Conflict:
                continue
        return made
