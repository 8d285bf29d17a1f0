"""Issue 3's scenarios through gRPC over the real broker: grpcio -> edge -> RabbitMQ -> filing.

One clocked platform serves the module: each test sets the workers' clock first and uses its
own institution numbers (1xx) and, where quotas or "sole provider" are counted, occupation
codes nobody else uses, so tests do not depend on their order. The worker's timers run every
SWEEP_INTERVAL seconds, so deemed acceptance, deemed withdrawal, expiry, RenewalDue and the
dynamic-scope proposals happen by themselves once the clock passes a date.

Rules: seed 001 ch.2 and ch.6; seed 002 §5.
"""
from __future__ import annotations

import time
import uuid
from datetime import datetime

import grpc
import pytest
import requests
from kombu import Connection, Exchange, Queue, binding

from services.common.workdays import SHANGHAI
from tests.e2e.grpc_client import Filing, status_of
from tests.platform import Platform, eventually
from tests.support import PASSED_EVALUATION, SIX_MATERIALS, application_request, material, uscc

pytestmark = pytest.mark.e2e

OK = grpc.StatusCode
OCC = "4-10-01-02"              # 育婴员, the builders' default scope
OCC_QUOTA = "4-10-01-05"        # only the quota test files this one
OCC_SOLE = "6-01-02-07"         # only the sole-provider test files these two
OCC_SHARED = "6-01-02-08"
OCC_URGENT = "4-14-02-01"       # configured as urgently needed on the module platform
SWEEP = 0.3


def occ(n: int) -> str:
    """An occupation only institution n provides: the per-occupation quota of the city
    districts (3) would otherwise make tests depend on each other."""
    return f"4-99-{n // 100:02d}-{n % 100:02d}"


class Client(Filing):
    """Filing over gRPC; ABORTED (a concurrent write, e.g. by the sweep, won the race) is
    retried, as the API asks its callers to."""

    def __getattr__(self, method: str):
        call = super().__getattr__(method)

        def retrying(request: dict | None = None, timeout: float = 10.0):
            for attempt in range(6):
                try:
                    return call(request, timeout=timeout)
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.ABORTED or attempt == 5:
                        raise
                    time.sleep(0.05)

        return retrying


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("lifecycle"), clock=True, SWEEP_INTERVAL=SWEEP,
                       FILING_URGENT_OCCUPATIONS=OCC_URGENT).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker": 0}, f"unclean shutdown {codes}:\n{started.logs()}"


def at(plat, year, month, day, hour=10, minute=0):
    """Move the workers' clock (Asia/Shanghai); let a sweep begun under the old time finish."""
    plat.set_clock(datetime(year, month, day, hour, minute, tzinfo=SHANGHAI))
    time.sleep(0.15)



def regulator(plat):
    return Client(plat.channel, "regulator")


def inst(plat, n):
    return Client(plat.channel, "institution", n)


def conditions(*occupations, since="2020-01-01", **general):
    """A declaration meeting every condition; occupations: (code, person-times in 3 years)."""
    return {
        "registered_legal_person": True, "good_credit": True, "dedicated_unit": True,
        "management_rules": True, "not_for_profit_pledge": True, **general,
        "evaluation_history_since": since,
        "occupations": [{"occupation_code": code, "premises_fit": True, "video_surveillance": True,
                         "premises_in_registered_area": True,
                         "staff_examiners_supervisors_experts": True, "question_bank": True,
                         "person_times_last_3_years": count} for code, count in occupations]}


def scope_of(*codes, levels=(5, 4, 3)):
    names = {OCC: "育婴员", OCC_QUOTA: "家政服务员", OCC_SOLE: "面包师", OCC_SHARED: "糕点师",
             OCC_URGENT: "养老护理员"}
    return [{"occupation_code": c, "occupation_name": names.get(c, "职业"),
             "skill_levels": list(levels)} for c in codes]


def submit(plat, n, district="410502", codes=None, person_times=None, **kwargs) -> dict:
    codes = codes or (occ(n),)
    request = application_request(n, district_code=district, **kwargs)
    request["scope"] = scope_of(*codes)
    if person_times is not None:
        request["conditions"] = conditions(*((c, person_times) for c in codes))
    return inst(plat, n).SubmitApplication(request)["application"]


def accept(plat, application_id) -> dict:
    return regulator(plat).AcceptApplication({"application_id": application_id,
                                              "decision": "ACCEPTANCE_DECISION_ACCEPT"})["application"]


def decide_file(plat, application_id) -> dict:
    return regulator(plat).DecideApplication({"application_id": application_id,
                                              "outcome": "DECISION_OUTCOME_FILE",
                                              "evaluation": PASSED_EVALUATION})


def file_institution(plat, n, district="410502", codes=None) -> dict:
    app = submit(plat, n, district, codes)
    accept(plat, app["application_id"])
    answer = decide_file(plat, app["application_id"])
    assert answer["application"]["state"] == "APPLICATION_STATE_FILED"
    return answer


def institution_of(plat, n) -> dict:
    return regulator(plat).GetInstitution({"institution_id": uscc(n)})["institution"]


def applications_of(plat, n) -> list:
    return regulator(plat).ListApplications({"institution_id": uscc(n)}).get("applications", [])


def pending_for(plat, application_id, **request):
    rows = regulator(plat).ListPendingDecisions(request).get("decisions", [])
    return next((d for d in rows if d["application_id"] == application_id), None)


