"""The course review's handlers with an in-memory unit of work: a course submitted, checked,
rejected, uploaded again unchanged and caught; repackaging and cross-provider reuse; copyright
conflicts; sanctions and rectification; learning, cheating again after rectification; item
statistics; ratings (refused without credited hours) and the ranking. No broker, no database."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from vocreg.courses.v1 import events_pb2

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.courses import handlers
from services.courses.domain import checks, lifecycle
from services.courses.models import (
    CheatingCase,
    CourseProvider,
    CourseRating,
    CourseRecord,
    EmployerStanding,
    TraineeLearning,
)
from services.courses.repository import CoursesRepository, stat_field
from services.courses.settings import CoursesSettings
from services.courses.signatures import SignatureIndex
from tests.course_builders import body_text, course, learning, provider_id, resource
from tests.fakes import FakeClock, FakeRepository, FakeUnitOfWork, caller, run


class FakeCoursesRepository(FakeRepository, CoursesRepository):
    def __init__(self):
        super().__init__("courses")
        self.sigs: dict[str, dict] = {}
        self.stats: dict[str, dict] = {}
        self.views: dict[str, dict] = {}

    def course(self, course_id):
        return self.load(CourseRecord, course_id)

    def read_course(self, course_id):
        return self.tracked(CourseRecord, course_id) or self.get(CourseRecord, course_id)

    def _courses(self):
        return self.all(CourseRecord)

    def courses_by_hash(self, content_hash):
        return [{"_id": c.course_id, "provider_id": c.provider_id, "state": c.state}
                for c in self._courses() if c.content_hash == content_hash]

    def courses_with_keys(self, keys):
        return [{"_id": c.course_id, "provider_id": c.provider_id, "state": c.state,
                 "resource_keys": list(c.resource_keys)}
                for c in self._courses() if set(c.resource_keys) & set(keys)]

    def course_facts(self, course_ids):
        ids = set(course_ids)
        return {c.course_id: {"_id": c.course_id, "provider_id": c.provider_id,
                              "state": c.state} for c in self._courses() if c.course_id in ids}

    def provider_courses(self, provider_id, states=None, ids=None):
        return self.load_all(CourseRecord, lambda c: c.provider_id == provider_id and (
            states is None or c.state in states) and (not ids or c.course_id in ids))

    def course_summaries(self, provider_id):
        return sorted((c for c in self._courses() if c.provider_id == provider_id),
                      key=lambda c: c.course_id)

    def list_page(self, filters, size, after):
        from tests.fakes import page_of
        docs = [c for c in self._courses()
                if all(getattr(c, k) == v for k, v in filters.items())]
        return page_of(docs, "course_id", size, after)

    def delete_course(self, course):
        self.store.pop((CourseRecord, course.course_id), None)
        self.seen = [a for a in self.seen if a is not course]
        return self.sigs.pop(course.course_id, None) is not None

    def store_signature(self, course_id, provider_id, sig):
        self.check_writable()
        minhash, shingles = sig.to_bytes()
        self.sigs[course_id] = {"minhash": minhash, "shingles": shingles, "size": sig.size,
                                "stored_at": datetime.now(timezone.utc)}

    def signatures(self, course_ids):
        from services.courses.domain.reuse import Signature
        return {k: Signature.from_bytes(self.sigs[k]["minhash"], self.sigs[k]["shingles"])
                for k in course_ids if k in self.sigs}

    def signature_entries(self, since=None, batch=1000):
        for k, d in list(self.sigs.items()):
            if since is None or d["stored_at"] >= since:
                yield k, d["minhash"], d["size"], d["stored_at"]

    def read_provider(self, provider_id):
        return self.tracked(CourseProvider, provider_id) or self.get(CourseProvider, provider_id)

    def provider(self, provider_id):
        return self.load(CourseProvider, provider_id)

    def learning(self, key):
        return self.load(TraineeLearning, key)

    def case(self, case_id):
        return self.load(CheatingCase, case_id)

    def cases(self, case_ids):
        return [self.get(CheatingCase, i) for i in case_ids if self.get(CheatingCase, i)]

    def employer(self, employer_id):
        return self.load(EmployerStanding, employer_id)

    def count_first_attempt(self, course_id, learning_key, passed, increments):
        stats = self.stats.setdefault(course_id, {"first_attempts": 0, "passed": 0,
                                                  "items": {}, "counted": []})
        if learning_key in stats["counted"]:
            return False
        stats["counted"].append(learning_key)
        stats["first_attempts"] += 1
        stats["passed"] += 1 if passed else 0
        for qid, sums in increments.items():
            item = stats["items"].setdefault(stat_field(qid), {})
            for k, v in sums.items():
                item[k] = item.get(k, 0) + v
        return True

    def item_stats(self, course_id):
        from services.courses.repository import question_of
        stats = self.stats.get(course_id, {"first_attempts": 0, "passed": 0, "items": {}})
        return {**stats, "items": {question_of(k): v for k, v in stats["items"].items()}}

    def rating(self, key):
        return self.load(CourseRating, key)

    def refresh_score(self, course, key, stars):
        ratings = [r.stars for r in self.all(CourseRating)
                   if r.course_id == course.course_id and r.key != key] + [stars]
        view = {"course_id": course.course_id, "provider_id": course.provider_id,
                "title": course.title, "listed": course.state == lifecycle.LISTED,
                "count": len(ratings), "total": float(sum(ratings)),
                "squares": float(sum(s * s for s in ratings))}
        self.views[course.course_id] = view
        return view

    def set_listed(self, course_id, listed):
        if course_id in self.views:
            self.views[course_id]["listed"] = listed

    def scores(self):
        return [dict(v) for v in self.views.values() if v["count"] > 0]

    def delete_views(self, course_id):
        self.views.pop(course_id, None)


SETTINGS = CoursesSettings()
PROVIDER = caller("provider", party_id=provider_id(1))
OTHER_PROVIDER = caller("provider", party_id=provider_id(2))
EXPERT = caller("expert")
REGULATOR = caller("regulator")


@pytest.fixture
def clock():
    clock = FakeClock()
    clock.set(2026, 6, 15)
    return clock


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeCoursesRepository(), events_pb2, clock, source="courses")


@pytest.fixture
def index():
    return SignatureIndex(SETTINGS.reuse_threshold)


def submit(uow, clock, index, data, who=PROVIDER, request_id="sub-1"):
    return run(handlers.submit_course, uow, clock, SETTINGS,
               {"course": data, "request_id": request_id}, who,
               reuse_index=index)["course"]


def review(uow, clock, course_id, outcome, reasons=("不合格",), who=EXPERT, request_id=None):
    request = {"course_id": course_id, "outcome": outcome, "reasons": list(reasons)}
    if request_id:
        request["request_id"] = request_id
    return run(handlers.review_course, uow, clock, SETTINGS, request, who)["course"]


def rules_of(course_view) -> list[str]:
    return [f["rule"] for f in course_view.get("findings", [])]


def test_submitted_checked_rejected_reuploaded_unchanged_and_caught(uow, clock, index):
    first = submit(uow, clock, index, course(1))
    assert first["state"] == lifecycle.SUBMITTED and rules_of(first) == []
    assert uow.events("CourseSubmitted")[0]["findings_count"] == 0
    check = run(handlers.check_course, uow, clock, SETTINGS, {"course_id": first["course_id"]},
                PROVIDER, reuse_index=index)
    assert check.get("findings", []) == [] and check["content_hash"] == first["content_hash"]
    rejected = review(uow, clock, first["course_id"], lifecycle.REJECT, ["题库过于简单"])
    assert rejected["state"] == lifecycle.REJECTED
    assert uow.events("CourseReviewed")[0]["outcome"] == lifecycle.REJECT
    again = submit(uow, clock, index, course(1, title="育婴员线上课程（新版）"), request_id="sub-2")
    found = [f for f in again["findings"] if f["rule"] == checks.RESUBMITTED_UNCHANGED]
    assert found and found[0]["related_course_id"] == first["course_id"]
    assert found[0]["severity"] == checks.ERROR
    # the reuse check does not report the same course a second time
    assert checks.CONTENT_REUSED not in rules_of(again)
    with pytest.raises(FailedPrecondition) as refused:
        review(uow, clock, again["course_id"], lifecycle.APPROVED, [])
    assert refused.value.reason == "COURSE_HAS_ERRORS"


def test_a_changed_course_after_rejection_is_not_unchanged(uow, clock, index):
    first = submit(uow, clock, index, course(1))
    review(uow, clock, first["course_id"], lifecycle.REJECT)
    changed = course(1)
    changed["resources"][0] = resource(1, 0, text="婴儿喂养的方法。" + body_text(4242, 600))
    again = submit(uow, clock, index, changed, request_id="sub-2")
    assert checks.RESUBMITTED_UNCHANGED not in rules_of(again)
    reused = [f for f in again["findings"] if f["rule"] == checks.CONTENT_REUSED]
    assert reused and reused[0]["related_course_id"] == first["course_id"]
    assert 0.6 < reused[0]["share"] < 0.95


def test_a_permanently_rejected_course_repackaged_is_caught(uow, clock, index):
    first = submit(uow, clock, index, course(1))
    review(uow, clock, first["course_id"], lifecycle.REJECT_PERMANENTLY, ["抄袭"])
    repackaged = course(1, title="全新育婴课程")
    repackaged["introduction"] = "全新改版的育婴课程。"
    repackaged["resources"] = list(reversed(repackaged["resources"]))
    again = submit(uow, clock, index, repackaged, request_id="sub-2")
    found = [f for f in again["findings"] if f["rule"] == checks.REPACKAGED]
    assert found and found[0]["related_course_id"] == first["course_id"]


def test_reuse_across_providers_is_found_and_the_same_resource_is_a_copyright_conflict(
        uow, clock, index):
    first = submit(uow, clock, index, course(1))
    copied = course(2, provider=provider_id(2))
    copied["resources"][0] = resource(1, 0)  # the same media file and text as provider 1's
    second = submit(uow, clock, index, copied, who=OTHER_PROVIDER, request_id="sub-2")
    conflict = [f for f in second["findings"] if f["rule"] == checks.COPYRIGHT_SAME_RESOURCE]
    assert conflict and conflict[0]["related_provider_id"] == provider_id(1)
    assert conflict[0]["items"] == ["resources r0"]
    assert second["conflicts"][0]["state"] == lifecycle.CONFLICT_OPEN
    mirrored = uow.repo.get(CourseRecord, first["course_id"]).conflicts
    assert mirrored[0]["other_provider_id"] == provider_id(2)
    assert {e["course_id"] for e in uow.events("CopyrightConflictOpened")} == {
        first["course_id"], second["course_id"]}
    with pytest.raises(FailedPrecondition):
        review(uow, clock, second["course_id"], lifecycle.APPROVED, [])
    run(handlers.resolve_copyright_conflict, uow, clock, SETTINGS, {
        "course_id": second["course_id"], "conflict_id": conflict[0]["conflict_id"],
        "resolution": lifecycle.CONFLICT_CONFIRMED, "note": "授权书已核实"}, REGULATOR)
    assert review(uow, clock, second["course_id"], lifecycle.APPROVED, [])["state"] == \
        lifecycle.LISTED


def test_rights_holder_without_proof_opens_a_conflict(uow, clock, index):
    view = submit(uow, clock, index, course(1, rights_holder="SOMEONE-ELSE", proofs=[]))
    found = [f for f in view["findings"] if f["rule"] == checks.COPYRIGHT_HOLDER]
    assert found and found[0]["conflict_id"] == view["conflicts"][0]["conflict_id"]


def test_bad_input_and_wrong_roles_store_nothing(uow, clock, index):
    bad = course(1, hours=-1)
    with pytest.raises(InvalidArgument) as refused:
        submit(uow, clock, index, bad)
    assert any(v.startswith("course.class_hours") for v in refused.value.violations)
    with pytest.raises(InvalidArgument):
        run(handlers.submit_course, uow, clock, SETTINGS, {"course": course(1)}, PROVIDER,
            reuse_index=index)
    assert uow.repo.all(CourseRecord) == [] and uow.repo.sigs == {}
    view = submit(uow, clock, index, course(1))
    with pytest.raises(PermissionDenied):
        run(handlers.get_course, uow, clock, SETTINGS, {"course_id": view["course_id"]},
            OTHER_PROVIDER)
    with pytest.raises(NotFound):
        run(handlers.get_course, uow, clock, SETTINGS, {"course_id": "nope"}, EXPERT)


def test_the_same_request_again_answers_as_the_first_and_other_content_is_refused(
        uow, clock, index):
    first = submit(uow, clock, index, course(1))
    assert submit(uow, clock, index, course(1)) == first
    assert len(uow.repo.all(CourseRecord)) == 1
    with pytest.raises(AlreadyExists):
        submit(uow, clock, index, course(2))


def test_delete_takes_the_signature_with_it(uow, clock, index):
    view = submit(uow, clock, index, course(1))
    answer = run(handlers.delete_course, uow, clock, SETTINGS,
                 {"course_id": view["course_id"]}, PROVIDER, reuse_index=index)
    assert answer == {"course_id": view["course_id"], "signature_deleted": True}
    assert uow.repo.sigs == {} and uow.repo.all(CourseRecord) == []
    again = submit(uow, clock, index, course(1), request_id="sub-2")
    assert checks.CONTENT_REUSED not in rules_of(again)


def test_a_permanently_rejected_course_is_kept_from_its_provider(uow, clock, index):
    view = submit(uow, clock, index, course(1))
    review(uow, clock, view["course_id"], lifecycle.REJECT_PERMANENTLY)
    with pytest.raises(FailedPrecondition):
        run(handlers.delete_course, uow, clock, SETTINGS, {"course_id": view["course_id"]},
            PROVIDER, reuse_index=index)


def listed(uow, clock, index, n=1, who=PROVIDER):
    view = submit(uow, clock, index, course(n, provider=who.party_id), who=who,
                  request_id=f"sub-{n}")
    return review(uow, clock, view["course_id"], lifecycle.APPROVED, [])["course_id"]


def test_public_list_shows_listed_courses_only(uow, clock, index):
    listed_id = listed(uow, clock, index, 1)
    submit(uow, clock, index, course(2), request_id="sub-x")
    public = run(handlers.list_courses, uow, clock, SETTINGS, {}, caller("regulator"))
    assert len(public["courses"]) == 2
    anyone = run(handlers.list_courses, uow, clock, SETTINGS, {},
                 caller("expert").__class__("anonymous", None))
    assert [c["course_id"] for c in anyone["courses"]] == [listed_id]


def test_temporary_delisting_is_lifted_by_accepted_rectification(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    issue = run(handlers.record_provider_issue, uow, clock, SETTINGS, {
        "provider_id": provider_id(1), "kind": "PROVIDER_ISSUE_KIND_QUESTION_BANK_LEAKED",
        "description": "题库在网上出售", "request_id": "iss-1"}, REGULATOR)["issue"]
    sanction = run(handlers.sanction_provider, uow, clock, SETTINGS, {
        "provider_id": provider_id(1), "kind": lifecycle.TEMPORARY_DELISTING,
        "reason": "题库泄露", "issue_ids": [issue["issue_id"]], "request_id": "sanc-1",
        "notice": {"notice_number": "京人社整改〔2026〕1号", "findings": ["题库泄露"],
                   "requirements": ["更换题库"], "due_on": "2026-07-15"}}, REGULATOR)["sanction"]
    assert sanction["course_ids"] == [course_id]
    assert uow.repo.get(CourseRecord, course_id).state == lifecycle.DELISTED_TEMPORARILY
    assert uow.events("CourseDelisted")[0]["permanent"] is False
    provider = run(handlers.get_provider, uow, clock, SETTINGS,
                   {"provider_id": provider_id(1)}, PROVIDER)["provider"]
    assert provider["standing"] == lifecycle.STANDING_RECTIFYING
    accepted = run(handlers.accept_rectification, uow, clock, SETTINGS, {
        "provider_id": provider_id(1), "sanction_id": sanction["sanction_id"],
        "report_ref": "整改报告2026-01"}, REGULATOR)
    assert accepted["relisted_course_ids"] == [course_id]
    assert uow.repo.get(CourseRecord, course_id).state == lifecycle.LISTED
    with pytest.raises(FailedPrecondition):
        run(handlers.accept_rectification, uow, clock, SETTINGS, {
            "provider_id": provider_id(1), "sanction_id": sanction["sanction_id"],
            "report_ref": "again"}, REGULATOR)


def test_a_rectification_without_its_notice_is_refused(uow, clock, index):
    with pytest.raises(InvalidArgument) as refused:
        run(handlers.sanction_provider, uow, clock, SETTINGS, {
            "provider_id": provider_id(1), "kind": lifecycle.RECTIFICATION, "reason": "x",
            "notice": {"notice_number": "N1", "findings": ["f"]}, "request_id": "s"},
            REGULATOR)
    assert "notice.requirements: at least one reason is required" in refused.value.violations
    assert any(v.startswith("notice.due_on") for v in refused.value.violations)


def test_permanent_delisting_stops_new_submissions(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    run(handlers.sanction_provider, uow, clock, SETTINGS, {
        "provider_id": provider_id(1), "kind": lifecycle.PERMANENT_DELISTING, "reason": "屡教不改",
        "notice": {"notice_number": "N2", "findings": ["屡次违规"]}, "request_id": "s2"},
        REGULATOR)
    assert uow.repo.get(CourseRecord, course_id).state == lifecycle.DELISTED_PERMANENTLY
    with pytest.raises(FailedPrecondition):
        submit(uow, clock, index, course(3), request_id="sub-3")


# --- learning, cheating, statistics, ratings -------------------------------------------------
def report(uow, clock, data, who=REGULATOR):
    return run(handlers.record_learning, uow, clock, SETTINGS, data, who)


def confirm(uow, clock, case_id, confirmed=True):
    return run(handlers.confirm_cheating, uow, clock, SETTINGS, {
        "case_id": case_id, "confirmed": confirmed, "note": "核实为代学"}, REGULATOR)


def rectify(uow, clock, employer="EMP-1"):
    return run(handlers.accept_employer_rectification, uow, clock, SETTINGS, {
        "employer_id": employer, "interviewed_on": "2026-06-10", "report_ref": "书面整改报告",
        "pledge_signed": True}, REGULATOR)["employer"]


def test_cheating_again_after_rectification_loses_the_subsidy(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    first = report(uow, clock, learning("T1", course_id, minutes=90,
                                        flags=["PROCTORING_FLAG_PROXY_LEARNING"]))
    assert first["case_id"] and uow.events("CheatingCaseOpened")[0]["flags"] == ["PROXY_LEARNING"]
    answer = confirm(uow, clock, first["case_id"])
    assert answer["cheating_case"]["minutes_zeroed"] == 90
    assert answer["employer"]["standing"] == "EMPLOYER_STANDING_RECTIFICATION_REQUIRED"
    assert answer["employer"]["interview_required"] and answer["employer"]["pledge_required"]
    assert answer["employer"]["subsidy_eligible"] is True
    record = uow.repo.get(TraineeLearning, handlers.learning_key("T1", course_id))
    assert record.credited_minutes == 0 and record.zeroed_minutes == 90
    assert rectify(uow, clock)["standing"] == "EMPLOYER_STANDING_RECTIFIED"
    second = report(uow, clock, learning("T2", course_id, flags=["PROCTORING_FLAG_PROXY_EXAM"]))
    again = confirm(uow, clock, second["case_id"])
    assert again["employer"]["standing"] == "EMPLOYER_STANDING_SUBSIDY_REVOKED"
    assert again["employer"].get("subsidy_eligible") is None  # false: left out as proto3 does
    assert again["employer"]["revoked_by_case_id"] == second["case_id"]
    assert [c["case_id"] for c in again["employer"]["cases"]] == [first["case_id"],
                                                                  second["case_id"]]
    event = uow.events("CheatingConfirmed")[-1]
    assert event["subsidy_revoked"] and event["repeat_after_rectification"]
    status = run(handlers.get_employer_status, uow, clock, SETTINGS, {"employer_id": "EMP-1"},
                 caller("employer", party_id="EMP-1"))["employer"]
    assert status["standing"] == "EMPLOYER_STANDING_SUBSIDY_REVOKED"
    with pytest.raises(PermissionDenied):
        run(handlers.get_employer_status, uow, clock, SETTINGS, {"employer_id": "EMP-1"},
            caller("employer", party_id="EMP-2"))


def test_cheating_twice_before_rectification_keeps_the_subsidy(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    for trainee in ("T1", "T2"):
        case_id = report(uow, clock, learning(trainee, course_id,
                                              flags=["PROCTORING_FLAG_FACE_RECOGNITION_EVADED"]))["case_id"]
        answer = confirm(uow, clock, case_id)
    assert answer["employer"]["standing"] == "EMPLOYER_STANDING_RECTIFICATION_REQUIRED"
    assert answer["employer"]["subsidy_eligible"] is True


def test_a_dismissed_case_changes_nothing(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    case_id = report(uow, clock, learning("T1", course_id, minutes=30,
                                          flags=["PROCTORING_FLAG_PROXY_EXAM"]))["case_id"]
    answer = confirm(uow, clock, case_id, confirmed=False)
    assert answer["cheating_case"]["state"] == "CASE_STATE_DISMISSED"
    assert uow.repo.get(TraineeLearning, handlers.learning_key("T1", course_id)).credited_minutes == 30
    with pytest.raises(FailedPrecondition):
        rectify(uow, clock)


def test_item_statistics_are_kept_from_first_attempts_only(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    for i in range(5):
        answers = {f"q{j}": j <= i * 2 for j in range(10)}
        report(uow, clock, learning(f"T{i}", course_id, first=(i >= 1, answers)))
    # a second attempt of T0 does not move the statistics
    second = learning("T0", course_id, request_id="again")
    second["attempts"] = [{"attempt_number": 2, "taken_on": "2026-06-02", "passed": True,
                           "responses": [{"question_id": "q9", "correct": True}]}]
    report(uow, clock, second)
    stats = run(handlers.get_item_statistics, uow, clock, SETTINGS, {"course_id": course_id},
                PROVIDER)
    assert stats["first_attempts"] == 5 and stats["first_attempts_passed"] == 4
    assert stats["first_attempt_pass_rate"] == 0.8 and stats["too_easy"] is True
    by_id = {i["question_id"]: i for i in stats["items"]}
    assert by_id["q0"]["facility"] == 1.0 and by_id["q9"].get("facility", 0) == 0
    assert by_id["q4"]["correct"] == 3
    assert by_id["q4"]["discrimination"] > 0


def test_rating_needs_credited_hours_and_a_second_rating_changes_the_first(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    trainee = caller("trainee", party_id="T1")
    with pytest.raises(FailedPrecondition) as refused:
        run(handlers.rate_course, uow, clock, SETTINGS, {"course_id": course_id, "stars": 5},
            trainee)
    assert refused.value.reason == "NO_CREDITED_HOURS"
    assert uow.repo.all(CourseRating) == []
    report(uow, clock, learning("T1", course_id, minutes=45))
    first = run(handlers.rate_course, uow, clock, SETTINGS, {"course_id": course_id, "stars": 5},
                trainee)
    assert first["stars"] == 5 and not first.get("changed")
    second = run(handlers.rate_course, uow, clock, SETTINGS,
                 {"course_id": course_id, "stars": 3}, trainee)
    assert second["changed"] and second["score"]["ratings"] == 1 and second["score"]["mean"] == 3
    assert len(uow.repo.all(CourseRating)) == 1


def test_hours_zeroed_by_cheating_cannot_rate(uow, clock, index):
    course_id = listed(uow, clock, index, 1)
    case_id = report(uow, clock, learning("T1", course_id, minutes=45,
                                          flags=["PROCTORING_FLAG_PROXY_LEARNING"]))["case_id"]
    confirm(uow, clock, case_id)
    with pytest.raises(FailedPrecondition):
        run(handlers.rate_course, uow, clock, SETTINGS, {"course_id": course_id, "stars": 5},
            caller("trainee", party_id="T1"))


def test_top_courses_rank_by_the_shrunk_score_with_mean_count_and_interval(uow, clock, index):
    one_five = listed(uow, clock, index, 1)
    many_fours = listed(uow, clock, index, 2)
    poor = listed(uow, clock, index, 3)
    unrated = listed(uow, clock, index, 4)

    def rate(course_id, trainee, stars):
        report(uow, clock, learning(trainee, course_id, minutes=30))
        run(handlers.rate_course, uow, clock, SETTINGS, {"course_id": course_id,
                                                         "stars": stars},
            caller("trainee", party_id=trainee))

    rate(one_five, "A0", 5)
    for i in range(12):
        rate(many_fours, f"B{i}", 4 if i % 4 else 5)
    for i in range(10):
        rate(poor, f"C{i}", 2)
    top = run(handlers.list_top_courses, uow, clock, SETTINGS, {}, caller("regulator"))
    ids = [c["course_id"] for c in top["courses"]]
    # the prior is the mean of the three rated courses' means: (5 + 4.25 + 2) / 3 = 3.75
    assert top["prior_mean"] == 3.75
    assert ids == [many_fours, one_five, poor] and unrated not in ids
    best = top["courses"][0]
    assert best["rank"] == 1 and best["ratings"] == 12 and best["mean"] == 4.25
    assert best["interval_low"] < best["mean"] < best["interval_high"]
    assert top["courses"][1]["mean"] == 5 and top["courses"][1]["score"] < 5
    first = run(handlers.list_top_courses, uow, clock, SETTINGS, {"page": {"page_size": 2}},
                caller("regulator"))
    assert [c["rank"] for c in first["courses"]] == [1, 2]
    rest = run(handlers.list_top_courses, uow, clock, SETTINGS, {"page": {
        "page_size": 2, "page_token": first["page"]["next_page_token"]}}, caller("regulator"))
    assert [c["course_id"] for c in rest["courses"]] == [poor] and rest["courses"][0]["rank"] == 3
    assert not rest["page"].get("next_page_token")
