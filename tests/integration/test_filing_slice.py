"""The filing slice on the real broker: RPCs, the events they publish, the timer sweep."""
from __future__ import annotations

import pytest
from nameko.events import event_handler
from nameko.exceptions import RemoteError
from nameko.extensions import DependencyProvider
from nameko.standalone.events import event_dispatcher
from nameko.testing.services import entrypoint_hook, entrypoint_waiter

from services.common.mongo import connect, disconnect
from services.common.uow import Repository
from services.filing.models import Application, Institution
from services.filing.service import FilingService
from tests.support import (
    PASSED_EVALUATION,
    SIX_MATERIALS,
    application_request,
    material,
    token,
    uscc,
)


class ListenerStore(DependencyProvider):
    """The listener's own database, for the marks of the events it handled."""

    def setup(self):
        disconnect("listener")
        connect("listener", self.container.config["MONGO_URI"])

    def get_dependency(self, worker_ctx):
        return Repository("listener")


class Listener:
    """Records the filing events it receives (their bodies as published), each event once:
    a consumer's idempotency on the event id, as Worker.handle_event keeps it."""

    name = "listener"
    store = ListenerStore()
    seen: list = []

    def _once(self, event_type, body):
        key = f"{event_type}:{body['meta']['event_id']}"
        if not self.store.handled(key):
            Listener.seen.append((event_type, body))
            self.store.mark_handled(key)

    @event_handler("filing", "ApplicationSubmitted")
    def on_submitted(self, body):
        self._once("ApplicationSubmitted", body)

    @event_handler("filing", "ApplicationAccepted")
    def on_accepted(self, body):
        self._once("ApplicationAccepted", body)

    @event_handler("filing", "InstitutionFiled")
    def on_filed(self, body):
        self._once("InstitutionFiled", body)

    @event_handler("filing", "ApplicationWithdrawn")
    def on_withdrawn(self, body):
        self._once("ApplicationWithdrawn", body)

    @event_handler("filing", "ApplicationRefused")
    def on_refused(self, body):
        self._once("ApplicationRefused", body)


@pytest.fixture
def listener(start_service):
    Listener.seen = []
    return start_service(Listener, replace_clock=False)


@pytest.fixture
def institution(rpc_as):
    return rpc_as(token("institution", 1)).filing


def error_of(call, *args):
    with pytest.raises(RemoteError) as info:
        call(*args)
    return info.value.exc_type, info.value.value


def submit(institution, n=1, **kwargs):
    return institution.SubmitApplication(application_request(n, **kwargs))["application"]


# --- the main path --------------------------------------------------------------------
def test_submit_accept_file_publishes_each_event_and_lists_the_receipt(filing, listener, institution,
                                                                       regulator, rpc_as):
    with entrypoint_waiter(listener, "on_submitted"):
        app = submit(institution)
    assert app["state"] == "APPLICATION_STATE_RECEIVED"
    assert app["received_on"] == "2025-09-15"
    assert app["acceptance_due"] == {"date": "2025-09-22", "provisional": False}

    with entrypoint_waiter(listener, "on_accepted"):
        app = regulator.AcceptApplication({"application_id": app["application_id"],
                                           "decision": "ACCEPTANCE_DECISION_ACCEPT"})["application"]
    assert app["accepted_by"] == "ACCEPTED_BY_REGULATOR"
    assert app["decision_due"]["date"] == "2025-10-11"  # across National Day, a make-up Saturday

    with entrypoint_waiter(listener, "on_filed"):
        out = regulator.DecideApplication({"application_id": app["application_id"],
                                           "outcome": "DECISION_OUTCOME_FILE",
                                           "evaluation": PASSED_EVALUATION})
    receipt = out["receipt"]
    assert out["application"]["state"] == "APPLICATION_STATE_FILED"
    assert receipt["filing_code"] == "S000041000001"
    assert receipt["valid_until"] == "2028-09-14"

    kinds = [kind for kind, _ in Listener.seen]
    assert kinds == ["ApplicationSubmitted", "ApplicationAccepted", "InstitutionFiled"]
    filed_event = Listener.seen[-1][1]
    assert filed_event["receipt"]["filing_code"] == "S000041000001"
    assert filed_event["meta"]["source"] == "filing"
    assert filed_event["meta"]["actor"] == "regulator:regulator-0"
    assert len({body["meta"]["event_id"] for _, body in Listener.seen}) == 3

    register = rpc_as().filing.ListRegister({})  # public: no token
    assert [e["receipt"]["filing_code"] for e in register["entries"]] == ["S000041000001"]
    assert "legal_representative" not in str(register)  # the register shows the receipt only

    mine = institution.GetInstitution({"institution_id": uscc(1)})["institution"]
    assert mine["status"] == "INSTITUTION_STATUS_ACTIVE"
    assert mine["history"][0]["decision_ref"] == app["application_id"]
    assert not Application.objects(pending_events__0__exists=True).count()


