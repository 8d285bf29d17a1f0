"""Issue 14 through gRPC over the real broker: grpcio -> edge -> RabbitMQ -> the courses
worker, on the session's database. One platform serves the module; each test uses its own
provider, trainee and employer ids, so tests do not depend on their order.

Rules: seed 004; seed 002 §5.
"""
from __future__ import annotations

import copy

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from tests.course_builders import body_text, course, learning, resource
from tests.e2e.grpc_client import Courses, status_of
from tests.platform import Platform

pytestmark = pytest.mark.e2e

Code = grpc.StatusCode
SERVICE = "vocreg.courses.v1.CourseReviewService"
RPCS = {"SubmitCourse", "CheckCourse", "GetCourse", "ReviewCourse", "ListCourses",
        "DeleteCourse", "ResolveCopyrightConflict", "RecordProviderIssue", "SanctionProvider",
        "AcceptRectification", "GetProvider", "RecordLearning", "ConfirmCheating",
        "AcceptEmployerRectification", "GetEmployerStatus", "GetItemStatistics", "RateCourse",
        "ListTopCourses"}


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("courses"), services=("courses",)).start()
    yield started
    codes = started.stop()
    assert codes == {"edge": 0, "worker-courses": 0}, f"unclean shutdown {codes}:\n{started.logs()}"


def provider(plat, pid):
    return Courses(plat.channel, "provider", party_id=pid)


def expert(plat):
    return Courses(plat.channel, "expert")


def regulator(plat):
    return Courses(plat.channel, "regulator")


def stored(plat, collection="courses", **query) -> int:
    return plat.db("courses")[collection].count_documents(query)


def rules(view) -> list[str]:
    return [f["rule"] for f in view.get("findings", [])]


def submit(plat, pid, n, request_id, **kw):
    return provider(plat, pid).SubmitCourse({"course": course(n, provider=pid, **kw),
                                             "request_id": request_id})["course"]


def approve(plat, course_id):
    return expert(plat).ReviewCourse({"course_id": course_id,
                                      "outcome": "REVIEW_OUTCOME_APPROVED"})["course"]


def test_reflection_lists_the_service_with_every_rpc(plat):
    info = plat.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    listed, found = list(info(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]), timeout=5))
    assert SERVICE in {s.name for s in listed.list_services_response.service}
    methods = set()
    for raw in found.file_descriptor_response.file_descriptor_proto:
        file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        for service in file.service:
            if f"{file.package}.{service.name}" == SERVICE:
                methods = {m.name for m in service.method}
    assert methods == RPCS


def test_submitted_checked_rejected_reuploaded_unchanged_and_caught(plat):
    pid = "PROV-E2E-1"
    first = submit(plat, pid, 101, "e2e-1")
    assert first["state"] == "COURSE_STATE_SUBMITTED" and "findings" not in first
    checked = provider(plat, pid).CheckCourse({"course_id": first["course_id"]})
    assert checked["content_hash"] == first["content_hash"] and "findings" not in checked
    rejected = expert(plat).ReviewCourse({"course_id": first["course_id"],
                                          "outcome": "REVIEW_OUTCOME_REJECTED",
                                          "reasons": ["课程目录不规范"]})["course"]
    assert rejected["state"] == "COURSE_STATE_REJECTED"
    again = submit(plat, pid, 101, "e2e-2", title="育婴员课程（重新上传）")
    caught = [f for f in again["findings"] if f["rule"] == "CHECK_RULE_RESUBMITTED_UNCHANGED"]
    assert caught and caught[0]["related_course_id"] == first["course_id"]
    assert caught[0]["severity"] == "SEVERITY_ERROR"
    code, _ = status_of(expert(plat).ReviewCourse, {"course_id": again["course_id"],
                                                    "outcome": "REVIEW_OUTCOME_APPROVED"})
    assert code == Code.FAILED_PRECONDITION
    assert stored(plat, _id=again["course_id"], state="COURSE_STATE_SUBMITTED") == 1
    # the same request again answers as the first and stores nothing more
    assert submit(plat, pid, 101, "e2e-2", title="育婴员课程（重新上传）") == again
    assert stored(plat, provider_id=pid) == 2
    code, _ = status_of(provider(plat, pid).SubmitCourse, {"course": course(102),
                                                          "request_id": "e2e-2"})
    assert code == Code.ALREADY_EXISTS


