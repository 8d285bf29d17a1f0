"""The course review on the real broker and database: a course submitted, rejected, uploaded
again unchanged and caught by the worker's own index and hashes; the events the other services
consume (CourseSubmitted, CourseReviewed, CourseDelisted, CheatingCaseOpened,
CheatingConfirmed) published with their contract; a retried request answered once."""
from __future__ import annotations

import time

import pytest
from nameko.events import event_handler
from nameko.exceptions import RemoteError

from services.courses.domain.lifecycle import LISTED, REJECTED, SUBMITTED
from services.courses.models import CourseRecord
from services.courses.service import CourseReviewService
from tests.course_builders import course, learning
from tests.support import token

PROVIDER = "PROV-INT-1"


class CourseEvents:
    name = "courses_event_log"
    seen: list = []

    @event_handler("courses", "CourseSubmitted")
    def submitted(self, body):
        CourseEvents.seen.append(("CourseSubmitted", body))

    @event_handler("courses", "CourseReviewed")
    def reviewed(self, body):
        CourseEvents.seen.append(("CourseReviewed", body))

    @event_handler("courses", "CourseDelisted")
    def delisted(self, body):
        CourseEvents.seen.append(("CourseDelisted", body))

    @event_handler("courses", "CheatingCaseOpened")
    def opened(self, body):
        CourseEvents.seen.append(("CheatingCaseOpened", body))

    @event_handler("courses", "CheatingConfirmed")
    def confirmed(self, body):
        CourseEvents.seen.append(("CheatingConfirmed", body))


@pytest.fixture
def courses(start_service, clock):
    CourseEvents.seen = []
    clock.set(2026, 6, 15)
    start_service(CourseEvents, replace_clock=False)
    return start_service(CourseReviewService)


def events(kind):
    return [body for k, body in CourseEvents.seen if k == kind]


def test_resubmitted_unchanged_is_caught_and_every_event_is_published(courses, rpc_as):
    provider = rpc_as(token("provider", party_id=PROVIDER)).courses
    expert = rpc_as(token("expert")).courses
    regulator = rpc_as(token("regulator")).courses
    first = provider.SubmitCourse({"course": course(1, provider=PROVIDER),
                                   "request_id": "int-1"})["course"]
    assert provider.SubmitCourse({"course": course(1, provider=PROVIDER),
                                  "request_id": "int-1"})["course"] == first
    expert.ReviewCourse({"course_id": first["course_id"], "outcome": "REVIEW_OUTCOME_REJECTED",
                         "reasons": ["目录不完整"]})
    again = provider.SubmitCourse({"course": course(1, provider=PROVIDER, title="重新上传"),
                                   "request_id": "int-2"})["course"]
    assert "CHECK_RULE_RESUBMITTED_UNCHANGED" in [f["rule"] for f in again["findings"]]
    with pytest.raises(RemoteError) as refused:
        expert.ReviewCourse({"course_id": again["course_id"],
                             "outcome": "REVIEW_OUTCOME_APPROVED"})
    assert refused.value.exc_type == "FailedPrecondition"
    listed = provider.SubmitCourse({"course": course(2, provider=PROVIDER),
                                    "request_id": "int-3"})["course"]
    expert.ReviewCourse({"course_id": listed["course_id"], "outcome": "REVIEW_OUTCOME_APPROVED"})
    case_id = provider.RecordLearning(learning("T-INT", listed["course_id"], employer="E-INT",
                                               minutes=50,
                                               flags=["PROCTORING_FLAG_PROXY_EXAM"]))["case_id"]
    regulator.ConfirmCheating({"case_id": case_id, "confirmed": True, "note": "代考"})
    regulator.SanctionProvider({
        "provider_id": PROVIDER, "kind": "PROVIDER_SANCTION_PERMANENT_DELISTING",
        "reason": "代考组织", "request_id": "int-s",
        "notice": {"notice_number": "N-INT", "findings": ["组织代考"]}})

    deadline = time.monotonic() + 10  # events arrive on the log service's own queue
    while time.monotonic() < deadline and not events("CourseDelisted"):
        time.sleep(0.1)
    assert [e["course_id"] for e in events("CourseSubmitted")] == [
        first["course_id"], again["course_id"], listed["course_id"]]
    assert events("CourseSubmitted")[1]["findings_count"] >= 1
    assert [e["outcome"] for e in events("CourseReviewed")] == [
        "REVIEW_OUTCOME_REJECTED", "REVIEW_OUTCOME_APPROVED"]
    assert events("CheatingCaseOpened")[0]["flags"] == ["PROXY_EXAM"]
    confirmed = events("CheatingConfirmed")[0]
    assert confirmed["minutes_zeroed"] == 50 and confirmed["employer_id"] == "E-INT"
    delisted = events("CourseDelisted")
    assert {e["course_id"] for e in delisted} >= {listed["course_id"]}
    assert all(e["permanent"] for e in delisted)
    assert all(e["meta"]["event_id"] for _, e in CourseEvents.seen)


def test_filtered_course_lists_page_through_in_key_order(courses, rpc_as):
    """ListCourses, each filter a caller can send and its next pages, on the real server:
    every match once, in course order, none of another (the regulator's state and provider,
    a provider's own in one state, the public's listed ones of a provider)."""
    providers, states = ("PROV-PG-1", "PROV-PG-2"), (SUBMITTED, LISTED, REJECTED)
    stored = []
    for n in range(13):
        record = CourseRecord(course_id=f"CRS-{n:02d}", provider_id=providers[n % 2],
                              state=states[n % 3], title=f"课程{n}", content_hash=f"h{n}")
        record.insert()
        stored.append(record)

    def pages(call, request):
        ids, token_ = [], ""
        while True:
            answer = call({**request, "page": {"page_size": 2, "page_token": token_}})
            ids += [c["course_id"] for c in answer.get("courses", [])]
            token_ = answer.get("page", {}).get("next_page_token", "")
            if not token_:
                return ids

    def expected(**match):
        found = [c.course_id for c in stored
                 if all(getattr(c, k) == v for k, v in match.items())]
        assert found, match  # each filter matches something
        return found

    regulator = rpc_as(token("regulator")).courses
    own = rpc_as(token("provider", party_id=providers[1])).courses
    anyone = rpc_as().courses
    assert pages(regulator.ListCourses, {}) == expected()
    assert pages(regulator.ListCourses, {"state": REJECTED}) == expected(state=REJECTED)
    assert pages(regulator.ListCourses, {"provider_id": providers[0]}) == expected(
        provider_id=providers[0])
    assert pages(regulator.ListCourses, {"provider_id": providers[0], "state": SUBMITTED}) == \
        expected(provider_id=providers[0], state=SUBMITTED)
    assert pages(own.ListCourses, {}) == expected(provider_id=providers[1])
    assert pages(own.ListCourses, {"state": LISTED}) == expected(provider_id=providers[1],
                                                                 state=LISTED)
    assert pages(anyone.ListCourses, {}) == expected(state=LISTED)
    assert pages(anyone.ListCourses, {"provider_id": providers[0]}) == expected(
        provider_id=providers[0], state=LISTED)
