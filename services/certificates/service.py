"""The certificate registry worker: thin nameko entrypoints over services/certificates/domain.py.

Who calls filing: this service, as itself (`service:certificates`, ServiceRpcProxy), never with
the caller's token. The question "may institution X evaluate Y at level Z" is the registry's
own, filing lists ROLE_SERVICE for it, an institution's token would be refused there, and the
event handlers and the sweep have no caller at all.
"""
from __future__ import annotations

import logging
import uuid
from datetime import date

import mongoengine
from mongoengine.queryset.visitor import Q
from nameko.events import event_handler
from nameko.exceptions import RemoteError
from nameko.extensions import DependencyProvider
from nameko.timer import timer
from prometheus_client import Counter
from pymongo import ReturnDocument
from pymongo.errors import BulkWriteError
from vocreg.certificates.v1 import events_pb2

from services.certificates import domain
from services.certificates.models import ALIAS, Certificate, InstitutionView, Operation
from services.certificates.views import (
    certificate_view,
    not_found_view,
    row_result_view,
    verification_view,
)
from services.common import config
from services.common.api import CallContext, Health, api
from services.common.auth import Identity, require_own_institution
from services.common.bus import Outbox, idempotent, new_event
from services.common.clock import ClockProvider
from services.common.errors import (
    Conflict,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from services.common.metrics import WorkerMetrics
from services.common.mongo import MongoConnection
from services.common.paging import decode_token, encode_token, page_size
from services.common.service_rpc import ServiceRpcProxy
from services.common.workdays import today_in_shanghai

log = logging.getLogger(__name__)

SWEEP_INTERVAL = config.sweep_interval()
# An operation still PENDING this long after it started was cut short (a crash): the sweep
# finishes it from what was written. Far above the seconds a 10,000-row batch takes.
STALE_OPERATION_SECONDS = 600

ROWS = Counter("vocreg_certificate_rows_total",
               "Uploaded certificate rows by outcome (issued, rejected, duplicate).", ["outcome"])
LATE_REPORTED = Counter("vocreg_certificates_late_reported_total",
                        "Certificates issued but reported after the allowed days.")
VERIFICATIONS = Counter("vocreg_certificate_verifications_total",
                        "Public verifications by result.", ["result"])
ENDED = Counter("vocreg_certificates_ended_total",
                "Certificates invalidated or withdrawn, by reason.", ["reason"])
ISSUE_REFUSED = Counter("vocreg_certificate_batches_refused_total",
                        "Batches refused whole because the institution may not issue.", ["why"])

PENDING, DONE = "PENDING", "DONE"


class Settings(DependencyProvider):
    """CERT_LATE_REPORT_DAYS from the worker config, else the environment, else the default."""

    def setup(self):
        raw = self.container.config.get("CERT_LATE_REPORT_DAYS")
        if raw in (None, ""):
            raw = config.env("CERT_LATE_REPORT_DAYS", str(domain.DEFAULT_LATE_REPORT_DAYS))
        try:
            self.late_days = int(raw)
        except ValueError:
            raise SystemExit(f"configuration error: CERT_LATE_REPORT_DAYS={raw!r} is not an integer") from None
        if self.late_days < 0:
            raise SystemExit("configuration error: CERT_LATE_REPORT_DAYS must be >= 0")

    def get_dependency(self, worker_ctx):
        return self


def _filing_status(event_type: str):
    """An idempotent handler of one filing status event."""

    def handle(self, body):
        self._apply_filing_status(event_type, body)

    handle.__name__ = f"on_{event_type}"
    return event_handler("filing", event_type)(idempotent(ALIAS)(handle))


class CertificateRegistryService(Health):
    name = "certificates"

    call = CallContext()
    db = MongoConnection(ALIAS)
    outbox = Outbox()
    metrics = WorkerMetrics()
    clock = ClockProvider()
    settings = Settings()
    filing = ServiceRpcProxy("filing")

    # --- helpers --------------------------------------------------------------------
    def _today(self) -> date:
        return today_in_shanghai(self.clock.now())

    def _event(self, event_type: str, payload: dict, actor: str) -> dict:
        return new_event(events_pb2, self.name, event_type, payload, actor, self.clock.now())

    def _ask_filing(self, method: str, request: dict) -> dict:
        try:
            return getattr(self.filing, method)(request)
        except RemoteError as exc:
            if exc.exc_type == "NotFound":
                raise
            if exc.exc_type == "MethodNotFound":  # filing not yet upgraded: try again later
                raise Unavailable(f"the filing service cannot answer {method} yet") from None
            log.error("filing.%s refused the registry's call: %s", method, exc.exc_type)
            raise

    # --- issuing --------------------------------------------------------------------
    @api
    def IssueCertificates(self, request, caller):
        institution_id = caller.institution_id
        today = self._today()
        batch = domain.parse_batch(request, today, self.settings.late_days)
        institution = self._issuing_institution(institution_id)
        filing_code = institution["filing_code"]

        refusals = {}
        for occupation, level in domain.rights_to_ask(batch.rows):
            answer = self._ask_filing("CheckEvaluationRight", {
                "institution_id": institution_id, "occupation_code": occupation,
                "skill_level": level, "on_date": batch.assessment_date.isoformat()})
            if not answer.get("allowed"):
                refusals[(occupation, level)] = answer.get("reason") or "not in the filed scope"
        domain.refuse_out_of_scope(batch.rows, refusals)

        existing = self._existing_numbers(institution_id, batch)
        to_issue = [r for r in batch.rows if r.ok and r.key not in existing]
        numbers = self._allocate_numbers(filing_code, today, to_issue)

        op = Operation(operation_id=uuid.uuid4().hex, kind="issue", state=PENDING,
                       started_at=self.clock.now(), actor=caller.audit_name(),
                       institution_id=institution_id,
                       details={"exam_session_id": batch.exam_session_id,
                                "assessment_date": batch.assessment_date.isoformat(),
                                "issued_on": today.isoformat()})
        op.insert()
        docs = [self._certificate_doc(row, numbers[row.index], op, institution, batch, today)
                for row in to_issue]
        written = self._insert(docs, op.operation_id)
        if len(written) < len(docs):  # a concurrent upload of the same rows won the race
            existing = self._existing_numbers(institution_id, batch)

        results = []
        for row in batch.rows:
            if not row.ok:
                results.append(row_result_view(row, None, domain.ROW_REJECTED))
            elif numbers.get(row.index) in written:
                results.append(row_result_view(row, numbers[row.index], domain.ROW_ISSUED))
            elif row.key in existing:
                results.append(row_result_view(row, existing[row.key], domain.ROW_DUPLICATE))
            else:
                row.errors.append("could not be stored; upload the row again")
                results.append(row_result_view(row, None, domain.ROW_REJECTED))
        summary = {s: sum(1 for r in results if r["status"] == s)
                   for s in (domain.ROW_ISSUED, domain.ROW_REJECTED, domain.ROW_DUPLICATE)}
        self._finish(op, summary)
        for status, n in summary.items():
            ROWS.labels(status.replace("ROW_STATUS_", "").lower()).inc(n)
        if batch.late:
            LATE_REPORTED.inc(summary[domain.ROW_ISSUED])
        return {"batch_id": op.operation_id,
                "issued_count": summary[domain.ROW_ISSUED],
                "rejected_count": summary[domain.ROW_REJECTED],
                "duplicate_count": summary[domain.ROW_DUPLICATE],
                "late_reported": batch.late, "results": results}

    def _issuing_institution(self, institution_id: str) -> dict:
        """The filed institution, if it may issue now; else FailedPrecondition with why."""
        view = InstitutionView.objects(pk=institution_id).first()
        refusal = domain.issuing_refusal(view.status, view.reason) if view and view.status else None
        if refusal:
            ISSUE_REFUSED.labels(view.status.replace("INSTITUTION_STATUS_", "").lower()).inc()
            raise FailedPrecondition(f"cannot issue: {refusal}")
        try:
            institution = self._ask_filing("GetInstitution", {"institution_id": institution_id})
        except RemoteError as exc:
            if exc.exc_type != "NotFound":
                raise
            ISSUE_REFUSED.labels("not_filed").inc()
            raise FailedPrecondition(f"cannot issue: institution {institution_id} is not filed") from None
        institution = institution.get("institution") or {}
        refusal = domain.issuing_refusal(institution.get("status"), institution.get("status_reason"))
        if refusal:
            ISSUE_REFUSED.labels("status").inc()
            raise FailedPrecondition(f"cannot issue: {refusal}")
        problem = domain.filing_code_problem(institution.get("filing_code"))
        if problem:
            log.error("filing returned an unusable filing code for %s: %s", institution_id, problem)
            raise FailedPrecondition(f"cannot issue: the institution's {problem}")
        return institution

    def _existing_numbers(self, institution_id: str, batch) -> dict:
        # The whole session in one query, matched here: a 10,000-value $in is slow on mongomock.
        found = Certificate.objects(
            institution_id=institution_id, exam_session_id=batch.exam_session_id).only(
            "certificate_number", "holder_id_number", "occupation_code", "skill_level")
        return {(c.holder_id_number, c.occupation_code, c.skill_level): c.certificate_number
                for c in found}

    def _allocate_numbers(self, filing_code: str, today: date, rows) -> dict:
        """Row index -> number. One counter per evaluator, year and level, moved once per
        level by the whole block; serials are never reused, so a failed write leaves a gap."""
        by_level: dict[int, list] = {}
        for row in rows:
            by_level.setdefault(row.skill_level, []).append(row)
        counters = mongoengine.get_db(ALIAS)["counters"]
        numbers = {}
        for level, level_rows in sorted(by_level.items()):
            key = domain.serial_key(filing_code, today, level)
            current = counters.find_one({"_id": key}) or {"value": 0}
            if current["value"] + len(level_rows) > domain.MAX_EVALUATOR_SERIAL:
                raise FailedPrecondition(
                    f"cannot issue: level {level} serials for {today.year} would exceed "
                    f"{domain.MAX_EVALUATOR_SERIAL:06d}")
            doc = counters.find_one_and_update({"_id": key}, {"$inc": {"value": len(level_rows)}},
                                               upsert=True, return_document=ReturnDocument.AFTER)
            first = int(doc["value"]) - len(level_rows) + 1
            for offset, row in enumerate(level_rows):
                numbers[row.index] = domain.certificate_number(filing_code, today, level,
                                                               first + offset)
        return numbers

    @staticmethod
    def _certificate_doc(row, number, op, institution, batch, today) -> dict:
        return Certificate(
            key=domain.issue_key(op.institution_id, batch.exam_session_id, row.holder_id_number,
                                 row.occupation_code, row.skill_level),
            certificate_number=number, institution_id=op.institution_id,
            filing_code=institution["filing_code"], issuer_name=institution.get("name"),
            exam_session_id=batch.exam_session_id, batch_id=op.operation_id,
            holder_name=row.holder_name, holder_id_number=row.holder_id_number,
            occupation_code=row.occupation_code, occupation_name=row.occupation_name,
            skill_level=row.skill_level, assessment_date=batch.assessment_date.isoformat(),
            issued_on=today.isoformat(), late_reported=batch.late, status=domain.VALID,
        ).to_mongo().to_dict()

    @staticmethod
    def _insert(docs: list[dict], batch_id: str) -> set:
        """Insert in one round trip; return the numbers actually written."""
        if not docs:
            return set()
        collection = Certificate._get_collection()
        try:
            collection.insert_many(docs, ordered=False)
            return {d["certificate_number"] for d in docs}
        except BulkWriteError:
            # Duplicate keys (a concurrent upload of the same rows): keep what went in.
            return {c["certificate_number"]
                    for c in collection.find({"batch_id": batch_id}, {"certificate_number": 1})}

    def _finish(self, op: Operation, summary: dict | None = None) -> None:
        """Mark the operation DONE with its event, counted from the certificates it wrote."""
        if op.kind == "issue":
            event = self._issued_event(op)
        else:
            event = self._ended_event(op)
        if summary is not None:
            op.summary = summary
        op.state = DONE
        if event is not None:
            op.record(event)
        try:
            op.commit()
        except Conflict:
            # The sweep finished it meanwhile (only after STALE_OPERATION_SECONDS): same counts.
            log.warning("operation %s was finished by the sweep", op.operation_id)
            return
        self.outbox.publish_pending(op)

    def _counts(self, match: dict, by_institution: bool) -> list[dict]:
        group = {"o": "$occupation_code", "l": "$skill_level"}
        if by_institution:
            group["i"] = "$institution_id"
        pipeline = [{"$match": match},
                    {"$group": {"_id": group, "n": {"$sum": 1},
                                "late": {"$sum": {"$cond": ["$late_reported", 1, 0]}}}}]
        rows = list(Certificate._get_collection().aggregate(pipeline))
        rows.sort(key=lambda r: (r["_id"].get("i", ""), r["_id"]["o"], r["_id"]["l"]))
        return rows

    def _issued_event(self, op: Operation) -> dict | None:
        rows = self._counts({"batch_id": op.operation_id}, by_institution=False)
        if not rows:
            return None
        counts = [{"occupation_code": r["_id"]["o"], "skill_level": r["_id"]["l"],
                   "count": r["n"], "late_reported_count": r["late"]} for r in rows]
        return self._event("CertificatesIssued", {
            "batch_id": op.operation_id, "institution_id": op.institution_id,
            **op.details, "counts": counts, "total": sum(c["count"] for c in counts)}, op.actor)

    def _ended_event(self, op: Operation) -> dict | None:
        rows = self._counts({"operation_id": op.operation_id}, by_institution=True)
        if not rows:
            return None
        counts = [{"institution_id": r["_id"]["i"], "occupation_code": r["_id"]["o"],
                   "skill_level": r["_id"]["l"], "count": r["n"]} for r in rows]
        details = op.details
        common = {"operation_id": op.operation_id, "decision_ref": details["decision_ref"],
                  "effective_on": details["effective_on"], "counts": counts,
                  "total": sum(c["count"] for c in counts)}
        if op.kind == "invalidate":
            return self._event("CertificatesInvalidated",
                               {**common, "reason": details["reason"]}, op.actor)
        return self._event("CertificatesWithdrawn",
                           {**common, "recover_subsidies": details["recover_subsidies"]}, op.actor)

    # --- reading ----------------------------------------------------------------------
    @api
    def VerifyCertificate(self, request, caller):
        errors = []
        number = (request.get("certificate_number") or "").strip().upper()
        problem = domain.certificate_number_problem(number)
        if problem:
            errors.append(f"certificate_number: {problem}")
        name = domain.normalize_name(request.get("holder_name") or "")
        if not name:
            errors.append("holder_name: required")
        elif len(name) > 50:
            errors.append("holder_name: longer than 50 characters")
        if errors:
            raise InvalidArgument(errors)
        cert = Certificate.objects(certificate_number=number).first()
        if cert is None or domain.normalize_name(cert.holder_name) != name:
            VERIFICATIONS.labels("not_found").inc()
            return not_found_view(number)
        answer = verification_view(cert)
        VERIFICATIONS.labels(answer["result"].replace("VERIFICATION_RESULT_", "").lower()).inc()
        return answer

    def _certificate(self, number) -> Certificate:
        number = (number or "").strip().upper() if isinstance(number, str) else ""
        if not number:
            raise InvalidArgument("certificate_number: required")
        problem = domain.certificate_number_problem(number)
        if problem:
            raise InvalidArgument(f"certificate_number: {problem}")
        cert = Certificate.objects(certificate_number=number).first()
        if cert is None:
            raise NotFound(f"certificate {number} not found")
        return cert

    @api
    def GetCertificate(self, request, caller):
        cert = self._certificate(request.get("certificate_number"))
        require_own_institution(caller, cert.institution_id, "certificate")
        return {"certificate": certificate_view(cert)}

    @staticmethod
    def _scope_institution(request: dict, caller: Identity) -> str | None:
        """An institution reads only its own: empty means its own, another id is refused."""
        institution_id = (request.get("institution_id") or "").strip().upper() or None
        if caller.role == "institution":
            if institution_id is None:
                return caller.institution_id
            require_own_institution(caller, institution_id, "certificate register")
        return institution_id

    @api
    def ListCertificates(self, request, caller):
        errors: list[str] = []
        institution_id = self._scope_institution(request, caller)
        start, end = domain.parse_period(request, errors)
        domain.check_occupation_filter(request.get("occupation_code"), errors)
        domain.check_level_filter(request.get("skill_level"), errors)
        holder = domain.normalize_id_number(request.get("holder_id_number") or "")
        if holder and domain.id_number_problem(holder):
            errors.append(f"holder_id_number: {domain.id_number_problem(holder)}")
        page = request.get("page")
        try:
            size = page_size(page)
            after = decode_token(page)
        except InvalidArgument as exc:
            errors.extend(exc.violations)
            size, after = 0, None
        if errors:
            raise InvalidArgument(errors)

        filters = {}
        if institution_id:
            filters["institution_id"] = institution_id
        for key in ("exam_session_id", "occupation_code", "skill_level", "status"):
            if request.get(key) and request[key] != "CERTIFICATE_STATUS_UNSPECIFIED":
                filters[key] = request[key]
        if holder:
            filters["holder_id_number"] = holder
        if start:
            filters["issued_on__gte"] = start.isoformat()
        if end:
            filters["issued_on__lte"] = end.isoformat()
        if after:
            filters["certificate_number__gt"] = after
        rows = list(Certificate.objects(**filters).order_by("certificate_number").limit(size + 1))
        more = len(rows) > size
        rows = rows[:size]
        return {"certificates": [certificate_view(c) for c in rows],
                "page": {"next_page_token": encode_token(rows[-1].certificate_number) if more else ""}}

    @api
    def GetIssuanceStats(self, request, caller):
        errors: list[str] = []
        institution_id = self._scope_institution(request, caller)
        start, end = domain.parse_period(request, errors)
        domain.check_occupation_filter(request.get("occupation_code"), errors)
        domain.check_level_filter(request.get("skill_level"), errors)
        if errors:
            raise InvalidArgument(errors)
        match: dict = {}
        if institution_id:
            match["institution_id"] = institution_id
        if request.get("occupation_code"):
            match["occupation_code"] = request["occupation_code"]
        if request.get("skill_level"):
            match["skill_level"] = request["skill_level"]
        issued = {}
        if start:
            issued["$gte"] = start.isoformat()
        if end:
            issued["$lte"] = end.isoformat()
        if issued:
            match["issued_on"] = issued

        def count_if(status):
            return {"$sum": {"$cond": [{"$eq": ["$status", status]}, 1, 0]}}

        pipeline = [{"$match": match},
                    {"$group": {"_id": {"i": "$institution_id", "o": "$occupation_code",
                                        "l": "$skill_level"},
                                "issued": {"$sum": 1},
                                "valid": count_if(domain.VALID),
                                "invalidated": count_if(domain.INVALIDATED),
                                "withdrawn": count_if(domain.WITHDRAWN),
                                "late": {"$sum": {"$cond": ["$late_reported", 1, 0]}}}}]
        groups = sorted(Certificate._get_collection().aggregate(pipeline),
                        key=lambda g: (g["_id"]["i"], g["_id"]["o"], g["_id"]["l"]))
        stats = [{"institution_id": g["_id"]["i"], "occupation_code": g["_id"]["o"],
                  "skill_level": g["_id"]["l"], "issued_count": g["issued"],
                  "valid_count": g["valid"], "invalidated_count": g["invalidated"],
                  "withdrawn_count": g["withdrawn"], "late_reported_count": g["late"]}
                 for g in groups]
        return {"stats": stats, "issued_count": sum(s["issued_count"] for s in stats)}

    # --- invalidation and withdrawal ----------------------------------------------------
    @api
    def InvalidateCertificates(self, request, caller):
        selection, reason, decision_ref, note = domain.parse_invalidation(request)
        return {"result": self._end(selection, domain.INVALIDATED, "invalidate", {
            "reason": reason, "decision_ref": decision_ref, "note": note}, caller)}

    @api
    def WithdrawCertificates(self, request, caller):
        selection, decision_ref, note = domain.parse_withdrawal(request)
        return {"result": self._end(selection, domain.WITHDRAWN, "withdraw", {
            "reason": domain.DATA_WITHDRAWN, "decision_ref": decision_ref, "note": note,
            "recover_subsidies": bool(request.get("recover_subsidies"))}, caller)}

    def _end(self, selection: domain.Selection, status: str, kind: str, details: dict,
             caller: Identity) -> dict:
        """Invalidate or withdraw what the selection names. Only VALID certificates change:
        both are permanent, so a repeated call changes nothing and says so."""
        if selection.kind == "numbers":
            query = Certificate.objects(certificate_number__in=list(selection.numbers))
        elif selection.kind == "session":
            query = Certificate.objects(institution_id=selection.institution_id,
                                        exam_session_id=selection.exam_session_id)
        else:
            query = Certificate.objects(institution_id=selection.institution_id,
                                        issued_on__gte=selection.issued_from.isoformat(),
                                        issued_on__lte=selection.issued_to.isoformat())
        matching = query.count()
        not_found = []
        if selection.kind == "numbers":
            present = {c.certificate_number for c in query.only("certificate_number")}
            not_found = [n for n in selection.numbers if n not in present]
        if matching == 0:
            raise NotFound("no certificate matches the selection")

        effective_on = self._today().isoformat()
        op = Operation(operation_id=uuid.uuid4().hex, kind=kind, state=PENDING,
                       started_at=self.clock.now(), actor=caller.audit_name(),
                       institution_id=selection.institution_id,
                       details={**details, "effective_on": effective_on})
        op.insert()
        record = {k: v for k, v in {**details, "effective_on": effective_on,
                                    "operation_id": op.operation_id}.items() if v not in ("", None)}
        changed = query.filter(status=domain.VALID).update(
            set__status=status, set__invalidation=record, set__operation_id=op.operation_id)
        self._finish(op, {"changed": changed, "unchanged": matching - changed})
        ENDED.labels(details["reason"].replace("INVALIDATION_REASON_", "").lower()).inc(changed)
        return {"operation_id": op.operation_id, "changed_count": changed,
                "unchanged_count": matching - changed, "not_found": not_found}

    # --- filing's facts -----------------------------------------------------------------
    on_institution_suspended = _filing_status("InstitutionSuspended")
    on_institution_reinstated = _filing_status("InstitutionReinstated")
    on_filing_terminated = _filing_status("FilingTerminated")
    on_filing_expired = _filing_status("FilingExpired")

    def _apply_filing_status(self, event_type: str, body: dict) -> None:
        """Keep filing's status of the institution; the newest event wins, whatever order the
        bus delivers them in. Nothing already issued changes: only new batches are refused."""
        institution_id = (body.get("institution_id") or "").strip().upper()
        meta = body.get("meta") or {}
        if not institution_id:
            log.error("%s %s without institution_id dropped", event_type, meta.get("event_id"))
            return
        status = domain.STATUS_BY_FILING_EVENT[event_type]
        occurred_at = meta.get("occurred_at") or self.clock.now().isoformat()
        reason = body.get("reason") or ""
        entry = {"status": status, "reason": reason, "changed_at": occurred_at,
                 "event_id": meta["event_id"]}
        # Two writes, each atomic and each safe to repeat: the history entry, then the status
        # only if this event is not older than the one already applied.
        InstitutionView.objects(pk=institution_id).update_one(upsert=True, push__history=entry)
        InstitutionView.objects(
            Q(pk=institution_id) & (Q(changed_at__exists=False) | Q(changed_at__lte=occurred_at))
        ).update_one(set__status=status, set__reason=reason, set__changed_at=occurred_at,
                     set__event_id=meta["event_id"])

    # --- the clock ------------------------------------------------------------------------
    @timer(interval=SWEEP_INTERVAL)
    def sweep(self):
        """Finish operations a crash left PENDING, then relay events left unpublished."""
        now = self.clock.now()
        finished = 0
        for op in Operation.objects(state=PENDING).order_by("started_at"):
            started = op.started_at if op.started_at.tzinfo else op.started_at.replace(tzinfo=now.tzinfo)
            if (now - started).total_seconds() < STALE_OPERATION_SECONDS:
                break
            self._finish(op)
            finished += 1
        relayed = self.outbox.relay(Operation)
        return {"finished": finished, "relayed": relayed}

