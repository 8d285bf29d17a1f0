"""Every List RPC reads through an index, on the real database server (issue 18).

Each List* method of each registered service (found in its proto: a new service's lists are
covered without a line here) is called on a running worker, first with the empty request (the
unfiltered, sorted list, the one that grows with the registry), then with its README example
(protos/examples/) and the filtered requests below. Every query the method sends to the
database is recorded (pymongo's command monitoring, only the commands sent from within that
method) and explained on the same server: no stage of a winning plan may be a COLLSCAN.

The server is secantusdb (tests/database.py). Its `explain` answers with the plan its own find
runs (it mirrors the same routing; checked by hand against executionStats' documents examined,
2026-11-22): an index serves a filter only when the index's leading fields cover the WHOLE
filter (equalities, then at most one range or `$in` last); a filter it does not cover, an
`$or`, a range on `_id` or a sort on `_id` scan the collection. MongoDB would use an index in
more of those cases; written for this server, the queries use one on both.
"""
from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone

import pytest
from nameko.exceptions import RemoteError
from pymongo import monitoring

from services.common import paging
from services.common.auth import verify_token
from services.common.identifiers import id_check_character
from services.common.protos import access_policies, service_proto
from services.common.spec import registry
from tests import database
from tests.platform import ROOT
from tests.support import token, uscc

READ_COMMANDS = ("find", "aggregate", "count", "distinct")


class Recorder(monitoring.CommandListener):
    """The read commands sent from within a frame of the method being checked (timers and
    heartbeats of the same worker run beside it: their queries are not the list's)."""

    def __init__(self):
        self.method: str | None = None
        self.commands: list[tuple[str, dict]] = []
        self.lock = threading.Lock()

    def started(self, event):
        if self.method is None or event.command_name not in READ_COMMANDS:
            return
        frame = sys._getframe(1)
        while frame is not None and frame.f_code.co_name != self.method:
            frame = frame.f_back
        if frame is None:
            return
        command = {k: v for k, v in event.command.items()
                   if k not in ("lsid", "$db", "$clusterTime", "$readPreference", "cursor",
                                "batchSize", "singleBatch")}
        if event.command_name == "aggregate":
            command["cursor"] = {}
        with self.lock:
            self.commands.append((event.database_name, command))

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


RECORDER = Recorder()
# Clients made from now on report to it (the workers' connections are made at their start).
monitoring.register(RECORDER)


def list_rpcs() -> list[tuple[str, str]]:
    return [(service, method.name) for service in sorted(registry())
            for method in service_proto(service).service_descriptor.methods
            if method.name.startswith("List")]


INSTITUTION = uscc(7)
HOLDER = "41050219900307001" + id_check_character("41050219900307001")
# Filtered requests beside the empty one and the README example (a filter is a query of its
# own: each needs its index).
FILTERED = {
    ("certificates", "ListCertificates"): [
        {"institution_id": INSTITUTION},
        {"institution_id": INSTITUTION, "exam_session_id": "AY-2026-001"},
        {"institution_id": INSTITUTION, "issued_from": "2026-01-01", "issued_to": "2026-12-31"},
        {"holder_id_number": HOLDER},
        {"status": "CERTIFICATE_STATUS_INVALIDATED"},
        {"institution_id": INSTITUTION, "status": "CERTIFICATE_STATUS_VALID"},
        {"page": {"page_size": 5, "page_token": ""}},
    ],
    ("filing", "ListRegister"): [{"occupation_code": "4-10-01-02"},
                                 {"district_code": "410502"}],
    ("transparency", "ListLogEntries"): [{"subject": f"institution:{INSTITUTION}"}],
    ("escrow", "ListLedgerEntries"): [{"institution_id": INSTITUTION}],
    ("escrow", "ListSchemes"): [{"institution_id": INSTITUTION}],
    ("escrow", "ListComplaints"): [{"institution_id": INSTITUTION},
                                   {"state": "COMPLAINT_STATE_OPEN"},
                                   {"institution_id": INSTITUTION,
                                    "state": "COMPLAINT_STATE_REFUNDED"}],
    ("courses", "ListCourses"): [{"state": "COURSE_STATE_SUBMITTED"},
                                 {"provider_id": "PROV-1"},
                                 {"provider_id": "PROV-1", "state": "COURSE_STATE_LISTED"}],
    ("reporting", "ListEditions"): [{"year": 2026}],
    ("filing", "ListApplications"): [{"institution_id": INSTITUTION},
                                     {"state": "APPLICATION_STATE_RECEIVED"},
                                     {"kind": "APPLICATION_KIND_NEW"}],
    ("grading", "ListGrades"): [
        {"year": 2025}, {"grade": "GRADE_A"}, {"district_code": "410502"},
        {"year": 2025, "grade": "GRADE_A"}, {"year": 2025, "district_code": "410502"},
        {"grade": "GRADE_A", "district_code": "410502"},
        {"year": 2025, "grade": "GRADE_A", "district_code": "410502"},
    ],
    ("grading", "ListRedList"): [{"year": 2025}, {"district_code": "410502"},
                                 {"year": 2025, "district_code": "410502"}],
    ("grading", "ListBlackList"): [{"district_code": "410502"}],
    ("inspection", "ListInspectors"): [{"region": "410502"}, {"employer_id": INSTITUTION},
                                       {"region": "410502", "employer_id": INSTITUTION}],
    ("inspection", "ListDraws"): [{"plan_id": "plan-2026"}],
    ("inspection", "ListCases"): [
        {"institution_id": INSTITUTION},
        {"subject_kind": "SUBJECT_KIND_TRAINING_INSTITUTION"},
        {"state": "CASE_STATE_OPEN"},
        {"origin": "CASE_ORIGIN_COMPLAINT"},
        {"kind": "INSPECTION_KIND_SPECIAL"},
        {"outcome": "CASE_OUTCOME_SUBSIDY_RECOVERED"},
        # an institution's own list, filtered (an institution's caller always has its id)
        {"institution_id": INSTITUTION, "state": "CASE_STATE_OPEN"},
        {"institution_id": INSTITUTION, "outcome": "CASE_OUTCOME_SUBSIDY_RECOVERED"},
        # a combination with no index of its own: the index of a part, the rest checked
        {"state": "CASE_STATE_OPEN", "origin": "CASE_ORIGIN_COMPLAINT",
         "kind": "INSPECTION_KIND_SPECIAL"},
    ],
    ("inspection", "ListPublishedResults"): [
        {"institution_id": INSTITUTION}, {"kind": "INSPECTION_KIND_SPECIAL"},
        {"institution_id": INSTITUTION, "kind": "INSPECTION_KIND_SPECIAL"}],
}