class EventTap:
    """Collects events the filing worker publishes (exchange filing.events) while open."""

    def __init__(self, plat, *event_types):
        self.plat, self.event_types, self.bodies = plat, event_types, []

    def __enter__(self):
        self.conn = Connection(self.plat.amqp_uri).__enter__()
        exchange = Exchange("filing.events", type="topic", durable=True)
        queue = Queue(f"tap-{uuid.uuid4().hex[:8]}", exclusive=True,
                      bindings=[binding(exchange, routing_key=t) for t in self.event_types])
        self.consumer = self.conn.Consumer([queue], callbacks=[self._on_message])
        self.consumer.__enter__()
        return self

    def _on_message(self, body, message):
        self.bodies.append(body)
        message.ack()

    def wait_for(self, predicate, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [b for b in self.bodies if predicate(b)]
            if found:
                return found
            try:
                self.conn.drain_events(timeout=0.3)
            except TimeoutError:
                pass
        raise AssertionError(f"no such event among {self.bodies}")

    def __exit__(self, *exc):
        self.consumer.__exit__(*exc)
        self.conn.__exit__(*exc)


def publish_certificates_issued(plat, body: dict, times: int = 1) -> None:
    """What the certificate registry publishes after a batch (nameko's event exchange)."""
    exchange = Exchange("certificates.events", type="topic", durable=True)
    with Connection(plat.amqp_uri) as conn:
        producer = conn.Producer()
        for _ in range(times):
            producer.publish(body, exchange=exchange, routing_key="CertificatesIssued",
                             serializer="json", delivery_mode=2, declare=[exchange])


# --- the acceptance and decision clock (art.5-6) ----------------------------------------
def test_decision_deadline_across_national_day_and_make_up_day(plat):
    at(plat, 2025, 9, 26)  # Friday; Sunday 28 Sep and Saturday 11 Oct are make-up working days
    deemed = submit(plat, 101)
    assert deemed["acceptance_due"] == {"date": "2025-10-10"}  # 28, 29, 30 Sep, 9, 10 Oct
    waiting = pending_for(plat, deemed["application_id"])
    assert waiting["stage"] == "PENDING_STAGE_ACCEPTANCE" and not waiting.get("overdue")
    assert waiting["due"] == {"date": "2025-10-10"}
    # Accepted by the regulator the same Friday: 15 working days run over the holiday.
    prompt = accept(plat, submit(plat, 102, district="410503")["application_id"])
    assert prompt["accepted_by"] == "ACCEPTED_BY_REGULATOR"
    assert prompt["decision_due"] == {"date": "2025-10-23"}

    at(plat, 2025, 10, 10, 23, 59)  # the last day of the window: not yet deemed
    time.sleep(3 * SWEEP)
    assert regulator(plat).GetApplication({"application_id": deemed["application_id"]})[
        "application"]["state"] == "APPLICATION_STATE_RECEIVED"
    at(plat, 2025, 10, 11, 0, 1)  # the timer deems it accepted, dated the window's last day
    app = eventually(lambda: (lambda a: a if a["state"] == "APPLICATION_STATE_ACCEPTED" else None)(
        regulator(plat).GetApplication({"application_id": deemed["application_id"]})["application"]),
        what="deemed acceptance")
    assert app["accepted_by"] == "ACCEPTED_BY_DEEMED" and app["accepted_on"] == "2025-10-10"
    assert app["decision_due"] == {"date": "2025-10-30"}  # Saturday 11 Oct counts

    at(plat, 2025, 10, 23, 18)
    assert not pending_for(plat, prompt["application_id"]).get("overdue")
    at(plat, 2025, 10, 24)
    late = pending_for(plat, prompt["application_id"], overdue_only=True)
    assert late["overdue"] is True and late["working_days_overdue"] == 1
    assert late["stage"] == "PENDING_STAGE_DECISION" and late["due"] == {"date": "2025-10-23"}
    on_time = pending_for(plat, app["application_id"])
    assert on_time["stage"] == "PENDING_STAGE_DECISION" and not on_time.get("overdue")
    assert pending_for(plat, app["application_id"], overdue_only=True) is None
    at(plat, 2025, 10, 31)
    late = pending_for(plat, app["application_id"], overdue_only=True)
    assert late["working_days_overdue"] == 1 and late["due"] == {"date": "2025-10-30"}
    assert pending_for(plat, prompt["application_id"], overdue_only=True)[
        "working_days_overdue"] == 6  # 24, 27, 28, 29, 30, 31 Oct
    # A late decision is still the regulator's to make; it files.
    assert decide_file(plat, app["application_id"])["receipt"]["filed_on"] == "2025-10-31"


def test_supplement_notice_once_new_day_of_receipt_and_deemed_withdrawal(plat):
    at(plat, 2025, 9, 15)
    me = inst(plat, 103)
    app = submit(plat, 103, materials=SIX_MATERIALS[:3])
    missing = list(SIX_MATERIALS[3:])
    assert app["missing_materials"] == missing
    code, details = status_of(regulator(plat).RequestSupplement,
                              {"application_id": app["application_id"],
                               "missing_materials": missing[:1]})
    assert code == OK.INVALID_ARGUMENT and "the notice must list every missing material" in details
    assert "supplement" not in regulator(plat).GetApplication(
        {"application_id": app["application_id"]})["application"]  # nothing stored
    notice = regulator(plat).RequestSupplement({"application_id": app["application_id"],
                                                "missing_materials": missing})["application"]
    assert notice["state"] == "APPLICATION_STATE_SUPPLEMENT_REQUESTED"
    assert notice["supplement"]["due_on"] == "2025-10-15"
    code, details = status_of(regulator(plat).RequestSupplement,
                              {"application_id": app["application_id"],
                               "other_items": ["one more thing"]})
    assert code == OK.FAILED_PRECONDITION and "cannot request a supplement" in details
    at(plat, 2025, 9, 29)  # the supplement completes: the new day of receipt, across the holiday
    done = me.SupplementApplication({"application_id": app["application_id"],
                                     "materials": [material(k) for k in missing]})["application"]
    assert done["state"] == "APPLICATION_STATE_RECEIVED" and done["received_on"] == "2025-09-29"
    assert done["acceptance_due"] == {"date": "2025-10-13"}  # 30 Sep, 9, 10, 11 (make-up), 13 Oct

    # Another applicant never supplements: deemed withdrawn after 30 days, by the timer.
    at(plat, 2025, 9, 15)
    other = submit(plat, 104, materials=SIX_MATERIALS[:5])
    regulator(plat).RequestSupplement({"application_id": other["application_id"],
                                       "missing_materials": [SIX_MATERIALS[5]]})
    at(plat, 2025, 10, 15, 23)
    time.sleep(3 * SWEEP)
    assert regulator(plat).GetApplication({"application_id": other["application_id"]})[
        "application"]["state"] == "APPLICATION_STATE_SUPPLEMENT_REQUESTED"
    at(plat, 2025, 10, 16)
    gone = eventually(lambda: (lambda a: a if a["state"] != "APPLICATION_STATE_SUPPLEMENT_REQUESTED"
                               else None)(regulator(plat).GetApplication(
                                   {"application_id": other["application_id"]})["application"]),
                      what="deemed withdrawal")
    assert gone["state"] == "APPLICATION_STATE_WITHDRAWN"
    assert "deemed withdrawn" in gone["reasons"][0]
    code, details = status_of(inst(plat, 104).SupplementApplication,
                              {"application_id": other["application_id"],
                               "materials": [material(SIX_MATERIALS[5])]})
    assert code == OK.FAILED_PRECONDITION


# --- quotas and selection (ch.6 art.5) ---------------------------------------------------
def test_fourth_applicant_for_an_occupation_in_the_city_districts(plat):
    at(plat, 2025, 9, 15)
    for n, district in ((111, "410502"), (112, "410503"), (113, "410505")):
        file_institution(plat, n, district, (OCC_QUOTA,))
    fourth = accept(plat, submit(plat, 114, "410506", (OCC_QUOTA,), 2500)["application_id"])
    fifth = accept(plat, submit(plat, 115, "410502", (OCC_QUOTA,), 3000)["application_id"])
    standing = pending_for(plat, fourth["application_id"])
    assert standing["quota"] == [{"occupation_code": OCC_QUOTA, "area": "district", "limit": 3,
                                  "filed": 3, "rank": 2, "competitors": 2}]
    quota_reason = f"quota: occupation {OCC_QUOTA} already has 3 institutions in the city " \
                   "districts (at most 3)"
    assert standing["blockers"] == [quota_reason]
    assert pending_for(plat, fifth["application_id"])["quota"][0]["rank"] == 1  # more evaluated

    code, details = status_of(regulator(plat).DecideApplication,
                              {"application_id": fourth["application_id"],
                               "outcome": "DECISION_OUTCOME_FILE", "evaluation": PASSED_EVALUATION})
    assert code == OK.FAILED_PRECONDITION and details == f"cannot file: {quota_reason}"
    # Nothing stored: still awaiting a decision, no institution, the register unchanged.
    still = regulator(plat).GetApplication({"application_id": fourth["application_id"]})["application"]
    assert still["state"] == "APPLICATION_STATE_ACCEPTED" and "filing_code" not in still
    assert status_of(regulator(plat).GetInstitution, {"institution_id": uscc(114)})[0] == OK.NOT_FOUND
    register = Client(plat.channel).ListRegister({"occupation_code": OCC_QUOTA})["entries"]
    assert len(register) == 3
    # The regulator refuses in writing with the reason.
    refused = regulator(plat).DecideApplication({"application_id": fourth["application_id"],
                                                 "outcome": "DECISION_OUTCOME_REFUSE",
                                                 "reasons": [quota_reason]})["application"]
    assert refused["state"] == "APPLICATION_STATE_REFUSED" and refused["reasons"] == [quota_reason]

    # A county has a quota of its own: 2 per occupation.
    file_institution(plat, 116, "410522", (OCC_QUOTA,))
    file_institution(plat, 117, "410522", (OCC_QUOTA,))
    third = accept(plat, submit(plat, 118, "410522", (OCC_QUOTA,))["application_id"])
    code, details = status_of(regulator(plat).DecideApplication,
                              {"application_id": third["application_id"],
                               "outcome": "DECISION_OUTCOME_FILE", "evaluation": PASSED_EVALUATION})
    assert code == OK.FAILED_PRECONDITION
    assert f"occupation {OCC_QUOTA} already has 2 institutions in county 410522 (at most 2)" in details
    # Another county is not affected by that one.
    file_institution(plat, 119, "410523", (OCC_QUOTA,))
    # The public register, paged.
    first = Client(plat.channel).ListRegister({"occupation_code": OCC_QUOTA, "page": {"page_size": 4}})
    rest = Client(plat.channel).ListRegister({"occupation_code": OCC_QUOTA, "page": {
        "page_size": 4, "page_token": first["page"]["next_page_token"]}})
    codes = [e["receipt"]["filing_code"] for e in first["entries"] + rest["entries"]]
    assert len(codes) == 6 == len(set(codes)) and "next_page_token" not in rest.get("page", {})
    assert all(c.startswith("S000041") and len(c) == 13 for c in codes)


def test_city_wide_quota_is_configured_per_year(fresh_platform):
    plat = fresh_platform(clock=True, FILING_CITY_QUOTA='{"default": 40, "2025": 1}')
    at(plat, 2025, 9, 15)
    file_institution(plat, 1)
    second = accept(plat, submit(plat, 2, "410522")["application_id"])
    pending = regulator(plat).ListPendingDecisions({})
    assert pending["city_quota"] == 1 and pending["city_filed"] == 1
    code, details = status_of(regulator(plat).DecideApplication,
                              {"application_id": second["application_id"],
                               "outcome": "DECISION_OUTCOME_FILE", "evaluation": PASSED_EVALUATION})
    assert code == OK.FAILED_PRECONDITION
    assert "the city-wide quota of 1 institutions is reached (1 filed)" in details
    at(plat, 2026, 1, 5)  # a new year, the default quota again
    assert regulator(plat).ListPendingDecisions({})["city_quota"] == 40
    assert decide_file(plat, second["application_id"])["application"]["state"] == \
        "APPLICATION_STATE_FILED"


# --- conditions, scope changes, urgent occupations (ch.2 art.2, art.8) -------------------
def test_unmet_conditions_block_filing_and_urgent_occupations_are_relaxed(plat):
    at(plat, 2025, 9, 15)
    weak = accept(plat, submit(plat, 121, person_times=600)["application_id"])
    assert weak["unmet_conditions"] == [
        f"{occ(121)}: condition (七) not met: 600 person-times in 3 years, under 2000"]
    code, details = status_of(regulator(plat).DecideApplication,
                              {"application_id": weak["application_id"],
                               "outcome": "DECISION_OUTCOME_FILE", "evaluation": PASSED_EVALUATION})
    assert code == OK.FAILED_PRECONDITION and "600 person-times in 3 years, under 2000" in details
    urgent = submit(plat, 122, codes=(OCC_URGENT,), person_times=600)
    assert "unmet_conditions" not in urgent  # relaxed: 500 suffice for an urgent occupation
    request = application_request(123)
    request["conditions"] = conditions((OCC, 2500), since="2024-01-01")
    young = inst(plat, 123).SubmitApplication(request)["application"]
    assert young["unmet_conditions"] == ["condition (七) not met: training-evaluation history "
                                         "since 2024-01-01 is under 3 years"]


def test_scope_change_is_evaluated_like_a_new_application(plat):
    at(plat, 2025, 9, 15)
    filed = file_institution(plat, 124)
    me = inst(plat, 124)
    service = Client(plat.channel, "service")
    right = {"institution_id": uscc(124), "occupation_code": OCC_URGENT, "skill_level": 5,
             "on_date": "2025-09-20"}
    at(plat, 2025, 9, 16)
    answer = me.FileChange({"request_id": "scope-1", "institution_id": uscc(124),
                            "kind": "CHANGE_KIND_SCOPE", "scope": scope_of(occ(124), OCC_URGENT),
                            "materials": [material(k) for k in SIX_MATERIALS],
                            "conditions": conditions((occ(124), 2500), (OCC_URGENT, 600))})
    app = answer["application"]
    assert app["kind"] == "APPLICATION_KIND_SCOPE_CHANGE" and "unmet_conditions" not in app
    assert app["filing_code_before"] == filed["receipt"]["filing_code"]
    assert app["acceptance_due"] == {"date": "2025-09-23"}  # the same clock as a new one
    assert service.CheckEvaluationRight(right)["denial"] == "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE"
    accept(plat, app["application_id"])
    at(plat, 2025, 9, 19)
    decided = decide_file(plat, app["application_id"])
    assert decided["receipt"]["filing_code"] == filed["receipt"]["filing_code"]
    assert [s["occupation_code"] for s in decided["receipt"]["scope"]] == [occ(124), OCC_URGENT]
    assert service.CheckEvaluationRight(right)["allowed"] is True
    assert service.CheckEvaluationRight({**right, "on_date": "2025-09-18"})["denial"] == \
        "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE"  # not before the change took effect


# --- changes within 30 days (ch.2 art.8) ---------------------------------------------------
def test_change_filed_on_day_31_is_a_violation_day_30_is_not(plat):
    at(plat, 2025, 9, 15)
    file_institution(plat, 131)
    me = inst(plat, 131)
    with EventTap(plat, "ChangeOverdue", "DetailsChanged") as tap:
        at(plat, 2025, 10, 31)  # day 30 after 1 October
        on_time = me.FileChange({"request_id": "c1", "institution_id": uscc(131),
                                 "kind": "CHANGE_KIND_DETAILS", "legal_representative": "李四",
                                 "changed_on": "2025-10-01"})
        assert not on_time.get("late") and "violations" not in on_time["institution"]
        at(plat, 2025, 11, 1)  # day 31
        change = {"request_id": "c2", "institution_id": uscc(131), "kind": "CHANGE_KIND_DETAILS",
                  "address": "河南省安阳市文峰区新地址8号", "changed_on": "2025-10-01"}
        late = me.FileChange(change)
        assert late["late"] is True
        overdue = tap.wait_for(lambda b: b.get("institution_id") == uscc(131)
                               and "days_late" in b)
        tap.wait_for(lambda b: b.get("institution_id") == uscc(131)
                     and b.get("changed_fields") == ["address"])
    assert len(overdue) == 1
    event = overdue[0]
    assert event["meta"]["event_id"] and event["changed_on"] == "2025-10-01"
    assert event["due_on"] == "2025-10-31" and event["filed_on"] == "2025-11-01"
    assert event["days_late"] == 1
    recorded = institution_of(plat, 131)
    assert recorded["address"] == "河南省安阳市文峰区新地址8号"
    assert recorded["legal_representative"] == "李四"
    assert [(v["kind"], v["ref"], v["recorded_on"]) for v in recorded["violations"]] == [
        ("CHANGE_OVERDUE", "c2", "2025-11-01")]
    assert "1 days after the 30 days ending 2025-10-31" in recorded["violations"][0]["description"]
    # The same change again (a retry) answers the same and records nothing more.
    assert me.FileChange(change)["late"] is True
    assert len(institution_of(plat, 131)["violations"]) == 1
    # Counted once published; the tap may see the event a moment before the count moves.
    counted = 'vocreg_events_total{event_type="ChangeOverdue"} 1.0'
    eventually(lambda: counted in requests.get(
        f"http://localhost:{plat.worker_metrics_port}/metrics", timeout=5).text,
        timeout=15, what="ChangeOverdue counted")


# --- validity and renewal (ch.2 art.9) -------------------------------------------------------
def test_renewal_29_days_before_expiry_refused_30_accepted_and_expiry_by_the_sweep(plat):
    at(plat, 2025, 9, 15)
    receipt = file_institution(plat, 141)["receipt"]
    assert receipt["filed_on"] == "2025-09-15" and receipt["valid_until"] == "2028-09-14"
    me = inst(plat, 141)
    request = {"request_id": "renew-1", "institution_id": uscc(141),
               "materials": [material(k) for k in SIX_MATERIALS]}
    with EventTap(plat, "RenewalDue", "FilingExpired") as tap:
        at(plat, 2028, 8, 16)  # 29 days before 14 September
        due = tap.wait_for(lambda b: b.get("institution_id") == uscc(141) and "apply_by" in b)
        assert due[0]["apply_by"] == "2028-08-15" and due[0]["valid_until"] == "2028-09-14"
        code, details = status_of(me.ApplyRenewal, request)
        assert code == OK.FAILED_PRECONDITION
        assert "at least 30 days before expiry (by 2028-08-15)" in details and "29 days" in details
        assert len(applications_of(plat, 141)) == 1  # nothing stored

        at(plat, 2028, 8, 15)  # 30 days before
        answer = me.ApplyRenewal(request)
        assert answer["apply_by"] == "2028-08-15"
        app = answer["application"]
        assert app["kind"] == "APPLICATION_KIND_RENEWAL"
        accept(plat, app["application_id"])
        renewed = decide_file(plat, app["application_id"])["receipt"]
        assert renewed["valid_until"] == "2031-09-14"
        assert renewed["filing_code"] == receipt["filing_code"]

        at(plat, 2031, 9, 14, 23, 59)
        time.sleep(3 * SWEEP)
        assert institution_of(plat, 141)["status"] == "INSTITUTION_STATUS_ACTIVE"
        at(plat, 2031, 9, 15)
        tap.wait_for(lambda b: b.get("institution_id") == uscc(141) and "filing_code" in b
                     and b.get("valid_until") == "2031-09-14")
    gone = institution_of(plat, 141)
    assert gone["status"] == "INSTITUTION_STATUS_EXPIRED"
    assert gone["status_reason"] == "validity ended on 2031-09-14"
    service = Client(plat.channel, "service")
    ask = {"institution_id": uscc(141), "occupation_code": occ(141), "skill_level": 4}
    assert service.CheckEvaluationRight({**ask, "on_date": "2031-09-14"})["allowed"] is True
    assert service.CheckEvaluationRight({**ask, "on_date": "2031-09-15"})["denial"] == \
        "EVALUATION_DENIAL_EXPIRED"
    register = Client(plat.channel).ListRegister({}).get("entries", [])
    assert receipt["filing_code"] not in [e["receipt"]["filing_code"] for e in register]
    code, details = status_of(me.ApplyRenewal, {**request, "request_id": "renew-2"})
    assert code == OK.FAILED_PRECONDITION and "the filing is expired; apply anew" in details


# --- dynamic scope (ch.6 art.4 (七), art.6) ---------------------------------------------------
def test_sole_provider_is_not_proposed_for_removal_an_idle_shared_one_is(plat):
    at(plat, 2025, 9, 15)
    file_institution(plat, 151, "410502", (OCC_SOLE, OCC_SHARED))
    file_institution(plat, 152, "410503", (OCC_SHARED,))
    at(plat, 2026, 6, 2)
    event = {"meta": {"event_id": uuid.uuid4().hex, "source": "certificates"},
             "batch_id": uuid.uuid4().hex, "institution_id": uscc(152),
             "assessment_date": "2026-06-01", "total": 600,
             "counts": [{"occupation_code": OCC_SHARED, "skill_level": 4, "count": 600,
                         "assessment_date": "2026-06-01"}]}
    publish_certificates_issued(plat, event, times=2)  # a redelivery counts once
    activity = eventually(lambda: institution_of(plat, 152).get("activity"), what="activity")
    time.sleep(0.5)  # the redelivery has been handled too
    assert institution_of(plat, 152)["activity"] == [
        {"occupation_code": OCC_SHARED, "last_evaluation_on": "2026-06-01",
         "count_12_months": 600}], activity

    at(plat, 2026, 9, 16)  # 12 months and a day after filing: the sweep proposes
    busy = eventually(lambda: institution_of(plat, 151).get("proposals"), what="proposals")
    time.sleep(3 * SWEEP)  # later sweeps add nothing while these are open
    idle = institution_of(plat, 151)
    kinds = sorted((p["kind"], p.get("occupation_code", "")) for p in idle["proposals"])
    # Both occupations are idle, but 151 is the only provider of OCC_SOLE: not proposed.
    assert kinds == [("PROPOSAL_KIND_SCOPE_REMOVAL", OCC_SHARED), ("PROPOSAL_KIND_TERMINATION", "")], busy
    removal = next(p for p in idle["proposals"] if p["kind"] == "PROPOSAL_KIND_SCOPE_REMOVAL")
    assert removal["state"] == "PROPOSAL_STATE_OPEN" and removal["proposed_on"] == "2026-09-16"
    assert "no evaluation for 12 consecutive months" in removal["grounds"][0]
    assert [s["occupation_code"] for s in idle["scope"]] == [OCC_SOLE, OCC_SHARED]  # not silently
    assert "proposals" not in institution_of(plat, 152)  # 600 in 12 months: nothing to propose
    in_tray = [p for p in regulator(plat).ListPendingDecisions({}).get("proposals", [])
               if p["institution_id"] == uscc(151)]
    assert len(in_tray) == 2

    after = regulator(plat).DecideProposal({"institution_id": uscc(151),
                                            "proposal_id": removal["proposal_id"],
                                            "outcome": "PROPOSAL_OUTCOME_APPROVE",
                                            "reason": "idle for 12 months", "decision_ref": "D-151"})
    assert [s["occupation_code"] for s in after["institution"]["scope"]] == [OCC_SOLE]
    termination = next(p for p in after["institution"]["proposals"]
                       if p["kind"] == "PROPOSAL_KIND_TERMINATION")
    dismissed = regulator(plat).DecideProposal({"institution_id": uscc(151),
                                                "proposal_id": termination["proposal_id"],
                                                "outcome": "PROPOSAL_OUTCOME_DISMISS",
                                                "reason": "flood closed the site (good reason)",
                                                "decision_ref": "D-152"})["institution"]
    assert dismissed["status"] == "INSTITUTION_STATUS_ACTIVE"
    assert Client(plat.channel, "service").CheckEvaluationRight(
        {"institution_id": uscc(151), "occupation_code": OCC_SHARED, "skill_level": 4,
         "on_date": "2026-09-16"})["denial"] == "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE"
    code, _ = status_of(regulator(plat).DecideProposal,
                        {"institution_id": uscc(151), "proposal_id": removal["proposal_id"],
                         "outcome": "PROPOSAL_OUTCOME_APPROVE", "reason": "again",
                         "decision_ref": "D-153"})
    assert code == OK.FAILED_PRECONDITION


# --- status and the right to evaluate (ch.6 art.3-4) -------------------------------------
def test_suspend_reinstate_terminate_and_evaluation_right_says_why_not(plat):
    at(plat, 2025, 9, 15)
    filing_code = file_institution(plat, 161)["receipt"]["filing_code"]
    service = Client(plat.channel, "service")
    ask = {"institution_id": uscc(161), "occupation_code": occ(161), "skill_level": 4}
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-09-15"}) == {
        "allowed": True, "filing_code": filing_code, "status": "INSTITUTION_STATUS_ACTIVE",
        "valid_until": "2028-09-14"}
    before = service.CheckEvaluationRight({**ask, "on_date": "2025-09-14"})
    assert before["denial"] == "EVALUATION_DENIAL_BEFORE_FILING"
    assert before["reason"] == "2025-09-14 is before the filing on 2025-09-15"
    level = service.CheckEvaluationRight({**ask, "skill_level": 1, "on_date": "2025-09-15"})
    assert level["denial"] == "EVALUATION_DENIAL_LEVEL_OUT_OF_SCOPE" and "levels 3, 4, 5" in level["reason"]
    other = service.CheckEvaluationRight({**ask, "occupation_code": "6-01-02-03",
                                          "on_date": "2025-09-15"})
    assert other["denial"] == "EVALUATION_DENIAL_OCCUPATION_OUT_OF_SCOPE"
    assert service.CheckEvaluationRight({**ask, "institution_id": uscc(169),
                                         "on_date": "2025-09-15"}) == {
        "reason": "the institution is not filed", "denial": "EVALUATION_DENIAL_NOT_FILED"}

    at(plat, 2025, 10, 9)
    suspended = regulator(plat).SuspendInstitution({"institution_id": uscc(161),
                                                    "reason": "rectification",
                                                    "decision_ref": "安人社〔2025〕1号"})["institution"]
    assert suspended["status"] == "INSTITUTION_STATUS_SUSPENDED"
    assert suspended["status_reason"] == "rectification"
    answer = service.CheckEvaluationRight({**ask, "on_date": "2025-10-09"})
    assert answer["denial"] == "EVALUATION_DENIAL_SUSPENDED"
    assert answer["reason"] == "evaluation is suspended since 2025-10-09: rectification"
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-10-08"})["allowed"] is True
    # Still in the public register while suspended, with its status.
    entry = next(e for e in Client(plat.channel).ListRegister({"occupation_code": occ(161),
                                                               "page": {"page_size": 100}})["entries"]
                 if e["receipt"]["filing_code"] == filing_code)
    assert entry["status"] == "INSTITUTION_STATUS_SUSPENDED"
    code, details = status_of(regulator(plat).SuspendInstitution,
                              {"institution_id": uscc(161), "reason": "r", "decision_ref": "d"})
    assert code == OK.FAILED_PRECONDITION and details == "cannot suspend: the institution is suspended"

    at(plat, 2025, 10, 20)
    regulator(plat).ReinstateInstitution({"institution_id": uscc(161), "reason": "rectified",
                                          "decision_ref": "安人社〔2025〕2号"})
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-10-20"})["allowed"] is True
    assert service.CheckEvaluationRight({**ask, "on_date": "2025-10-19"})["denial"] == \
        "EVALUATION_DENIAL_SUSPENDED"  # the status in force on the date decides
    at(plat, 2025, 11, 3)
    ended = regulator(plat).TerminateFiling({"institution_id": uscc(161),
                                             "reason": "false materials",
                                             "decision_ref": "安人社〔2025〕3号"})["institution"]
    assert ended["status"] == "INSTITUTION_STATUS_TERMINATED"
    assert [(h["status"], h.get("decision_ref", ""), h["effective_on"]) for h in ended["history"]] == [
        ("INSTITUTION_STATUS_ACTIVE", ended["application_id"], "2025-09-15"),
        ("INSTITUTION_STATUS_SUSPENDED", "安人社〔2025〕1号", "2025-10-09"),
        ("INSTITUTION_STATUS_ACTIVE", "安人社〔2025〕2号", "2025-10-20"),
        ("INSTITUTION_STATUS_TERMINATED", "安人社〔2025〕3号", "2025-11-03")]
    answer = service.CheckEvaluationRight({**ask, "on_date": "2025-11-03"})
    assert answer["denial"] == "EVALUATION_DENIAL_TERMINATED"
    assert answer["reason"] == "the filing was terminated on 2025-11-03: false materials"
    for call in (regulator(plat).ReinstateInstitution, regulator(plat).SuspendInstitution,
                 regulator(plat).TerminateFiling):
        code, details = status_of(call, {"institution_id": uscc(161), "reason": "r",
                                         "decision_ref": "d"})
        assert code == OK.FAILED_PRECONDITION and "the institution is terminated" in details
    code, details = status_of(inst(plat, 161).FileChange,
                              {"request_id": "after", "institution_id": uscc(161),
                               "kind": "CHANGE_KIND_DETAILS", "legal_representative": "王五",
                               "changed_on": "2025-11-01"})
    assert code == OK.FAILED_PRECONDITION and "the filing is terminated" in details
    register = Client(plat.channel).ListRegister({"occupation_code": occ(161)})
    assert filing_code not in [e["receipt"]["filing_code"] for e in register.get("entries", [])]