def test_question_bank_rules_through_the_edge(plat):
    pid = "PROV-E2E-2"
    questions = course(0)["questions"][:9]  # 9 questions for 2 class hours
    view = submit(plat, pid, 103, "bank-1", questions=questions)
    assert "CHECK_RULE_TOO_FEW_QUESTIONS" in rules(view)
    draft = provider(plat, pid).CheckCourse({"draft": course(104, provider=pid, title="全国包过育婴课程")})
    assert {f["rule"] for f in draft["findings"]} == {"CHECK_RULE_PROHIBITED_WORD"}
    assert draft["error_count"] == 1
    assert stored(plat, provider_id=pid) == 1  # the draft was not stored


def test_partial_reuse_across_providers_and_the_same_resource_claimed(plat):
    original = submit(plat, "PROV-E2E-3", 105, "reuse-1")
    copied = course(106, provider="PROV-E2E-4")
    copied["resources"][0] = resource(105, 0)           # the same file and text
    copied["resources"][1] = resource(105, 1, text=resource(105, 1)["content_text"] + "补充",
                                      media="b" * 64)  # the same text, edited, another file
    view = provider(plat, "PROV-E2E-4").SubmitCourse({"course": copied,
                                                      "request_id": "reuse-2"})["course"]
    reused = [f for f in view["findings"] if f["rule"] == "CHECK_RULE_CONTENT_REUSED"]
    assert reused and reused[0]["related_course_id"] == original["course_id"]
    assert 0.25 <= reused[0]["share"] < 0.6
    conflict = [f for f in view["findings"] if f["rule"] == "CHECK_RULE_COPYRIGHT_SAME_RESOURCE"]
    assert conflict and conflict[0]["related_provider_id"] == "PROV-E2E-3"
    first = regulator(plat).GetCourse({"course_id": original["course_id"]})["course"]
    assert first["conflicts"][0]["other_provider_id"] == "PROV-E2E-4"


def test_bad_input_is_answered_precisely_and_nothing_is_stored(plat):
    pid = "PROV-E2E-5"
    p = provider(plat, pid)
    cases = [
        ({"course": course(107, hours=0), "request_id": "bad-1"}, "course.class_hours"),
        ({"course": {**course(107), "title": ""}, "request_id": "bad-2"}, "course.title"),
        ({"course": course(107)}, "request_id"),
        ({"request_id": "bad-3"}, "course"),
    ]
    for request, field in cases:
        try:
            p.SubmitCourse(request)
        except grpc.RpcError as exc:
            assert exc.code() == Code.INVALID_ARGUMENT, request
            assert field in exc.details(), exc.details()
        else:
            raise AssertionError(f"accepted {field}")
    bad_question = course(107)
    bad_question["questions"][2]["type"] = "QUESTION_TYPE_UNSPECIFIED"
    code, details = status_of(p.SubmitCourse, {"course": bad_question, "request_id": "bad-4"})
    assert code == Code.INVALID_ARGUMENT and "course.questions[2].type" in details
    too_long = copy.deepcopy(course(107))
    too_long["title"] = "长" * 300
    code, details = status_of(p.SubmitCourse, {"course": too_long, "request_id": "bad-5"})
    assert code == Code.INVALID_ARGUMENT and "course.title" in details
    assert stored(plat, provider_id=pid) == 0
    # wrong roles and no token
    code, _ = status_of(Courses(plat.channel, "trainee", party_id="T-X").SubmitCourse,
                        {"course": course(107), "request_id": "bad-6"})
    assert code == Code.PERMISSION_DENIED
    code, _ = status_of(Courses(plat.channel).SubmitCourse,
                        {"course": course(107), "request_id": "bad-7"})
    assert code == Code.UNAUTHENTICATED
    code, _ = status_of(Courses(plat.channel, "provider", party_id=pid).ReviewCourse,
                        {"course_id": "x", "outcome": "REVIEW_OUTCOME_APPROVED"})
    assert code == Code.PERMISSION_DENIED
    # unknown ids and out-of-range values
    code, _ = status_of(expert(plat).ReviewCourse, {"course_id": "no-such-course",
                                                    "outcome": "REVIEW_OUTCOME_APPROVED"})
    assert code == Code.NOT_FOUND
    code, details = status_of(expert(plat).ReviewCourse, {"course_id": "no-such-course",
                                                          "outcome": "REVIEW_OUTCOME_REJECTED"})
    assert code == Code.INVALID_ARGUMENT and "reasons" in details
    code, _ = status_of(regulator(plat).ConfirmCheating, {"case_id": "nope", "confirmed": True,
                                                          "note": "x"})
    assert code == Code.NOT_FOUND
    code, details = status_of(Courses(plat.channel).ListTopCourses, {"page": {"page_size": 500}})
    assert code == Code.INVALID_ARGUMENT and "page.page_size" in details
    code, _ = status_of(provider(plat, "PROV-E2E-9").GetProvider, {"provider_id": pid})
    assert code == Code.PERMISSION_DENIED
    assert stored(plat, "providers", _id=pid) == 0


