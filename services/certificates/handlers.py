"""The registry's handlers: one function per RPC, event and timer, `(command, uow, clock,
settings)` plus the filing gateway where filing must be asked. No nameko here."""
from __future__ import annotations

import hashlib
import logging
from collections import Counter as Tally
from datetime import date, timezone

from prometheus_client import Counter
from vocreg.certificates.v1 import certificates_pb2

from services.certificates import domain, public
from services.certificates.models import Operation
from services.certificates.repository import DONE, PENDING
from services.certificates.views import (
    certificate_view,
    row_result_view,
)
from services.common import paging
from services.common.auth import Identity, require_own_institution
from services.common.errors import (
    Conflict,
    ContractViolation,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.common.idempotency import rebuilds_its_answer
from services.common.turns import in_turns
from services.common.vocabulary import normalize_id
from services.common.workdays import today_in_shanghai

log = logging.getLogger(__name__)

ROWS = Counter("vocreg_certificate_rows_total",
               "Uploaded certificate rows by outcome (issued, rejected, duplicate).", ["outcome"])
LATE_REPORTED = Counter("vocreg_certificates_late_reported_total",
                        "Certificates issued but reported after the allowed days.")
ENDED = Counter("vocreg_certificates_ended_total",
                "Certificates invalidated or withdrawn, by reason.", ["reason"])
ISSUE_REFUSED = Counter("vocreg_certificate_batches_refused_total",
                        "Batches refused whole because the institution may not issue.", ["why"])

ROW_STATUSES = (domain.ROW_ISSUED, domain.ROW_REJECTED, domain.ROW_DUPLICATE)


# --- issuing ------------------------------------------------------------------------------
@rebuilds_its_answer
def issue_certificates(cmd, uow, clock, settings, filing):
    """Issue a batch. Its Operation's id is the request's (uow.new_id): the same request again
    finds it and answers from what it wrote (a 10,000-row answer is rebuilt, not stored); if
    the worker that ran it died half way, the retry takes the batch over and issues the rows
    not stored yet, under the same batch id."""
    institution_id = cmd.caller.institution_id
    today = today_in_shanghai(clock.now())
    batch = domain.parse_batch(cmd.request, today, settings.late_days, each=in_turns)
    op_id = uow.new_id()
    earlier = uow.repo.operation(op_id)
    if earlier is not None and earlier.state == DONE:
        return _batch_answer(uow, earlier, batch)
    if earlier is not None:
        if not _abandoned(uow, clock, settings, earlier, has_request=True):
            raise _running()
        earlier.owner = uow.instance_id
        uow.flush(earlier)  # conditional: of two retries taking it over, one wins
        _issue_missing_rows(uow, earlier, batch, _restore_refusals(batch, earlier), today)
        _finish(uow, earlier)  # counted from every row the batch holds, both runs'
        return _batch_answer(uow, earlier, batch)

    institution = _issuing_institution(institution_id, uow, filing)
    refusals = {}
    for occupation, level in domain.rights_to_ask(batch.rows):
        allowed, reason = filing.evaluation_right(institution_id, occupation, level,
                                                  batch.assessment_date.isoformat())
        if not allowed:
            refusals[(occupation, level)] = reason
    domain.refuse_out_of_scope(batch.rows, refusals)

    op = uow.add(Operation(
        operation_id=op_id, kind="issue", state=PENDING, started_at=clock.now(),
        owner=uow.instance_id, actor=cmd.caller.audit_name(), institution_id=institution_id,
        filing_code=institution["filing_code"], issuer_name=institution.get("name"),
        details={"exam_session_id": batch.exam_session_id,
                 "assessment_date": batch.assessment_date.isoformat(),
                 "issued_on": today.isoformat()}, late_reported=batch.late,
        rejected={str(r.index): list(r.errors) for r in batch.rows if not r.ok}),
        on_duplicate=_running)
    uow.flush(op)  # the record of the batch lands before its certificates: a crash is finished
    docs, numbers, written, existing = _issue_missing_rows(uow, op, batch, batch.rows, today)

    results = []
    for row in in_turns(batch.rows):
        if not row.ok:
            results.append(row_result_view(row, None, domain.ROW_REJECTED))
        elif numbers.get(row.index) in written:
            results.append(row_result_view(row, numbers[row.index], domain.ROW_ISSUED))
        elif row.key in existing:
            results.append(row_result_view(row, existing[row.key], domain.ROW_DUPLICATE))
        else:
            row.errors.append(NOT_STORED)
            results.append(row_result_view(row, None, domain.ROW_REJECTED))
    summary = {s: sum(1 for r in results if r["status"] == s) for s in ROW_STATUSES}
    issued = [d for d in docs if d["certificate_number"] in written]
    _finish(uow, op, summary, _issued_counts_of(issued))
    for status, n in summary.items():
        ROWS.labels(status.replace("ROW_STATUS_", "").lower()).inc(n)
    if batch.late:
        LATE_REPORTED.inc(summary[domain.ROW_ISSUED])
    return _batch_summary(op.operation_id, batch.late, results)


def _restore_refusals(batch, op: Operation) -> list:
    """The batch's rows with the refusals its first run decided (kept in the operation)."""
    for row in batch.rows:
        errors = (op.rejected or {}).get(str(row.index))
        if errors is not None:
            row.errors = list(errors)
    return batch.rows


def _issue_missing_rows(uow, op: Operation, batch, rows, today: date):
    """Number and insert the accepted rows the exam session does not hold yet, under the
    operation's batch id: (documents, row index -> number, numbers written, session's numbers
    before or beside them)."""
    existing = uow.repo.session_numbers(op.institution_id, batch.exam_session_id)
    to_issue = [r for r in rows if r.ok and r.key not in existing]
    numbers = _allocate_numbers(uow, op.filing_code, today, to_issue)
    docs = [_certificate_doc(row, numbers[row.index], op, batch, today)
            for row in in_turns(to_issue)]
    written = uow.repo.insert_certificates(docs, op.operation_id)
    if len(written) < len(docs):  # a concurrent upload of the same rows won the race
        existing = uow.repo.session_numbers(op.institution_id, batch.exam_session_id)
    return docs, numbers, written, existing


NOT_STORED = "could not be stored; upload the row again"


def _batch_summary(batch_id: str, late: bool, results: list[dict]) -> dict:
    summary = {s: sum(1 for r in results if r["status"] == s) for s in ROW_STATUSES}
    return {"batch_id": batch_id,
            "issued_count": summary[domain.ROW_ISSUED],
            "rejected_count": summary[domain.ROW_REJECTED],
            "duplicate_count": summary[domain.ROW_DUPLICATE],
            "late_reported": late, "results": results}


def _running() -> Conflict:
    return Conflict("the same request (request_id) is being processed; retry in a moment")


def _earlier_operation(uow, clock, settings, op_id: str) -> Operation | None:
    """The operation this same request created before (a retry with its request_id), finished
    if a crash left it PENDING; None the first time. A PENDING one whose worker is still alive
    is being processed by the first call: Conflict, retry in a moment."""
    op = uow.repo.operation(op_id)
    if op is None:
        return None
    if op.state == PENDING:
        if not _abandoned(uow, clock, settings, op, has_request=True):
            raise _running()
        _finish(uow, op)  # as the sweep would: counted from what the first call wrote
    return op


def _abandoned(uow, clock, settings, op: Operation, has_request: bool) -> bool:
    age = (clock.now() - op.started_at.replace(tzinfo=timezone.utc)).total_seconds()
    return domain.operation_abandoned(op.kind, op.owner, uow.owner_alive(op.owner), age,
                                      settings.stale_operation_seconds, has_request)


def _batch_answer(uow, op: Operation, batch) -> dict:
    """The first call's answer to this batch, rebuilt: what it issued (its certificates carry
    its batch_id), what was there before it (duplicates), what it refused (kept in the
    operation)."""
    issued = uow.repo.batch_numbers(op.operation_id)
    before = uow.repo.session_numbers(op.institution_id, batch.exam_session_id)
    rejected = op.rejected or {}
    results = []
    for row in in_turns(batch.rows):
        errors = rejected.get(str(row.index))
        if errors is not None:
            row.errors = list(errors)
            results.append(row_result_view(row, None, domain.ROW_REJECTED))
        elif row.key in issued:
            results.append(row_result_view(row, issued[row.key], domain.ROW_ISSUED))
        elif row.key in before:
            results.append(row_result_view(row, before[row.key], domain.ROW_DUPLICATE))
        else:
            row.errors = [NOT_STORED]
            results.append(row_result_view(row, None, domain.ROW_REJECTED))
    return _batch_summary(op.operation_id, bool(op.late_reported), results)


def _issuing_institution(institution_id: str, uow, filing) -> dict:
    """The filed institution, if it may issue now; else FailedPrecondition with why. The status
    filing's events told us answers first; filing itself is asked for the rest."""
    view = uow.repo.institution_view(institution_id)
    refusal = domain.issuing_refusal(view.status, view.reason) if view and view.status else None
    if refusal:
        ISSUE_REFUSED.labels(view.status.replace("INSTITUTION_STATUS_", "").lower()).inc()
        raise FailedPrecondition(f"cannot issue: {refusal}", reason="FILING_NOT_ACTIVE",
                                 subject=f"institution/{institution_id}")
    institution = filing.institution(institution_id)
    if institution is None:
        ISSUE_REFUSED.labels("not_filed").inc()
        raise FailedPrecondition(f"cannot issue: institution {institution_id} is not filed",
                                 reason="INSTITUTION_NOT_FILED",
                                 subject=f"institution/{institution_id}")
    refusal = domain.issuing_refusal(institution.get("status"), institution.get("status_reason"))
    if refusal:
        ISSUE_REFUSED.labels("status").inc()
        raise FailedPrecondition(f"cannot issue: {refusal}", reason="FILING_NOT_ACTIVE",
                                 subject=f"institution/{institution_id}")
    problem = domain.filing_code_problem(institution.get("filing_code"))
    if problem:
        log.error("filing returned an unusable filing code for %s: %s", institution_id, problem)
        raise FailedPrecondition(f"cannot issue: the institution's {problem}",
                                 reason="FILING_CODE_UNUSABLE",
                                 subject=f"institution/{institution_id}")
    return institution


def _allocate_numbers(uow, filing_code: str, today: date, rows) -> dict:
    """Row index -> number. One counter per evaluator, year and level, moved once per level by
    the whole block; serials are never reused, so a failed write leaves a gap."""
    by_level: dict[int, list] = {}
    for row in rows:
        by_level.setdefault(row.skill_level, []).append(row)
    numbers = {}
    for level, level_rows in sorted(by_level.items()):
        key = domain.serial_key(filing_code, today, level)
        domain.check_serials_left(uow.repo.counter_value(key), len(level_rows), level, today.year)
        first = uow.repo.next_values(key, len(level_rows))
        domain.check_serials_left(first - 1, len(level_rows), level, today.year)
        for offset, row in enumerate(in_turns(level_rows)):
            numbers[row.index] = domain.certificate_number(filing_code, today, level,
                                                           first + offset)
    return numbers


def _certificate_doc(row, number, op, batch, today) -> dict:
    """The certificate as stored (models.Certificate's fields), built as the plain document:
    through mongoengine (Certificate(...).to_mongo()) it cost 54 us a row, half of a 10,000-row
    batch's worker time; tests/unit/test_certificates_handlers.py checks both agree."""
    doc = {
        "_id": domain.issue_key(op.institution_id, batch.exam_session_id, row.holder_id_number,
                                row.occupation_code, row.skill_level),
        "certificate_number": number, "institution_id": op.institution_id,
        "filing_code": op.filing_code, "issuer_name": op.issuer_name,
        "exam_session_id": batch.exam_session_id, "batch_id": op.operation_id,
        "holder_name": row.holder_name, "holder_id_number": row.holder_id_number,
        "occupation_code": row.occupation_code, "occupation_name": row.occupation_name,
        "skill_level": row.skill_level, "assessment_date": batch.assessment_date.isoformat(),
        "issued_on": today.isoformat(), "late_reported": bool(batch.late),
        "status": domain.VALID, "invalidation": {}, "history": [],
    }
    return {k: v for k, v in doc.items() if v is not None}


def _issued_counts_of(docs: list[dict]) -> list[dict]:
    tally = Tally((d["occupation_code"], d["skill_level"]) for d in docs)
    late = Tally((d["occupation_code"], d["skill_level"]) for d in docs if d["late_reported"])
    return [{"_id": {"o": o, "l": lv}, "n": n, "late": late[(o, lv)]}
            for (o, lv), n in sorted(tally.items())]


def _finish(uow, op: Operation, summary: dict | None = None, counts=None) -> None:
    """Mark the operation DONE with its event, counted from what it wrote (read back from the
    certificates when a crash left only the database to tell)."""
    if op.kind == "issue":
        rows = counts if counts is not None else uow.repo.counts(
            {"batch_id": op.operation_id}, by_institution=False)
        payload = domain.issued_event(op.operation_id, op.institution_id, op.details, rows)
        event_type = "CertificatesIssued"
    else:
        if op.state == PENDING and op.selection and summary is None:
            _apply_end(uow, op)  # a crash may have come before the certificates changed
        rows = uow.repo.counts({"operation_id": op.operation_id}, by_institution=True)
        event_type, payload = domain.ended_event(op.kind, op.operation_id, op.details, rows)
    if summary is not None:
        op.summary = summary
    op.state = DONE
    if payload is not None:
        uow.emit(op, event_type, payload, op.actor)
    try:
        uow.flush(op)
    except Conflict:
        # The sweep finished it meanwhile (only after a stale delay): the same counts.
        log.warning("operation %s was finished by the sweep", op.operation_id)
        uow.forget([op])


# --- reading ------------------------------------------------------------------------------
def verify_certificate(cmd, uow, clock, settings):
    """For callers on the bus; the public's calls are answered by the edge with the same
    code (public.py)."""
    return public.verify(cmd.request, uow.repo.verification_record)


def get_certificate(cmd, uow, clock, settings):
    number = domain.parse_certificate_number(cmd.request.get("certificate_number"))
    cert = uow.repo.certificate(number)
    if cert is None:
        raise NotFound(f"certificate {number} not found")
    require_own_institution(cmd.caller, cert.institution_id, "certificate")
    return {"certificate": certificate_view(cert)}


def _scope_institution(request: dict, caller: Identity) -> str | None:
    """An institution reads only its own: empty means its own, another id is refused."""
    institution_id = normalize_id(request.get("institution_id")) or None
    if caller.role == "institution":
        if institution_id is None:
            return caller.institution_id
        require_own_institution(caller, institution_id, "certificate register")
    return institution_id


def _common_filters(request: dict, caller: Identity, errors: list):
    """What ListCertificates and GetIssuanceStats both filter on: (institution, from, to)."""
    institution_id = _scope_institution(request, caller)
    start, end = domain.parse_period(request, errors)
    domain.check_occupation_filter(request.get("occupation_code"), errors)
    domain.check_level_filter(request.get("skill_level"), errors)
    return institution_id, start, end


def list_certificates(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    institution_id, start, end = _common_filters(request, cmd.caller, errors)
    holder = domain.normalize_id_number(request.get("holder_id_number") or "")
    if holder and domain.id_number_problem(holder):
        errors.append(f"holder_id_number: {domain.id_number_problem(holder)}")
    try:
        page = paging.page(cmd, clock.now())
    except InvalidArgument as exc:
        errors.extend(exc.violations)
    if errors:
        raise InvalidArgument(errors)
    filters = domain.list_filters(request, institution_id, holder, start, end)
    if (start or end) and page.after is not None and not (
            isinstance(page.after, list) and len(page.after) == 2
            and all(isinstance(part, str) for part in page.after)):
        raise InvalidArgument(paging.NOT_OURS, reason="PAGE_TOKEN_INVALID")  # a period's
    rows, last = uow.repo.list_page(filters, page.size, page.after)  # pages by [date, number]
    return {"certificates": [certificate_view(c) for c in rows], "page": page.response(last)}


def get_issuance_stats(cmd, uow, clock, settings):
    request = cmd.request
    errors: list[str] = []
    institution_id, start, end = _common_filters(request, cmd.caller, errors)
    if errors:
        raise InvalidArgument(errors)
    match = domain.stats_match(request, institution_id, start, end)
    groups = uow.repo.stats(match, {"valid": domain.VALID, "invalidated": domain.INVALIDATED,
                                    "withdrawn": domain.WITHDRAWN})
    stats = [{"institution_id": g["_id"]["i"], "occupation_code": g["_id"]["o"],
              "skill_level": g["_id"]["l"], "issued_count": g["issued"],
              "valid_count": g["valid"], "invalidated_count": g["invalidated"],
              "withdrawn_count": g["withdrawn"], "late_reported_count": g["late"]}
             for g in groups]
    return {"stats": stats, "issued_count": sum(s["issued_count"] for s in stats)}


# --- invalidation and withdrawal --------------------------------------------------------------
@rebuilds_its_answer
def invalidate_certificates(cmd, uow, clock, settings):
    selection, reason, decision_ref, note = domain.parse_invalidation(cmd.request)
    return {"result": _end(uow, clock, settings, cmd.caller, selection, domain.INVALIDATED,
                           "invalidate",
                           {"reason": reason, "decision_ref": decision_ref, "note": note})}


@rebuilds_its_answer
def withdraw_certificates(cmd, uow, clock, settings):
    selection, decision_ref, note = domain.parse_withdrawal(cmd.request)
    return {"result": _end(uow, clock, settings, cmd.caller, selection, domain.WITHDRAWN,
                           "withdraw", {
        "reason": domain.DATA_WITHDRAWN, "decision_ref": decision_ref, "note": note,
        "recover_subsidies": bool(cmd.request.get("recover_subsidies"))})}


def _end(uow, clock, settings, caller: Identity | str, selection: domain.Selection,
         status: str, kind: str, details: dict, op_id: str | None = None) -> dict:
    """Invalidate or withdraw what the selection names. Only VALID certificates change: both
    are permanent, so a repeated call changes nothing and says so. The Operation's id is the
    request's (or `op_id`): the same request again answers from it."""
    op_id = op_id or uow.new_id()
    earlier = _earlier_operation(uow, clock, settings, op_id)
    if earlier is not None:
        return _ended_answer(uow, earlier)
    matching = uow.repo.count_selected(selection)
    not_found = []
    if selection.kind == "numbers":
        present = uow.repo.present_numbers(selection)
        not_found = [n for n in selection.numbers if n not in present]
    if matching == 0:
        raise NotFound("no certificate matches the selection")
    effective_on = today_in_shanghai(clock.now()).isoformat()
    actor = caller.audit_name() if isinstance(caller, Identity) else caller
    op = uow.add(Operation(operation_id=op_id, kind=kind, state=PENDING, started_at=clock.now(),
                           owner=uow.instance_id, actor=actor, institution_id=selection.institution_id,
                           details={**details, "effective_on": effective_on},
                           selection=domain.selection_record(selection), matching=matching,
                           not_found=not_found),
                 on_duplicate=_running)
    uow.flush(op)  # the record lands before the certificates change: a crash is finished
    changed = _apply_end(uow, op)
    _finish(uow, op, {"changed": changed, "unchanged": matching - changed})
    ENDED.labels(details["reason"].replace("INVALIDATION_REASON_", "").lower()).inc(changed)
    return _ended_answer(uow, op)


def _apply_end(uow, op: Operation) -> int:
    """Set the operation's status on the VALID certificates of its selection (a conditional
    update: applied again, it changes none of those it changed); how many changed now."""
    status = domain.INVALIDATED if op.kind == "invalidate" else domain.WITHDRAWN
    record = {k: v for k, v in {**op.details, "operation_id": op.operation_id}.items()
              if v not in ("", None)}
    return uow.repo.end_valid(domain.selection_of(op.selection), domain.VALID, status, record,
                              op.operation_id)


def _ended_answer(uow, op: Operation) -> dict:
    """The answer of an invalidation or withdrawal, from its operation (the first answer, for
    a retry with the same request_id)."""
    summary = op.summary or {}
    changed = summary.get("changed")
    if changed is None:
        changed = uow.repo.count_changed_by(op.operation_id)
    unchanged = summary.get("unchanged", (op.matching or 0) - changed)
    return {"operation_id": op.operation_id, "changed_count": changed,
            "unchanged_count": unchanged, "not_found": list(op.not_found or [])}


# --- inspection's decisions (seed 001 ch.6 art.1-4; seed 002 §4) -----------------------------
INSPECTION = "service:inspection"


def decision_operation_id(decision_id: str) -> str:
    """The operation that applies one inspection decision: derived from the decision id, so a
    redelivered or republished SanctionDecided finds it and changes nothing more."""
    return hashlib.sha256(f"inspection-decision:{decision_id}".encode()).hexdigest()[:32]


def inspection_decided(event, uow, clock, settings):
    """SanctionDecided naming certificates: void them (tier 1, a session's by tier 2, tier 4)
    or withdraw their uploaded data (seed 002 §4), once per decision, only the decided
    institution's own."""
    effect = event.certificates
    numbers = tuple(dict.fromkeys(normalize_id(n) for n in effect.certificate_numbers
                                  if normalize_id(n)))
    session = (effect.exam_session_id or "").strip()
    institution_id = normalize_id(event.institution_id)
    decision_id = event.decision_id.strip()
    if not (numbers or session) or not institution_id or not decision_id:
        return None
    selection = domain.Selection(numbers=numbers, institution_id=institution_id,
                                 exam_session_id=None if numbers else session)
    details = {"decision_ref": decision_id, "note": f"inspection decision {decision_id} "
               f"({event.basis})"[:1000]}
    try:
        if effect.withdraw_data:
            return _end(uow, clock, settings, INSPECTION, selection, domain.WITHDRAWN,
                        "withdraw", {**details, "reason": domain.DATA_WITHDRAWN,
                                     "recover_subsidies": bool(effect.recover_subsidies)},
                        op_id=decision_operation_id(decision_id))
        reason = certificates_pb2.InvalidationReason.Name(effect.reason)
        if reason not in domain.INVALIDATION_REASONS:
            reason = "INVALIDATION_REASON_FRAUD"
        return _end(uow, clock, settings, INSPECTION, selection, domain.INVALIDATED,
                    "invalidate", {**details, "reason": reason},
                    op_id=decision_operation_id(decision_id))
    except NotFound:
        log.warning("SanctionDecided %s: no certificate of %s matches", decision_id,
                    institution_id)
        return None


def inspection_reversed(event, uow, clock, settings):
    """DecisionReversed: the certificates the decision voided or withdrew are valid again,
    each with a history entry saying why; once (the operation records it)."""
    decision_id = event.decision_id.strip()
    op = uow.repo.operation(decision_operation_id(decision_id)) if decision_id else None
    if op is None or op.state != DONE or (op.details or {}).get("restored_on"):
        return None
    today = today_in_shanghai(clock.now()).isoformat()
    why = f"decision {decision_id} reversed" + (
        f" on review {event.review_id}" if event.review_id else "") + (
        f": {event.reason}" if event.reason else "")
    previous = domain.INVALIDATED if op.kind == "invalidate" else domain.WITHDRAWN
    restored = uow.repo.restore(op.operation_id, domain.VALID, {
        "event": "RESTORED", "on": today, "reason": why[:500], "decision_ref": decision_id,
        "previous_status": previous, "previous_reason": op.details.get("reason")})
    rows = uow.repo.counts({"operation_id": op.operation_id}, by_institution=True)
    counts = [{"institution_id": r["_id"]["i"], "occupation_code": r["_id"]["o"],
               "skill_level": r["_id"]["l"], "count": r["n"]} for r in rows]
    op.details = {**op.details, "restored_on": today, "restored_by": event.review_id}
    uow.emit(op, "CertificatesRestored", {
        "operation_id": op.operation_id, "decision_ref": decision_id,
        "review_ref": event.review_id, "effective_on": today, "counts": counts,
        "total": sum(c["count"] for c in counts)}, INSPECTION)
    return restored


# --- filing's facts ---------------------------------------------------------------------------
def filing_status_changed(event, uow, clock, settings):
    """Keep filing's status of the institution: the newest event wins, whatever order the bus
    delivers them in. Nothing already issued changes: only new batches are refused."""
    event_type = type(event).DESCRIPTOR.name
    institution_id = normalize_id(event.institution_id)
    if not institution_id:  # kept as a dead letter (services/common/entrypoints.py)
        raise ContractViolation(f"filing.{event_type} {event.meta.event_id}: no institution_id")
    occurred_at = event.meta.occurred_at.ToJsonString()
    reason = getattr(event, "reason", "") or ("filed" if event_type == "InstitutionFiled" else "")
    status = domain.STATUS_BY_FILING_EVENT[event_type]
    uow.repo.record_status_event(institution_id, {
        "status": status, "reason": reason, "changed_at": occurred_at,
        "sequence": event.meta.sequence, "event_id": event.meta.event_id})
    for _ in range(5):  # another event applied between our read and write: decide again
        view = uow.repo.institution_view(institution_id)
        applied = None if view is None or view.event_id is None else (
            view.sequence or 0, view.changed_at or "")
        if domain.status_update(event_type, event.meta.sequence, occurred_at, applied) is None:
            return
        if uow.repo.set_status(institution_id, status, reason, occurred_at,
                               event.meta.sequence, event.meta.event_id, view):
            return
    # A transient failure: the event is delivered again after a pause (EVENT_RETRY_DELAY)
    raise Conflict(f"status of {institution_id} kept changing; the event will be redelivered")


# --- the clock ------------------------------------------------------------------------------
def sweep(uow, clock, settings):
    """Finish operations a crash left PENDING (their worker stopped beating): their event is
    then counted from what the database holds."""
    finished = 0
    for op in uow.repo.pending_operations():
        if not _abandoned(uow, clock, settings, op, has_request=False):
            continue
        with uow.step(f"operation {op.operation_id}") as step:
            _finish(uow, op)
        finished += step.done
    return {"finished": finished}
