"""The filing slice through every layer: grpcio client -> edge -> RabbitMQ -> worker."""
from __future__ import annotations

import time

import grpc
import pytest
import requests
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from kombu import Connection, Exchange, Queue

from tests.e2e.grpc_client import Filing, status_of
from tests.platform import FILING
from tests.support import PASSED_EVALUATION, SIX_MATERIALS, application_request, uscc

pytestmark = pytest.mark.e2e


def test_reflection_lists_the_service_and_health(platform):
    stub = reflection_pb2_grpc.ServerReflectionStub(platform.channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                        timeout=5)
    names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert {FILING, "grpc.health.v1.Health"} <= names


def test_health_is_serving(platform):
    assert platform.health("") == health_pb2.HealthCheckResponse.SERVING
    assert platform.health(FILING) == health_pb2.HealthCheckResponse.SERVING


def test_submit_accept_and_file_over_grpc(platform):
    institution = Filing(platform.channel, "institution", 1)
    regulator = Filing(platform.channel, "regulator")
    app = institution.SubmitApplication(application_request(1))["application"]
    assert app["state"] == "APPLICATION_STATE_RECEIVED"
    assert app["acceptance_due"]["date"]
    app = regulator.AcceptApplication({"application_id": app["application_id"],
                                       "decision": "ACCEPTANCE_DECISION_ACCEPT"})["application"]
    assert app["state"] == "APPLICATION_STATE_ACCEPTED"
    out = regulator.DecideApplication({"application_id": app["application_id"],
                                       "outcome": "DECISION_OUTCOME_FILE",
                                       "evaluation": PASSED_EVALUATION})
    code = out["receipt"]["filing_code"]
    assert code.startswith("S000041") and len(code) == 13
    register = Filing(platform.channel).ListRegister({})  # public, no token
    assert code in [e["receipt"]["filing_code"] for e in register["entries"]]
    mine = institution.GetInstitution({"institution_id": uscc(1)})["institution"]
    assert mine["status"] == "INSTITUTION_STATUS_ACTIVE"