def test_cheating_again_after_rectification_loses_the_subsidy(plat):
    pid, employer = "PROV-E2E-6", "EMP-E2E-6"
    course_id = approve(plat, submit(plat, pid, 108, "cheat-1")["course_id"])["course_id"]
    platform = provider(plat, pid)
    first = platform.RecordLearning(learning("TR-61", course_id, employer=employer, minutes=120,
                                             flags=["PROCTORING_FLAG_PROXY_EXAM"]))
    assert first["record"]["credited_minutes"] == 120
    confirmed = regulator(plat).ConfirmCheating({"case_id": first["case_id"], "confirmed": True,
                                                 "note": "代考属实"})
    assert confirmed["cheating_case"]["minutes_zeroed"] == 120
    assert confirmed["employer"]["standing"] == "EMPLOYER_STANDING_RECTIFICATION_REQUIRED"
    regulator(plat).AcceptEmployerRectification({
        "employer_id": employer, "interviewed_on": "2025-09-01", "report_ref": "整改报告",
        "pledge_signed": True})
    second = platform.RecordLearning(learning("TR-62", course_id, employer=employer,
                                              flags=["PROCTORING_FLAG_INTERACTION_CHECK_EVADED"]))
    regulator(plat).ConfirmCheating({"case_id": second["case_id"], "confirmed": True,
                                     "note": "逃避人机交互"})
    status = Courses(plat.channel, "employer", party_id=employer).GetEmployerStatus(
        {"employer_id": employer})["employer"]
    assert status["standing"] == "EMPLOYER_STANDING_SUBSIDY_REVOKED"
    assert status.get("subsidy_eligible", False) is False
    assert status["revoked_by_case_id"] == second["case_id"]
    assert [c["case_id"] for c in status["cases"]] == [first["case_id"], second["case_id"]]


def test_a_rating_without_hours_is_refused_and_top_courses_are_public(plat):
    pid = "PROV-E2E-7"
    course_id = approve(plat, submit(plat, pid, 109, "rate-1")["course_id"])["course_id"]
    trainee = Courses(plat.channel, "trainee", party_id="TR-71")
    code, _ = status_of(trainee.RateCourse, {"course_id": course_id, "stars": 5})
    assert code == Code.FAILED_PRECONDITION
    assert stored(plat, "ratings") == 0
    provider(plat, pid).RecordLearning(learning("TR-71", course_id, employer="EMP-7",
                                                minutes=40))
    code, _ = status_of(trainee.RateCourse, {"course_id": course_id, "stars": 9})
    assert code == Code.INVALID_ARGUMENT
    assert trainee.RateCourse({"course_id": course_id, "stars": 4})["stars"] == 4
    top = Courses(plat.channel).ListTopCourses({})
    row = next(c for c in top["courses"] if c["course_id"] == course_id)
    assert row["ratings"] == 1 and row["mean"] == 4
    assert row["interval_low"] == 1 and row["interval_high"] == 5
    public = Courses(plat.channel).ListCourses({})
    assert course_id in [c["course_id"] for c in public["courses"]]
    assert all(c["state"] == "COURSE_STATE_LISTED" for c in public["courses"])


def test_item_statistics_and_sanctions(plat):
    pid = "PROV-E2E-8"
    course_id = approve(plat, submit(plat, pid, 110, "stat-1")["course_id"])["course_id"]
    for i in range(4):
        provider(plat, pid).RecordLearning(learning(
            f"TR-8{i}", course_id, employer="EMP-8",
            first=(True, {f"q{j}": j <= 5 + i for j in range(10)})))
    stats = provider(plat, pid).GetItemStatistics({"course_id": course_id})
    assert stats["first_attempts"] == 4 and stats["too_easy"] is True
    sanction = regulator(plat).SanctionProvider({
        "provider_id": pid, "kind": "PROVIDER_SANCTION_TEMPORARY_DELISTING",
        "reason": "题库过易", "request_id": "sanc-8",
        "notice": {"notice_number": "京人社整改〔2026〕8号", "findings": ["首次通过率过高"],
                   "requirements": ["更新题库"], "due_on": "2099-01-01"}})["sanction"]
    assert sanction["course_ids"] == [course_id]
    assert course_id not in [c["course_id"] for c in Courses(plat.channel).ListCourses(
        {})["courses"]]
    relisted = regulator(plat).AcceptRectification({
        "provider_id": pid, "sanction_id": sanction["sanction_id"], "report_ref": "整改报告8"})
    assert relisted["relisted_course_ids"] == [course_id]
    assert len(body_text(1, 10)) == 10