def example(service: str, method: str) -> list[dict]:
    path = ROOT / "protos" / "examples" / service / f"{method}.json"
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    return [] if "{{" in text else [json.loads(text)]


def caller_for(service: str, method: str) -> str:
    """A token the method's access policy lets in, the regulator's if it may."""
    policy = access_policies(service)[method]
    if policy is None or policy.public or "regulator" in policy.roles:
        return token("regulator")
    role = sorted(policy.roles)[0]
    return token(role, 7)


def plan_stages(plan) -> list[str]:
    """Every `stage` named anywhere in an explain answer's winning plans."""
    found = []
    if isinstance(plan, dict):
        for key, value in plan.items():
            if key == "rejectedPlans":
                continue
            if key == "stage":
                found.append(value)
            found.extend(plan_stages(value))
    elif isinstance(plan, list):
        for value in plan:
            found.extend(plan_stages(value))
    return found


@pytest.mark.parametrize(("service", "method"), list_rpcs())
def test_every_list_reads_through_an_index(service, method, start_service, rpc_as):
    """The first page and the next of the empty request, the example and the filters."""
    start_service(registry()[service].load_class())
    token_ = caller_for(service, method)
    proxy = getattr(rpc_as(token_), service)
    caller = verify_token(token_)
    firsts = [{}, *example(service, method), *FILTERED.get((service, method), [])]
    served = 0
    for request in firsts:
        if not check(service, method, proxy, request, empty_may_fail=not request):
            continue  # a list that needs a filter (ListLogEntries: a subject) refused {}
        served += 1
        # Its next page: the same filters, a token to continue after a key (a list pages by a
        # key or by a pair of them, e.g. ListCertificates over a period: [date, number]).
        for after in AFTER_KEYS:
            token = paging.encode_token(after, paging.binding(method, caller.audit_name(),
                                                              request),
                                        datetime.now(timezone.utc))
            if check(service, method, proxy, {**request, "page": {"page_token": token}}):
                break
        else:
            pytest.fail(f"{service}.{method}({request}): no next page token accepted")
    # A list that reads nothing from the database (ListAreas: the configured areas) passes.
    assert served, f"{service}.{method}: no request served; add one to FILTERED"


AFTER_KEYS = ("0", ["0", "0"])


def check(service: str, method: str, proxy, request: dict,
          empty_may_fail: bool = False) -> bool:
    """Call the method with `request` and explain what it asked the database; False if it
    refused the request's page token (a key of another shape than the list pages by) or,
    `empty_may_fail`, the request as a whole (a list that needs a filter)."""
    client = database.client()
    RECORDER.commands, RECORDER.method = [], method
    try:
        getattr(proxy, method)(request)
    except RemoteError as exc:
        if exc.exc_type == "InvalidArgument" and ("page_token" in str(exc.value)
                                                  or empty_may_fail):
            return False
        pytest.fail(f"{service}.{method}({request}) refused: {exc.exc_type} {exc.value}")
    finally:
        RECORDER.method = None
    for database_name, command in RECORDER.commands:
        answer = client[database_name].command({"explain": command})
        stages = plan_stages(answer.get("queryPlanner", answer))
        assert stages and "COLLSCAN" not in stages, (
            f"{service}.{method}({request}) scans a collection: {command} -> "
            f"{answer.get('queryPlanner', answer)}")
    return True


def test_a_page_of_several_values_is_each_value_merged_in_key_order(databases):
    """keyset_page(each_of=...) on the real server: one query per value, merged by the key;
    every page in order, each document once, none of another value."""
    import mongoengine as me

    from services.common.mongo import connect, disconnect
    from services.common.repository import keyset_page

    class PagedThing(me.Document):
        meta = {"db_alias": "paged_things", "collection": "things",
                "indexes": [("colour", "code")]}
        code = me.StringField(primary_key=True)
        colour = me.StringField()

    connect("paged_things", databases.uri("paged_things"))
    try:
        PagedThing.ensure_indexes()
        colours = ("red", "green", "blue")
        PagedThing.objects.insert([PagedThing(code=f"c{i:02d}", colour=colours[i % 3])
                                   for i in range(20)])
        seen, after = [], None
        while True:
            rows, after = keyset_page(PagedThing.objects(), "code", 3, after,
                                      each_of=("colour", ("red", "blue")))
            seen += [(r.code, r.colour) for r in rows]
            if after is None:
                break
        assert [code for code, _ in seen] == [f"c{i:02d}" for i in range(20) if i % 3 != 1]
        assert {colour for _, colour in seen} == {"red", "blue"}
    finally:
        disconnect("paged_things")