# --- names (seed 002 §5) ----------------------------------------------------------------
def test_check_name_is_public_and_names_the_prohibited_words(plat):
    anyone = Client(plat.channel)  # no token at all
    answer = anyone.CheckName({"name": "国家职业技能鉴定中心"})
    assert not answer.get("acceptable")
    assert answer["prohibited_words"] == ["国家", "职业技能鉴定"]
    assert answer["problems"] == ["uses prohibited words 国家, 职业技能鉴定 (seed 002 §5)"]
    for word in ("中华人民共和国", "中国", "中华", "国家", "全国", "职业资格", "人员资格",
                 "职业技能鉴定", "包过", "保过"):
        assert word in anyone.CheckName({"name": f"安阳{word}培训中心"})["prohibited_words"], word
    assert anyone.CheckName({"name": "安阳市育婴培训评价中心"}) == {"acceptable": True}
    assert status_of(anyone.CheckName, {"name": "  "}) == (OK.INVALID_ARGUMENT, "name: required")
    # A prohibited name is refused at submission, and nothing is stored.
    at(plat, 2025, 9, 15)
    code, details = status_of(inst(plat, 171).SubmitApplication,
                              application_request(171, name="全国保过培训中心"))
    assert code == OK.INVALID_ARGUMENT
    assert details == "institution.name: uses prohibited words 全国, 保过 (seed 002 §5)"
    assert applications_of(plat, 171) == []


