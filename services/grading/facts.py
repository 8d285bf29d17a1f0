"""What other services' events tell grading, one handler per event, `(event, uow, clock,
settings)`: filing's status, the platform facts that score indicators (each keyed on its
source event id, so a redelivery adds nothing), inspection's decisions (the integrity file,
the black list, reversals), and the certificates that earn 001 ch.7 rewards. A fact that
arrives after its year was published revises the grade it changes (GradeRevised)."""
from __future__ import annotations

import logging
from datetime import date, timezone

from services.common.errors import Conflict
from services.common.vocabulary import normalize_id
from services.common.workdays import today_in_shanghai
from services.grading import domain
from services.grading.handlers import (
    institution_for,
    list_black,
    record_entry,
    rescore,
    system_of,
)

log = logging.getLogger(__name__)

ATTEMPTS = 5
ACTOR = "service:grading"


def _apply(uow, what: str, change) -> str:
    """Run `change()` and write it now; a concurrent change to the same documents is met by
    reading again and applying anew (an event handler that raised would lose its message)."""
    for _ in range(ATTEMPTS):
        try:
            outcome = change()
            uow.flush()
            return outcome
        except Conflict:
            uow.forget(list(uow.repo.seen))
    raise Conflict(f"{what}: the documents kept changing; the event will be redelivered")


def _day(value: str, fallback) -> str:
    try:
        return date.fromisoformat((value or "").strip()).isoformat()
    except ValueError:
        return fallback


def _event_day(event) -> str:
    """The day (Asia/Shanghai) an event occurred, for facts that carry no date of their own."""
    return today_in_shanghai(event.meta.occurred_at.ToDatetime(tzinfo=timezone.utc)).isoformat()


def add_fact(uow, clock, settings, institution_id: str, fact: dict, revise: bool = True) -> bool:
    """Record a fact once (its event id); revise the grade of its year if already published."""
    inst = institution_for(uow, institution_id)
    if any(f.get("event_id") == fact["event_id"] for f in inst.facts or ()):
        return False
    inst.facts.append({k: v for k, v in fact.items() if v not in ("", None)})
    if revise:
        revise_year(uow, clock, settings, inst, int(fact["on"][:4]),
                f"platform fact {fact['kind'].removeprefix('FACT_KIND_').lower()} "
                f"(event {fact['event_id']})")
    return True


def revise_year(uow, clock, settings, inst, year: int, reason: str) -> bool:
    """A published grade of `year` scored again over the facts as they stand now."""
    rec = uow.repo.grade(year, inst.institution_id)
    if rec is None:
        return False
    system = system_of(uow, rec.system_id)
    return rescore(uow, clock, settings, rec, system, reason, ACTOR,
                   facts=domain.facts_in_year(list(inst.facts), year))


# --- filing --------------------------------------------------------------------------------------
STATUS_BY_EVENT = {
    "InstitutionFiled": "ACTIVE", "InstitutionSuspended": "SUSPENDED",
    "InstitutionReinstated": "ACTIVE", "FilingTerminated": "TERMINATED",
    "FilingExpired": "EXPIRED", "FilingRenewed": "ACTIVE",
}