def test_filing_codes_are_serial_and_never_reused(filing, rpc_as, regulator):
    codes = []
    for n in (1, 2):
        inst = rpc_as(token("institution", n)).filing
        app = submit(inst, n)
        regulator.AcceptApplication({"application_id": app["application_id"],
                                     "decision": "ACCEPTANCE_DECISION_ACCEPT"})
        codes.append(regulator.DecideApplication({
            "application_id": app["application_id"], "outcome": "DECISION_OUTCOME_FILE",
            "evaluation": PASSED_EVALUATION})["receipt"]["filing_code"])
    assert codes == ["S000041000001", "S000041000002"]
    page1 = rpc_as().filing.ListRegister({"page": {"page_size": 1}})
    assert len(page1["entries"]) == 1 and page1["page"]["next_page_token"]
    page2 = rpc_as().filing.ListRegister({"page": {"page_size": 1,
                                                    "page_token": page1["page"]["next_page_token"]}})
    assert page2["entries"][0]["receipt"]["filing_code"] == "S000041000002"
    assert not page2["page"].get("next_page_token")


def test_refusal_needs_reasons_and_publishes_them(filing, listener, institution, regulator):
    app = submit(institution)
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    assert error_of(regulator.DecideApplication, {"application_id": app["application_id"],
                                                  "outcome": "DECISION_OUTCOME_REFUSE"})[0] == "InvalidArgument"
    with entrypoint_waiter(listener, "on_refused"):
        out = regulator.DecideApplication({"application_id": app["application_id"],
                                           "outcome": "DECISION_OUTCOME_REFUSE",
                                           "reasons": ["site visit: no video surveillance"]})
    assert out["application"]["state"] == "APPLICATION_STATE_REFUSED"
    assert Listener.seen[-1][1]["reasons"] == ["site visit: no video surveillance"]


# --- supplements and the clock ------------------------------------------------------------
def test_supplement_restarts_the_clock_on_the_day_it_is_complete(filing, institution, regulator, clock):
    app = submit(institution, materials=SIX_MATERIALS[:4])
    missing = list(SIX_MATERIALS[4:])
    assert app["missing_materials"] == missing
    assert error_of(regulator.AcceptApplication, {"application_id": app["application_id"],
                                                  "decision": "ACCEPTANCE_DECISION_ACCEPT"})[0] \
        == "FailedPrecondition"
    kind, message = error_of(regulator.RequestSupplement, {"application_id": app["application_id"],
                                                           "missing_materials": missing[:1]})
    assert kind == "InvalidArgument" and "also missing" in message

    clock.set(2025, 9, 17)
    app = regulator.RequestSupplement({"application_id": app["application_id"],
                                       "missing_materials": missing,
                                       "other_items": ["site plan signed by the legal representative"]}
                                      )["application"]
    assert app["state"] == "APPLICATION_STATE_SUPPLEMENT_REQUESTED"
    assert app["supplement"]["due_on"] == "2025-10-17"
    assert error_of(regulator.RequestSupplement, {"application_id": app["application_id"],
                                                  "other_items": ["one more"]})[0] == "FailedPrecondition"

    clock.set(2025, 9, 26)
    app = institution.SupplementApplication({"application_id": app["application_id"],
                                             "materials": [material(missing[0])]})["application"]
    assert app["state"] == "APPLICATION_STATE_SUPPLEMENT_REQUESTED"  # partial: clock unchanged

    app = institution.SupplementApplication({
        "application_id": app["application_id"], "materials": [material(missing[1])],
        "answered_items": ["site plan signed by the legal representative"]})["application"]
    assert app["state"] == "APPLICATION_STATE_RECEIVED"
    assert app["received_on"] == "2025-09-26"
    # 5 working days from Friday 26 Sep 2025: 28 (make-up Sunday), 29, 30, then 9 and 10 Oct.
    assert app["acceptance_due"] == {"date": "2025-10-10", "provisional": False}
    assert app["supplement"]["completed_on"] == "2025-09-26"