# --- authorisation ------------------------------------------------------------------------
def test_an_institution_sees_and_changes_only_its_own(plat):
    at(plat, 2025, 9, 15)
    filed = file_institution(plat, 172)
    other = inst(plat, 173)
    mine = {"institution_id": uscc(172)}
    for call, request in (
            (other.GetInstitution, mine),
            (other.GetApplication, {"application_id": filed["application"]["application_id"]}),
            (other.ListApplications, mine),
            (other.CheckEvaluationRight, {**mine, "occupation_code": OCC, "skill_level": 4,
                                          "on_date": "2025-09-15"}),
            (other.FileChange, {**mine, "request_id": "x", "kind": "CHANGE_KIND_DETAILS",
                                "name": "安阳新名字培训中心", "changed_on": "2025-09-15"}),
            (other.ApplyRenewal, {**mine, "request_id": "x"})):
        code, details = status_of(call, request)
        assert code == OK.PERMISSION_DENIED, (request, code)
        assert "another institution" in details or "only its own" in details, details
    # Decisions are the regulator's; the in-tray too.
    for call, request in ((other.SuspendInstitution, {**mine, "reason": "r", "decision_ref": "d"}),
                          (other.TerminateFiling, {**mine, "reason": "r", "decision_ref": "d"}),
                          (other.ListPendingDecisions, {}),
                          (inst(plat, 172).AcceptApplication, {"application_id": "x"})):
        assert status_of(call, request)[0] == OK.PERMISSION_DENIED
    assert status_of(regulator(plat).FileChange, {**mine, "request_id": "x"})[0] == \
        OK.PERMISSION_DENIED
    assert status_of(Client(plat.channel).GetInstitution, mine)[0] == OK.UNAUTHENTICATED
    # Nothing changed; the owner and an inspector read it.
    own = inst(plat, 172).GetInstitution(mine)["institution"]
    assert own["name"] == application_request(172)["institution"]["name"]
    assert own["status"] == "INSTITUTION_STATUS_ACTIVE" and len(own["history"]) == 1
    assert Client(plat.channel, "inspector").GetInstitution(mine)["institution"]["filing_code"] == \
        filed["receipt"]["filing_code"]
    assert not inst(plat, 173).ListApplications({}).get("applications")