def filing_status(event, uow, clock, settings):
    """Filing's status of the institution (the newest event of filing's aggregate wins), its
    first filing day, its district; a termination is also a fact (direct D in its year)."""
    event_type = type(event).DESCRIPTOR.name
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        log.error("%s %s without institution_id dropped", event_type, event.meta.event_id)
        return "ignored"

    def change():
        inst = institution_for(uow, institution_id)
        if event_type == "InstitutionFiled":
            receipt = event.receipt
            filed_on = _day(receipt.filed_on, _event_day(event))
            if inst.ended_on and filed_on > inst.ended_on:
                inst.filed_on = filed_on  # filed anew after its filing ended: a new start
            else:
                inst.filed_on = min(filter(None, (inst.filed_on, filed_on)))
            inst.name = receipt.institution_name or inst.name
            inst.district_code = event.district_code or inst.district_code
        if event_type == "FilingTerminated":
            on = _day(event.effective_on, _event_day(event))
            add_fact(uow, clock, settings, institution_id, {
                "event_id": event.meta.event_id, "kind": "FACT_KIND_FILING_TERMINATED",
                "on": on, "decision_ref": event.decision_ref, "summary": event.reason,
                "service": "filing"})
        sequence = event.meta.sequence or 0
        if sequence and sequence < (inst.status_sequence or 0):
            return "older"  # a newer status was applied already
        inst.status = STATUS_BY_EVENT[event_type]
        inst.status_sequence = sequence
        if event_type == "FilingTerminated":
            inst.ended_on = _day(event.effective_on, _event_day(event))
            inst.end_kind = "TERMINATED"
        elif event_type == "FilingExpired":
            inst.ended_on = _day(event.valid_until, _event_day(event))
            inst.end_kind = "EXPIRED"
        elif inst.status == "ACTIVE":
            inst.ended_on, inst.end_kind = None, None  # reinstated or renewed
        return "applied"

    return _apply(uow, f"{event_type} {event.meta.event_id}", change)


def change_overdue(event, uow, clock, settings):
    """A details change filed after its 30 days (001 ch.6 art.3(8)): a filing violation."""
    institution_id = normalize_id(event.institution_id)
    on = _day(event.filed_on, _event_day(event))
    return _apply(uow, f"ChangeOverdue {event.meta.event_id}", lambda: add_fact(
        uow, clock, settings, institution_id, {
            "event_id": event.meta.event_id, "kind": "FACT_KIND_FILING_VIOLATION", "on": on,
            "basis": "001 ch.6 art.3(8)", "service": "filing",
            "summary": f"change of {event.changed_on} filed {event.days_late} days late"}))


# --- certificates ----------------------------------------------------------------------------------
def certificates_issued(event, uow, clock, settings):
    """Counts toward the ch.7 art.1(2) rewards; certificates reported late are a fact."""
    institution_id = normalize_id(event.institution_id)
    issued_on = _day(event.issued_on, _event_day(event))
    year = issued_on[:4]
    late = sum(c.late_reported_count for c in event.counts)

    def change():
        inst = institution_for(uow, institution_id)
        if late:
            add_fact(uow, clock, settings, institution_id, {
                "event_id": event.meta.event_id, "kind": "FACT_KIND_LATE_CERTIFICATE_REPORTING",
                "on": issued_on, "service": "certificates",
                "summary": f"{late} certificates of batch {event.batch_id} reported late"})
        issued = dict(inst.issued or {})
        counted = dict(issued.get(year) or {"total": 0, "by_occupation": {}, "batches": []})
        if event.batch_id in counted.get("batches", []):
            return "already counted"
        by_occupation = dict(counted["by_occupation"])
        for count in event.counts:
            by_occupation[count.occupation_code] = by_occupation.get(
                count.occupation_code, 0) + count.count
        counted = {"total": counted["total"] + sum(c.count for c in event.counts),
                   "by_occupation": by_occupation,
                   "batches": [*counted.get("batches", []), event.batch_id]}
        issued[year] = counted
        inst.issued = issued
        for key, summary in domain.rewards_due(int(year), counted["total"], by_occupation):
            if key not in (inst.rewards or ()):
                inst.rewards.append(key)
                record_entry(uow, inst, {
                    "entry_id": f"reward:{key}", "kind": "INTEGRITY_ENTRY_KIND_REWARD",
                    "summary": summary, "recorded_on": issued_on, "year": int(year),
                    "basis": "001 ch.7 art.1(2)", "source_service": "certificates",
                    "source_event_id": event.meta.event_id, "public": True}, ACTOR)
        return "counted"

    return _apply(uow, f"CertificatesIssued {event.meta.event_id}", change)