def test_sweep_deems_acceptance_once_even_when_run_twice(filing, listener, institution, clock):
    app = submit(institution)
    clock.set(2025, 9, 22)  # the last day of the window: nothing yet
    with entrypoint_hook(filing, "sweep") as sweep:
        assert sweep()["changed"] == 0
    clock.set(2025, 9, 23)
    with entrypoint_waiter(listener, "on_accepted"):
        with entrypoint_hook(filing, "sweep") as sweep:
            assert sweep()["changed"] == 1
    with entrypoint_hook(filing, "sweep") as sweep:
        assert sweep()["changed"] == 0
    stored = Application.objects.get(pk=app["application_id"])
    assert stored.state == "APPLICATION_STATE_ACCEPTED"
    assert stored.accepted_by == "ACCEPTED_BY_DEEMED"
    assert stored.accepted_on == "2025-09-22"
    assert [kind for kind, _ in Listener.seen].count("ApplicationAccepted") == 1


def test_no_supplement_in_30_days_is_deemed_withdrawn(filing, listener, institution, regulator, clock):
    app = submit(institution, materials=SIX_MATERIALS[:5])
    regulator.RequestSupplement({"application_id": app["application_id"],
                                 "missing_materials": [SIX_MATERIALS[5]]})
    clock.set(2025, 10, 15)  # due on; still open
    with entrypoint_hook(filing, "sweep") as sweep:
        assert sweep()["changed"] == 0
    clock.set(2025, 10, 16)
    kind, message = error_of(institution.SupplementApplication,
                             {"application_id": app["application_id"],
                              "materials": [material(SIX_MATERIALS[5])]})
    assert kind == "FailedPrecondition" and "deemed withdrawn" in message
    with entrypoint_waiter(listener, "on_withdrawn"):
        with entrypoint_hook(filing, "sweep") as sweep:
            assert sweep()["changed"] == 1
    assert institution.GetApplication({"application_id": app["application_id"]}
                                      )["application"]["state"] == "APPLICATION_STATE_WITHDRAWN"
    # Withdrawn frees the institution to apply again.
    assert submit(institution, request_id="req-again")["state"] == "APPLICATION_STATE_RECEIVED"


# --- duplicates, roles, bad input ---------------------------------------------------------
def test_duplicate_submission_returns_the_first_and_a_second_open_one_is_refused(filing, institution):
    first = submit(institution)
    again = submit(institution)
    assert again["application_id"] == first["application_id"]
    changed = application_request(1)
    changed["institution"]["address"] = "河南省安阳市文峰区另一条路1号"
    assert error_of(institution.SubmitApplication, changed)[0] == "AlreadyExists"
    kind, message = error_of(institution.SubmitApplication, application_request(1, request_id="req-2"))
    assert kind == "AlreadyExists" and first["application_id"] in message
    assert Application.objects.count() == 1


def test_wrong_role_or_no_token_or_another_institution(filing, rpc_as, institution, regulator):
    app = submit(institution)
    assert error_of(rpc_as().filing.SubmitApplication, application_request(1))[0] == "Unauthenticated"
    assert error_of(regulator.SubmitApplication, application_request(1))[0] == "PermissionDenied"
    assert error_of(institution.AcceptApplication, {"application_id": app["application_id"],
                                                    "decision": "ACCEPTANCE_DECISION_ACCEPT"})[0] \
        == "PermissionDenied"
    other = rpc_as(token("institution", 2)).filing
    assert error_of(other.GetApplication, {"application_id": app["application_id"]})[0] == "PermissionDenied"
    # Applying in another institution's name.
    assert error_of(other.SubmitApplication, application_request(1))[0] == "PermissionDenied"
    assert error_of(rpc_as("forged.token.value").filing.ListRegister, {})[0] == "Unauthenticated"
    assert Application.objects.count() == 1