def test_bad_input_is_invalid_argument_and_stores_nothing(platform):
    institution = Filing(platform.channel, "institution", 2)
    bad = application_request(2, request_id="req-bad-then-good")
    bad["institution"]["district_code"] = "999999"
    bad["scope"][0]["skill_levels"] = [9]
    code, details = status_of(institution.SubmitApplication, bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "district_code" in details and "skill_levels" in details
    # Nothing was stored under that request id: the corrected request is a new application.
    good = institution.SubmitApplication(application_request(2, request_id="req-bad-then-good"))
    assert good["application"]["state"] == "APPLICATION_STATE_RECEIVED"


def test_unknown_ids_are_not_found(platform):
    regulator = Filing(platform.channel, "regulator")
    assert status_of(regulator.GetApplication, {"application_id": "no-such-id"})[0] == \
        grpc.StatusCode.NOT_FOUND
    assert status_of(regulator.GetInstitution, {"institution_id": uscc(77)})[0] == \
        grpc.StatusCode.NOT_FOUND


def test_roles_are_enforced_precisely(platform):
    owner = Filing(platform.channel, "institution", 3)
    app = owner.SubmitApplication(application_request(3))["application"]
    anonymous = Filing(platform.channel)
    assert status_of(anonymous.GetApplication, {"application_id": app["application_id"]})[0] == \
        grpc.StatusCode.UNAUTHENTICATED
    garbage = Filing(platform.channel, metadata=(("authorization", "Bearer not-a-token"),))
    assert status_of(garbage.ListRegister, {})[0] == grpc.StatusCode.UNAUTHENTICATED
    basic = Filing(platform.channel, metadata=(("authorization", "Basic dXNlcjpwdw=="),))
    assert status_of(basic.ListRegister, {})[0] == grpc.StatusCode.UNAUTHENTICATED
    assert status_of(owner.DecideApplication, {"application_id": app["application_id"],
                                               "outcome": "DECISION_OUTCOME_FILE"})[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    inspector = Filing(platform.channel, "inspector")
    assert status_of(inspector.SubmitApplication, application_request(3))[0] == \
        grpc.StatusCode.PERMISSION_DENIED
    other = Filing(platform.channel, "institution", 4)
    code, details = status_of(other.GetApplication, {"application_id": app["application_id"]})
    assert code == grpc.StatusCode.PERMISSION_DENIED and "another institution" in details


def test_duplicate_submission(platform):
    institution = Filing(platform.channel, "institution", 5)
    first = institution.SubmitApplication(application_request(5))["application"]
    again = institution.SubmitApplication(application_request(5))["application"]
    assert again["application_id"] == first["application_id"]
    code, details = status_of(institution.SubmitApplication, application_request(5, request_id="other"))
    assert code == grpc.StatusCode.ALREADY_EXISTS and first["application_id"] in details


def test_state_rules_are_failed_precondition(platform):
    institution = Filing(platform.channel, "institution", 6)
    regulator = Filing(platform.channel, "regulator")
    app = institution.SubmitApplication(application_request(6, materials=SIX_MATERIALS[:3]))["application"]
    code, details = status_of(regulator.AcceptApplication, {"application_id": app["application_id"],
                                                            "decision": "ACCEPTANCE_DECISION_ACCEPT"})
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "request a supplement" in details


def test_deadline_is_honoured(platform):
    regulator = Filing(platform.channel, "regulator")
    code, _ = status_of(regulator.ListRegister, {}, timeout=0.0005)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_oversized_message_is_refused(platform):
    institution = Filing(platform.channel, "institution", 7)
    huge = application_request(7)
    huge["institution"]["address"] = "x" * (2 * 1024 * 1024)  # the e2e edge allows 1 MiB
    assert status_of(institution.SubmitApplication, huge)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_metrics_count_grpc_calls_and_business_events(platform):
    edge = requests.get(f"http://localhost:{platform.edge_metrics_port}/metrics", timeout=5).text
    # The gRPC ecosystem's names and labels (go-grpc-prometheus), so its dashboards work.
    assert ('grpc_server_handled_total{grpc_code="OK",grpc_method="SubmitApplication",'
            'grpc_service="vocreg.filing.v1.FilingService",grpc_type="unary"}') in edge
    assert 'grpc_code="PERMISSION_DENIED"' in edge
    assert 'grpc_server_handling_seconds_bucket{' in edge
    assert 'grpc_server_started_total{' in edge
    worker = requests.get(f"http://localhost:{platform.worker_metrics_port}/metrics", timeout=5).text
    assert 'vocreg_events_total{event_type="InstitutionFiled"} 1.0' in worker
    # Outcomes spelled as the edge spells them; no `service` label to collide with the
    # target label Prometheus attaches (it would come out as `exported_service`).
    assert 'vocreg_worker_handled_total{entrypoint="SubmitApplication",grpc_code="OK"}' in worker
    assert 'service="' not in worker


def test_a_failed_publish_loses_no_event(fresh_platform):
    """The first publish fails (as when the broker refuses it); the stored event goes out with
    the relay, once. Real crashes (SIGKILL) are in test_crash_recovery.py."""
    plat = fresh_platform(FAULT_INJECT_PUBLISH_FAILURES=1, SWEEP_INTERVAL=0.5)
    received = []
    with Connection(plat.amqp_uri) as conn:
        exchange = Exchange("filing.events", type="topic", durable=True)
        queue = Queue(exclusive=True, exchange=exchange, routing_key="#")
        with conn.Consumer(queue, callbacks=[lambda body, msg: (received.append(body), msg.ack())]):
            app = Filing(plat.channel, "institution", 8).SubmitApplication(application_request(8))
            deadline = time.monotonic() + 15
            while not received and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    pass
            time.sleep(1.5)  # a few more relay rounds: nothing may be sent twice
            try:
                while True:
                    conn.drain_events(timeout=0.2)
            except TimeoutError:
                pass
    assert [b["application_id"] for b in received] == [app["application"]["application_id"]], plat.logs()
    worker = requests.get(f"http://localhost:{plat.worker_metrics_port}/metrics", timeout=5).text
    assert 'vocreg_event_publish_failures_total 1.0' in worker


def test_worker_down_is_unavailable_and_unready(fresh_platform):
    plat = fresh_platform()
    institution = Filing(plat.channel, "institution", 10)
    app = institution.SubmitApplication(application_request(10))["application"]
    assert plat.stop_process("worker") == 0  # graceful stop on SIGTERM
    plat.wait_for_health(FILING, health_pb2.HealthCheckResponse.NOT_SERVING)
    assert plat.health("") == health_pb2.HealthCheckResponse.SERVING  # the edge itself lives
    code, details = status_of(Filing(plat.channel).ListRegister, {})
    assert code == grpc.StatusCode.UNAVAILABLE and "not running" in details
    plat.start_worker()
    plat.wait_for_health(FILING, health_pb2.HealthCheckResponse.SERVING)
    # Back in service, on the same database: what was stored before the stop is still there.
    again = institution.GetApplication({"application_id": app["application_id"]})["application"]
    assert again == app


def test_deemed_acceptance_by_the_timer_across_national_day(fresh_platform):
    """The worker's own timer deems an unanswered application accepted after 5 working days."""
    from datetime import datetime

    from services.common.workdays import SHANGHAI

    plat = fresh_platform(clock=True, SWEEP_INTERVAL=0.3)
    plat.set_clock(datetime(2025, 9, 26, 10, tzinfo=SHANGHAI))  # Friday before National Day
    institution = Filing(plat.channel, "institution", 9)
    app = institution.SubmitApplication(application_request(9))["application"]
    assert app["acceptance_due"] == {"date": "2025-10-10"}  # 28 Sep (make-up), 29, 30, 9, 10 Oct
    plat.set_clock(datetime(2025, 10, 10, 23, 59, tzinfo=SHANGHAI))
    time.sleep(1.0)  # several sweeps: still inside the window
    assert institution.GetApplication({"application_id": app["application_id"]}
                                      )["application"]["state"] == "APPLICATION_STATE_RECEIVED"
    plat.set_clock(datetime(2025, 10, 11, 0, 1, tzinfo=SHANGHAI))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = institution.GetApplication({"application_id": app["application_id"]})["application"]
        if current["state"] != "APPLICATION_STATE_RECEIVED":
            break
        time.sleep(0.2)
    assert current["state"] == "APPLICATION_STATE_ACCEPTED"
    assert current["accepted_by"] == "ACCEPTED_BY_DEEMED"
    assert current["accepted_on"] == "2025-10-10"