def certificates_ended(event, uow, clock, settings):
    """CertificatesInvalidated / CertificatesWithdrawn: one fact per institution named."""
    event_type = type(event).DESCRIPTOR.name
    on = _day(event.effective_on, _event_day(event))
    reason = getattr(event, "reason", 0)
    reason_name = (type(event).DESCRIPTOR.fields_by_name["reason"].enum_type
                   .values_by_number[reason].name if event_type == "CertificatesInvalidated"
                   else "INVALIDATION_REASON_DATA_WITHDRAWN")
    by_institution: dict[str, int] = {}
    for count in event.counts:
        institution_id = normalize_id(count.institution_id)
        by_institution[institution_id] = by_institution.get(institution_id, 0) + count.count

    def change():
        for institution_id, n in sorted(by_institution.items()):
            add_fact(uow, clock, settings, institution_id, {
                "event_id": event.meta.event_id, "kind": "FACT_KIND_CERTIFICATE_INVALIDATION",
                "on": on, "reason": reason_name, "decision_ref": event.decision_ref,
                "certificates": n, "service": "certificates",
                "summary": f"{n} certificates {reason_name.removeprefix('INVALIDATION_REASON_').lower()}"})
        return "applied"

    return _apply(uow, f"{event_type} {event.meta.event_id}", change)


# --- inspection's decisions ----------------------------------------------------------------------------
def sanction_decided(event, uow, clock, settings):
    """Every decision is a fact of its year; integrity_record enters it in the integrity file
    (public when published); black_list or tier 4 lists the institution on the black list."""
    institution_id = normalize_id(event.institution_id)
    if not institution_id or not event.decision_id.strip():
        log.warning("SanctionDecided %s without institution or decision: ignored",
                    event.meta.event_id)
        return "ignored"
    decided_on = _day(event.decided_on, _event_day(event))
    tier = type(event).DESCRIPTOR.fields_by_name["tier"].enum_type.values_by_number[
        event.tier].name
    decision_id = event.decision_id.strip()

    def change():
        inst = institution_for(uow, institution_id)
        add_fact(uow, clock, settings, institution_id, {
            "event_id": event.meta.event_id, "kind": "FACT_KIND_SANCTION", "on": decided_on,
            "tier": tier, "basis": event.basis, "decision_ref": decision_id,
            "summary": event.summary, "service": "inspection"}, revise=False)
        if event.integrity_record:
            record_entry(uow, inst, {
                "entry_id": f"sanction:{decision_id}", "kind": "INTEGRITY_ENTRY_KIND_SANCTION",
                "summary": f"{tier.removeprefix('SANCTION_TIER_').lower()}: {event.summary}",
                "recorded_on": decided_on, "year": int(decided_on[:4]), "basis": event.basis,
                "decision_ref": decision_id, "source_service": "inspection",
                "source_event_id": event.meta.event_id, "public": bool(event.publish)}, ACTOR)
        if domain.serious(tier, event.black_list):
            list_black(uow, settings, institution_id, inst.district_code or "",
                                 f"black:{decision_id}", event.basis, decision_id,
                                 event.summary, date.fromisoformat(decided_on),
                                 event.meta.event_id, ACTOR, source_service="inspection")
            add_fact(uow, clock, settings, institution_id, {
                "event_id": f"{event.meta.event_id}:black", "kind": "FACT_KIND_BLACK_LISTED",
                "on": decided_on, "decision_ref": decision_id, "basis": event.basis,
                "service": "inspection", "summary": "black-listed"}, revise=False)
        revise_year(uow, clock, settings, inst, int(decided_on[:4]),
                    f"decision {decision_id} (event {event.meta.event_id})")
        return "applied"

    return _apply(uow, f"SanctionDecided {event.meta.event_id}", change)


def rectification_accepted(event, uow, clock, settings):
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        return "ignored"
    on = _day(event.accepted_on, _event_day(event))

    def change():
        inst = institution_for(uow, institution_id)
        sanction = next((e for e in inst.entries or ()
                         if e.get("entry_id") == f"sanction:{event.decision_id}"), None)
        record_entry(uow, inst, {
            "entry_id": f"rectified:{event.decision_id}",
            "kind": "INTEGRITY_ENTRY_KIND_RECTIFICATION",
            "summary": f"rectification of decision {event.decision_id} accepted",
            "recorded_on": on, "year": int(on[:4]), "decision_ref": event.decision_id,
            "source_service": "inspection", "source_event_id": event.meta.event_id,
            "public": bool(sanction and sanction.get("public"))}, ACTOR)
        return "applied"

    return _apply(uow, f"RectificationAccepted {event.meta.event_id}", change)