# --- bad input and unknown ids ------------------------------------------------------------
def test_bad_inputs_are_answered_precisely_with_nothing_stored(plat):
    at(plat, 2025, 9, 15)
    me = inst(plat, 181)
    bad = application_request(181, name="中国第一培训包过中心")
    bad["request_id"] = ""
    bad["institution"]["district_code"] = "110101"
    bad["scope"] = [{"occupation_code": "4-10-1", "occupation_name": "育婴员", "skill_levels": [9]}]
    bad["materials"] = [{"kind": "MATERIAL_KIND_WORK_PLAN", "document_uri": "", "sha256": "x"}]
    code, details = status_of(me.SubmitApplication, bad)
    assert code == OK.INVALID_ARGUMENT
    assert details.split("; ") == [
        "request_id: required, 1-64 of A-Z a-z 0-9 . _ : -",
        "institution.name: uses prohibited words 中国, 包过 (seed 002 §5)",
        "institution.district_code: 110101 is not a district or county of this city",
        "scope[0].occupation_code: must look like 4-10-01-02",
        "scope[0].skill_levels: [9] not in 1-5",
        "materials[0].document_uri: required",
        "materials[0].sha256: must be 64 hex characters",
    ]
    with_conditions = application_request(181)
    with_conditions["conditions"] = {"evaluation_history_since": "2025-02-30",
                                     "occupations": [{"occupation_code": "9-99-99-99"}]}
    code, details = status_of(me.SubmitApplication, with_conditions)
    assert code == OK.INVALID_ARGUMENT and details.split("; ") == [
        "conditions.evaluation_history_since: 2025-02-30 is not a calendar date",
        "conditions.occupations[0].occupation_code: 9-99-99-99 is not in the scope applied for",
        f"conditions.occupations: no entry for {OCC}"]
    assert applications_of(plat, 181) == []  # nothing stored under either request

    app = submit(plat, 181)  # the same request_id as the refused ones
    ref = {"application_id": app["application_id"]}
    for call, request, expected in (
            (regulator(plat).AcceptApplication, ref,
             "decision: must be ACCEPTANCE_DECISION_ACCEPT or ACCEPTANCE_DECISION_NOT_ACCEPT"),
            (regulator(plat).AcceptApplication, {**ref, "decision": "ACCEPTANCE_DECISION_NOT_ACCEPT"},
             "reasons: at least one reason is required"),
            (regulator(plat).AcceptApplication, {"decision": "ACCEPTANCE_DECISION_ACCEPT"},
             "application_id: required"),
            (regulator(plat).RequestSupplement, ref,
             "missing_materials/other_items: a notice must name at least one item"),
    ):
        assert status_of(call, request) == (OK.INVALID_ARGUMENT, expected), expected
    unchanged = regulator(plat).GetApplication(ref)["application"]
    assert unchanged["state"] == "APPLICATION_STATE_RECEIVED" and "reasons" not in unchanged
    assert "supplement" not in unchanged
    accept(plat, app["application_id"])
    assert status_of(regulator(plat).DecideApplication, {**ref, "outcome": "DECISION_OUTCOME_REFUSE"}) \
        == (OK.INVALID_ARGUMENT, "a refusal is given in writing with reasons: "
                                 "reasons: at least one reason is required")
    assert status_of(regulator(plat).DecideApplication, ref) == (
        OK.INVALID_ARGUMENT, "outcome: must be DECISION_OUTCOME_FILE or DECISION_OUTCOME_REFUSE")
    code, details = status_of(regulator(plat).DecideApplication, {
        **ref, "outcome": "DECISION_OUTCOME_FILE",
        "evaluation": {**PASSED_EVALUATION, "site_visit_passed": False}})
    assert code == OK.FAILED_PRECONDITION and details == \
        "cannot file: the technical evaluation has not passed site_visit_passed"
    assert regulator(plat).GetApplication(ref)["application"]["state"] == "APPLICATION_STATE_ACCEPTED"
    assert status_of(regulator(plat).GetInstitution, {"institution_id": uscc(181)})[0] == OK.NOT_FOUND
    decide_file(plat, app["application_id"])

    mine = {"institution_id": uscc(181)}
    code, details = status_of(me.FileChange, {**mine, "request_id": "c1",
                                              "kind": "CHANGE_KIND_DETAILS", "name": "全国培训中心",
                                              "changed_on": "2099-01-01"})
    assert code == OK.INVALID_ARGUMENT and details == (
        "name: uses prohibited words 全国 (seed 002 §5); "
        "changed_on: 2099-01-01 is in the future; file a change once it happened")
    assert status_of(me.FileChange, {**mine, "request_id": "c1"}) == (
        OK.INVALID_ARGUMENT, "kind: must be CHANGE_KIND_DETAILS or CHANGE_KIND_SCOPE")
    code, details = status_of(me.FileChange, {**mine, "request_id": "c2", "kind": "CHANGE_KIND_SCOPE",
                                              "scope": scope_of(occ(181))})
    assert code == OK.INVALID_ARGUMENT and details == "scope: the same as the filed scope"
    code, details = status_of(me.ApplyRenewal, {**mine, "request_id": "bad id!",
                                                "materials": [{"kind": "MATERIAL_KIND_WORK_PLAN"}]})
    assert code == OK.INVALID_ARGUMENT and details.split("; ") == [
        "request_id: required, 1-64 of A-Z a-z 0-9 . _ : -",
        "materials[0].document_uri: required", "materials[0].sha256: must be 64 hex characters"]
    assert status_of(regulator(plat).SuspendInstitution, mine) == (
        OK.INVALID_ARGUMENT, "reason: required; decision_ref: required (the decision's document number)")
    code, details = status_of(regulator(plat).CheckEvaluationRight,
                              {"occupation_code": "x", "skill_level": 7, "on_date": "2025/10/01"})
    assert code == OK.INVALID_ARGUMENT and details.split("; ") == [
        "institution_id: required", "occupation_code: must look like 4-10-01-02",
        "skill_level: must be 1-5", "on_date: must be a date YYYY-MM-DD"]
    code, details = status_of(regulator(plat).DecideProposal, {})
    assert code == OK.INVALID_ARGUMENT and details.startswith("institution_id: required; proposal_id")
    # Nothing of that was stored.
    after = institution_of(plat, 181)
    assert after["name"] == application_request(181)["institution"]["name"]
    assert after["status"] == "INSTITUTION_STATUS_ACTIVE" and len(after["history"]) == 1
    assert "violations" not in after and "proposals" not in after
    assert [a["kind"] for a in applications_of(plat, 181)] == ["APPLICATION_KIND_NEW"]


