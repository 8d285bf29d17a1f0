"""Filing's queries. Applications and institutions are the aggregates: whatever a query hands
out for change is tracked, so the unit of work writes it. Activity (certificate counts) is
not an aggregate: it is added to by conditional upserts keyed on the event."""
from __future__ import annotations

from mongoengine.queryset.visitor import Q
from pymongo.errors import DuplicateKeyError

from services.common.repository import keyset_page
from services.common.uow import Repository
from services.filing import domain
from services.filing.models import Activity, Application, Institution

# The ids of the last events counted per occupation (a redelivery finds its id there).
ACTIVITY_EVENT_IDS_KEPT = 500


class FilingRepository(Repository):
    # --- applications ---------------------------------------------------------------------
    def application(self, application_id: str) -> Application | None:
        return self.tracked(Application, application_id) or self.track(
            Application.objects(pk=application_id).first())

    def open_application_id(self, institution_id: str) -> str:
        found = Application.objects(open_key=institution_id).only("application_id").first()
        return found.application_id if found else ""

    def applications_page(self, institution_id: str, state: str, kind: str, size: int,
                          after: str | None):
        query = Application.objects()
        if institution_id:
            query = query.filter(institution_id=institution_id)
        if state:
            query = query.filter(state=state)
        kinds = None
        if kind == domain.NEW:  # slice-era documents have no kind: they are new applications
            kinds = ("kind", (domain.NEW, None))  # one index range each, not an $or
        elif kind:
            query = query.filter(kind=kind)
        return keyset_page(query, "application_id", size, after, each_of=kinds)

    def pending_applications(self) -> list[Application]:
        """Applications waiting for acceptance or a decision (read, not changed)."""
        return list(Application.objects(state__in=[domain.RECEIVED, domain.ACCEPTED]))

    def overdue_applications(self, today_iso: str) -> list[Application]:
        """Applications whose acceptance window or supplement period ended before today."""
        return self.track_all(Application.objects(
            Q(state=domain.RECEIVED, acceptance_due__lt=today_iso)
            | Q(state=domain.SUPPLEMENT_REQUESTED, supplement_due__lt=today_iso)))

    # --- institutions ---------------------------------------------------------------------
    def institution(self, institution_id: str) -> Institution | None:
        return self.tracked(Institution, institution_id) or self.track(
            Institution.objects(pk=institution_id).first())

    def register_page(self, occupation_code: str, district_code: str, size: int,
                      after: str | None, name: str | None = None):
        query = Institution.objects()
        if name:
            query = query.filter(name__contains=name)  # a literal substring, not a pattern
        if occupation_code:
            query = query.filter(scope__occupation_code=occupation_code)
        if district_code:
            query = query.filter(district_code=district_code)
        return keyset_page(query, "filing_code", size, after,
                           each_of=("status", domain.REGISTER_STATUSES))

    def count_filed(self, other_than: str | None = None) -> int:
        """Institutions on the register (active or suspended), `other_than` not counted."""
        query = Institution.objects(status__in=domain.REGISTER_STATUSES)
        if other_than:
            query = query.filter(institution_id__ne=other_than)
        return query.count()

    def register_scopes(self, occupations: list[str] | None = None) -> list[tuple]:
        """(institution id, district code, scope) of each institution on the register, those
        filed for one of `occupations` if given."""
        query = Institution.objects(status__in=domain.REGISTER_STATUSES)
        if occupations is not None:
            query = query.filter(scope__occupation_code__in=occupations)
        return [(i.institution_id, i.district_code, list(i.scope))
                for i in query.only("institution_id", "district_code", "scope")]

    def seats_taken(self, candidates: list[str], other_than: str) -> list[str]:
        """Of the seat tokens `candidates`, those held by an institution other than `other_than`
        (read, not changed: the unique index settles a race between the read and the write)."""
        if not candidates:
            return []
        wanted = set(candidates)
        return [token for i in Institution.objects(seats__in=candidates,
                                                   institution_id__ne=other_than).only("seats")
                for token in i.seats or () if token in wanted]

    def register_rows(self, occupation_code: str | None = None) -> list[Institution]:
        """Institutions on the register (read, not changed): the quota counts, and the daily
        check of seats, which loads for change only those it must change."""
        query = Institution.objects(status__in=domain.REGISTER_STATUSES)
        if occupation_code:
            query = query.filter(scope__occupation_code=occupation_code)
        return list(query.only("institution_id", "name", "filing_code", "district_code",
                               "scope", "seats", "quota_excess"))

    def with_open_excess(self) -> list[Institution]:
        return list(Institution.objects(quota_excess__state=domain.EXCESS_AWAITING))

    def with_open_proposals(self) -> list[Institution]:
        return list(Institution.objects(proposals__state=domain.PROPOSAL_OPEN))

    def expired_ids(self, today_iso: str) -> list[str]:
        """On the register, but the last day of validity has passed."""
        return list(Institution.objects(status__in=domain.REGISTER_STATUSES,
                                        valid_until__lt=today_iso).scalar("institution_id"))

    def renewal_candidates(self, today_iso: str) -> list[tuple[str, str, str | None]]:
        """(id, valid_until, renewal_notice_for) of those on the register and valid today."""
        return [(i.institution_id, i.valid_until, i.renewal_notice_for) for i in
                Institution.objects(status__in=domain.REGISTER_STATUSES,
                                    valid_until__gte=today_iso).only(
                    "institution_id", "valid_until", "renewal_notice_for")]

    def activity_unchecked_ids(self, today_iso: str) -> list[str]:
        """Active institutions whose certificate activity was not judged today."""
        return list(Institution.objects(status=domain.ACTIVE, activity_checked_on__ne=today_iso)
                    .scalar("institution_id"))

    # --- certificate activity --------------------------------------------------------------
    def activity(self, institution_id: str) -> list[dict]:
        """Per occupation, by code: {"occupation_code", "last" (ISO date), "days" {ISO: n},
        "months" {YYYY-MM: n} (days pruned past the window)}."""
        return [{"occupation_code": a.occupation_code, "last": a.last_evaluation_on or "",
                 "days": dict(a.days or {}), "months": dict(a.months or {})}
                for a in Activity.objects(institution_id=institution_id).order_by(
                    "occupation_code")]

    def activity_to_prune(self, cutoff: str) -> list[dict]:
        """Activity documents holding a day on or before `cutoff` (or not yet marked)."""
        return [{"key": a.key, "first_day": a.first_day, "days": dict(a.days or {})}
                for a in Activity.objects(Q(first_day__lte=cutoff) | Q(first_day=None))
                .only("key", "first_day", "days")]

    def fold_activity_days(self, key: str, first_day: str | None, stale: dict, monthly: dict,
                       new_first: str | None) -> bool:
        """Move the `stale` days into the monthly summary, in one conditional write: only if
        those days still hold the counts read and no earlier day arrived meanwhile (else the
        next sweep prunes them). False when it did not apply."""
        condition = {"_id": key, "first_day": first_day,
                     **{f"days.{d}": n for d, n in stale.items()}}
        update: dict = {"$set": {"first_day": new_first}}
        if stale:
            update["$unset"] = {f"days.{d}": "" for d in stale}
            update["$inc"] = {f"months.{m}": n for m, n in monthly.items()}
        return Activity._get_collection().update_one(condition, update).modified_count == 1

    def add_activity(self, institution_id: str, occupation_code: str, days: dict, last: str,
                     event_id: str) -> None:
        """Add one event's certificates to an occupation's counts, once: a document that
        already lists the event id does not match, and its upsert hits the primary key."""
        update = {"$inc": {**{f"days.{d}": n for d, n in days.items()},
                           "total": sum(days.values())},
                  "$max": {"last_evaluation_on": last},
                  "$min": {"first_day": min(days)},
                  "$push": {"event_ids": {"$each": [event_id],
                                          "$slice": -ACTIVITY_EVENT_IDS_KEPT}},
                  "$setOnInsert": {"institution_id": institution_id,
                                   "occupation_code": occupation_code}}
        try:
            Activity._get_collection().update_one(
                {"_id": f"{institution_id}:{occupation_code}", "event_ids": {"$ne": event_id}},
                update, upsert=True)
        except DuplicateKeyError:
            pass  # this event was already counted for this occupation

    # --- counters ---------------------------------------------------------------------------
    def next_site_serial(self, province_code: str) -> int:
        """Serials are never reused: the counter only goes up, even if a filing fails after."""
        return self.next_values(f"site_serial:{province_code}")