def decision_reversed(event, uow, clock, settings):
    """What the decision caused stops: its facts no longer count (grades of their years are
    revised), its black-list entries leave publication; the file keeps all, with a REVERSAL."""
    institution_id = normalize_id(event.institution_id)
    decision_id = event.decision_id.strip()
    if not institution_id or not decision_id:
        return "ignored"
    on = _day(event.reversed_on, _event_day(event))

    def change():
        inst = institution_for(uow, institution_id)
        years = set()
        facts = []
        for fact in inst.facts or ():
            fact = dict(fact)
            if fact.get("decision_ref") == decision_id and not fact.get("reversed"):
                fact["reversed"] = on
                years.add(int(fact["on"][:4]))
            facts.append(fact)
        inst.facts = facts
        for listing in uow.repo.listings_by_decision(decision_id):
            if listing.kind == domain.BLACK and listing.state == domain.LISTED:
                listing.state, listing.removed_on = domain.REMOVED, on
                listing.removal_reason = f"decision reversed on review: {event.reason}"
                uow.emit(listing, "BlackListEntryRemoved", {
                    "institution_id": institution_id, "listing_id": listing.listing_id,
                    "reason": listing.removal_reason, "removed_on": on}, ACTOR)
                record_entry(uow, inst, {
                    "entry_id": f"{listing.listing_id}:removed",
                    "kind": "INTEGRITY_ENTRY_KIND_LIST_REMOVAL",
                    "summary": f"black list entry removed: {listing.removal_reason}",
                    "recorded_on": on, "decision_ref": decision_id,
                    "listing_id": listing.listing_id, "source_service": "inspection",
                    "source_event_id": event.meta.event_id, "public": False}, ACTOR)
        record_entry(uow, inst, {
            "entry_id": f"reversed:{decision_id}", "kind": "INTEGRITY_ENTRY_KIND_REVERSAL",
            "summary": f"decision {decision_id} reversed on review: {event.reason}",
            "recorded_on": on, "decision_ref": decision_id, "source_service": "inspection",
            "source_event_id": event.meta.event_id, "public": True}, ACTOR)
        for year in sorted(years):
            revise_year(uow, clock, settings, inst, year,
                        f"decision {decision_id} reversed on review (event "
                        f"{event.meta.event_id})")
        return "applied"

    return _apply(uow, f"DecisionReversed {event.meta.event_id}", change)


# --- escrow and courses --------------------------------------------------------------------------------
def complaint_resolved(event, uow, clock, settings):
    institution_id = normalize_id(event.institution_id)
    if not institution_id:
        return "ignored"
    on = _day(event.resolved_on, _event_day(event))
    return _apply(uow, f"ComplaintResolved {event.meta.event_id}", lambda: add_fact(
        uow, clock, settings, institution_id, {
            "event_id": event.meta.event_id, "kind": "FACT_KIND_REFUND_COMPLAINT", "on": on,
            "service": "escrow", "summary": f"refund complaint {event.complaint_id}"}))


def cheating_confirmed(event, uow, clock, settings):
    """Cheating on a course whose provider is a filed institution (its id is the provider's)."""
    provider = normalize_id(event.provider_id)
    if not provider or uow.repo.institution(provider) is None:
        return "not an institution"
    on = _day(event.confirmed_on, _event_day(event))
    return _apply(uow, f"CheatingConfirmed {event.meta.event_id}", lambda: add_fact(
        uow, clock, settings, provider, {
            "event_id": event.meta.event_id, "kind": "FACT_KIND_COURSE_CHEATING", "on": on,
            "service": "courses", "summary": f"cheating confirmed on course {event.course_id}"}))
