"""The filing worker: thin nameko entrypoints over services/filing/domain.py."""
from __future__ import annotations

import hashlib
import json
import logging
import uuid
from datetime import date

import mongoengine
from mongoengine.queryset.visitor import Q
from nameko.timer import timer
from pymongo import ReturnDocument

from services.common import config
from services.common.api import CallContext, Health, api
from services.common.auth import SYSTEM, Identity, require_own_institution
from services.common.bus import Outbox, new_event
from services.common.clock import ClockProvider
from services.common.errors import (AlreadyExists, Conflict, FailedPrecondition, InvalidArgument,
                                    NotFound)
from services.common.metrics import WorkerMetrics
from services.common.mongo import MongoConnection
from services.common.paging import decode_token, encode_token, page_size
from services.common.workdays import today_in_shanghai
from services.filing import domain
from services.filing.models import ALIAS, Application, Institution
from services.filing.settings import SettingsProvider
from services.filing.views import (application_view, institution_view, receipt_view,
                                   register_entry_view)
from vocreg.filing.v1 import events_pb2

log = logging.getLogger(__name__)

SWEEP_INTERVAL = config.env_float("SWEEP_INTERVAL", 30.0)


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
        submission = domain.parse_submission(request, self.settings.areas)
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
            request_hash=request_hash)
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
        change = {"status": domain.ACTIVE, "reason": "filed", "decision_ref": app.application_id,
                  "changed_at": self.clock.now().isoformat(), "actor": caller.audit_name()}
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
        return {"institution": institution_view(institution)}

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