@pytest.mark.parametrize("request_body, expected", [
    ("not an object", "must be an object"),
    ({"scope": "育婴员"}, "scope"),
    ({"institution": {"name": 5}}, "name"),
    ({"request_id": "r", "no_such_field": 1}, "no_such_field"),
    ({"request_id": "r", "scope": [{"skill_levels": ["four"]}]}, "skill_levels"),
])
def test_wrong_types_are_invalid_argument_and_store_nothing(filing, institution, request_body, expected):
    kind, message = error_of(institution.SubmitApplication, request_body)
    assert kind == "InvalidArgument" and expected in message
    assert Application.objects.count() == 0


def test_unknown_ids_are_not_found(filing, regulator):
    assert error_of(regulator.GetApplication, {"application_id": "nope"})[0] == "NotFound"
    assert error_of(regulator.GetInstitution, {"institution_id": uscc(9)})[0] == "NotFound"
    assert error_of(regulator.GetApplication, {})[0] == "InvalidArgument"
    assert error_of(regulator.AcceptApplication, {"application_id": "nope",
                                                  "decision": "ACCEPTANCE_DECISION_ACCEPT"})[0] == "NotFound"


def test_out_of_range_paging_is_invalid(filing, rpc_as):
    public = rpc_as().filing
    assert error_of(public.ListRegister, {"page": {"page_size": 1000}})[0] == "InvalidArgument"
    assert error_of(public.ListRegister, {"page": {"page_token": "bogus"}})[0] == "InvalidArgument"


# --- store, then publish ------------------------------------------------------------------
def test_a_failed_publish_loses_nothing_and_the_relay_sends_it_once(start_service, listener, rpc_as):
    filing = start_service(FilingService, FAULT_INJECT_PUBLISH_FAILURES=1)
    institution = rpc_as(token("institution", 1)).filing
    app = submit(institution)  # stored; its event's publish "crashed"
    stored = Application.objects.get(pk=app["application_id"])
    assert [e["event_type"] for e in stored.pending_events] == ["ApplicationSubmitted"]
    assert Listener.seen == []

    with entrypoint_waiter(listener, "on_submitted"):
        with entrypoint_hook(filing, "relay") as relay_timer:
            assert relay_timer() == 1
    with entrypoint_hook(filing, "relay") as relay_timer:
        assert relay_timer() == 0
    assert [kind for kind, _ in Listener.seen] == ["ApplicationSubmitted"]
    assert Listener.seen[0][1]["meta"]["event_id"] == stored.pending_events[0]["event_id"]
    assert not Application.objects(pending_events__0__exists=True).count()


def test_a_redelivered_event_changes_nothing(listener, rabbit_config):
    dispatch = event_dispatcher(rabbit_config)
    body = {"meta": {"event_id": "e-1", "source": "filing"}, "application_id": "a", "institution_id": uscc(1)}
    for _ in range(2):
        with entrypoint_waiter(listener, "on_submitted"):
            dispatch("filing", "ApplicationSubmitted", body)
    assert len(Listener.seen) == 1


def test_institution_filed_is_stored_with_the_institution(filing, institution, regulator):
    """The filed institution and its InstitutionFiled event are one document write."""
    app = submit(institution)
    regulator.AcceptApplication({"application_id": app["application_id"],
                                 "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    regulator.DecideApplication({"application_id": app["application_id"],
                                 "outcome": "DECISION_OUTCOME_FILE", "evaluation": PASSED_EVALUATION})
    # A retried decision answers with the same receipt and files nothing twice.
    again = regulator.DecideApplication({"application_id": app["application_id"],
                                         "outcome": "DECISION_OUTCOME_FILE",
                                         "evaluation": PASSED_EVALUATION})
    assert again["receipt"]["filing_code"] == "S000041000001"
    assert Institution.objects.count() == 1