def test_unknown_ids_are_not_found(plat):
    at(plat, 2025, 9, 15)
    reg = regulator(plat)
    nobody = {"application_id": "no-such-application"}
    for call, request in ((reg.GetApplication, nobody),
                          (reg.AcceptApplication, {**nobody, "decision": "ACCEPTANCE_DECISION_ACCEPT"}),
                          (reg.RequestSupplement, {**nobody, "other_items": ["x"]}),
                          (reg.DecideApplication, {**nobody, "outcome": "DECISION_OUTCOME_FILE"}),
                          (inst(plat, 191).SupplementApplication, nobody)):
        code, details = status_of(call, request)
        assert (code, details) == (OK.NOT_FOUND, "application no-such-application not found"), call
    unfiled = {"institution_id": uscc(191), "reason": "r", "decision_ref": "d"}
    assert status_of(reg.GetInstitution, {"institution_id": uscc(191)}) == (
        OK.NOT_FOUND, f"institution {uscc(191)} is not filed")
    for call in (reg.SuspendInstitution, reg.ReinstateInstitution, reg.TerminateFiling):
        assert status_of(call, unfiled) == (OK.NOT_FOUND, f"institution {uscc(191)} is not filed")
    me = inst(plat, 191)
    assert status_of(me.FileChange, {"institution_id": uscc(191), "request_id": "c",
                                     "kind": "CHANGE_KIND_DETAILS"})[0] == OK.NOT_FOUND
    assert status_of(me.ApplyRenewal, {"institution_id": uscc(191), "request_id": "r"})[0] == \
        OK.NOT_FOUND
    file_institution(plat, 192)
    code, details = status_of(reg.DecideProposal, {"institution_id": uscc(192),
                                                   "proposal_id": "nope",
                                                   "outcome": "PROPOSAL_OUTCOME_DISMISS",
                                                   "reason": "r", "decision_ref": "d"})
    assert (code, details) == (OK.NOT_FOUND, f"proposal nope not found for {uscc(192)}")
