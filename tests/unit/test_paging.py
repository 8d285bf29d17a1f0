"""Page tokens (services/common/paging.py): opaque, signed, bound to the RPC, the caller and the
filters, expiring; and every List RPC paged, ListPendingDecisions and ListAreas included."""
from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from vocreg.filing.v1 import events_pb2

from services.common import paging
from services.common.auth import ANONYMOUS
from services.common.entrypoints import Command
from services.common.errors import InvalidArgument
from services.common.spec import registry
from services.filing import handlers
from services.filing.settings import FilingSettings
from tests.fakes import FakeClock, FakeUnitOfWork, caller, run
from tests.support import application_request, uscc
from tests.unit.test_filing_handlers import FakeFilingRepository, file_institution

SETTINGS = FilingSettings()
REGULATOR = caller("regulator")


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def uow(clock):
    return FakeUnitOfWork(FakeFilingRepository(), events_pb2, clock, "filing")


def cmd(request, rpc="ListRegister", who=ANONYMOUS):
    return Command(request, who, "", rpc)


def first_token(clock, request=None, rpc="ListRegister", who=ANONYMOUS):
    page = paging.page(cmd(request or {}, rpc, who), clock.now())
    return page.response("S000041000001")["next_page_token"]


def with_token(request, token):
    return {**request, "page": {"page_token": token}}


def test_a_token_continues_the_same_request(clock):
    request = {"occupation_code": "4-10-01-02"}
    token = first_token(clock, request)
    assert paging.page(cmd(with_token(request, token)), clock.now()).after == "S000041000001"
    # page_size may change; a default value written out is the same filter
    again = {**request, "district_code": "", "page": {"page_token": token, "page_size": 50}}
    assert paging.page(cmd(again), clock.now()).size == 50


def test_a_token_is_not_readable_json_and_a_forged_one_is_refused(clock):
    token = first_token(clock)
    payload, _, signature = token.partition(".")
    assert signature and "S000041000001" not in token  # the key is inside, base64, signed
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["a"] = "S000041000099"  # jump elsewhere
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    for bad in (f"{forged}.{signature}", payload, token[:-2] + "xx", "garbage!!",
                base64.urlsafe_b64encode(b'{"after": "S000041000001"}').decode()):
        with pytest.raises(InvalidArgument) as info:
            paging.page(cmd(with_token({}, bad)), clock.now())
        assert info.value.violations == [paging.NOT_OURS]


def test_a_token_reused_with_other_filters_another_method_or_caller_is_refused(clock):
    token = first_token(clock, {"occupation_code": "4-10-01-02"})
    for request, rpc, who in (({"occupation_code": "6-01-02-03"}, "ListRegister", ANONYMOUS),
                              ({}, "ListRegister", ANONYMOUS),
                              ({"occupation_code": "4-10-01-02"}, "ListApplications", ANONYMOUS),
                              ({"occupation_code": "4-10-01-02"}, "ListRegister", REGULATOR)):
        with pytest.raises(InvalidArgument) as info:
            paging.page(cmd(with_token(request, token), rpc, who), clock.now())
        assert info.value.violations == [paging.OTHER_REQUEST]


def test_a_token_expires(clock):
    token = first_token(clock)
    later = clock.now() + paging.TOKEN_TTL + timedelta(seconds=1)
    with pytest.raises(InvalidArgument) as info:
        paging.page(cmd(with_token({}, token)), later)
    assert info.value.violations == [paging.EXPIRED]


def test_a_token_of_another_deployment_is_refused(clock, monkeypatch):
    token = first_token(clock)
    monkeypatch.setenv("VOCREG_PAGE_TOKEN_SECRET", "another-deployment-key-0123456789")
    paging._key.cache_clear()
    try:
        with pytest.raises(InvalidArgument, match="not a token this service issued"):
            paging.page(cmd(with_token({}, token)), clock.now())
    finally:
        monkeypatch.delenv("VOCREG_PAGE_TOKEN_SECRET")
        paging._key.cache_clear()


def test_a_short_page_token_key_stops_the_worker(monkeypatch):
    from services.common import config

    monkeypatch.setenv("VOCREG_PAGE_TOKEN_SECRET", "short")
    with pytest.raises(SystemExit, match="VOCREG_PAGE_TOKEN_SECRET"):
        config.page_token_secret()


def test_size_and_token_problems_are_reported_together(clock):
    with pytest.raises(InvalidArgument) as info:
        paging.page(cmd({"page": {"page_size": 101, "page_token": "x"}}), clock.now())
    assert info.value.violations == ["page.page_size: must be 1-100 (0 for 20)", paging.NOT_OURS]


# --- every List RPC pages ------------------------------------------------------------------
def test_every_list_rpc_takes_a_page_and_answers_a_next_page_token():
    from services.common.protos import service_proto

    for name in registry():
        for method in service_proto(name).service_descriptor.methods:
            if not method.name.startswith("List"):
                continue
            page_in = method.input_type.fields_by_name.get("page")
            page_out = method.output_type.fields_by_name.get("page")
            assert page_in is not None and \
                page_in.message_type.full_name == "vocreg.common.v1.PageRequest", method.full_name
            assert page_out is not None and \
                page_out.message_type.full_name == "vocreg.common.v1.PageResponse", method.full_name


def pages(handler, uow, clock, request, who, size, key):
    """Every page of a list, following next_page_token; the entries under `key`."""
    seen, token, count = [], "", 0
    while True:
        answer = run(handler, uow, clock, SETTINGS,
                     {**request, "page": {"page_size": size, "page_token": token}}, who)
        seen.append(answer)
        count += 1
        token = answer.get("page", {}).get("next_page_token", "")
        if not token or count > 50:
            return seen


def test_list_areas_pages_through_the_configured_areas(uow, clock):
    answers = pages(handlers.list_areas, uow, clock, {}, ANONYMOUS, 5, "areas")
    areas = [a for answer in answers for a in answer["areas"]]
    assert [a["district_code"] for a in areas] == sorted(SETTINGS.areas)
    assert len(answers) == -(-len(SETTINGS.areas) // 5)
    wenfeng = next(a for a in areas if a["district_code"] == "410502")
    assert wenfeng == {"district_code": "410502", "name": SETTINGS.areas["410502"][0],
                       "kind": "AREA_KIND_DISTRICT", "quota_per_occupation": 3}
    county = next(a for a in areas if a["kind"] == "AREA_KIND_COUNTY")
    assert county["quota_per_occupation"] == 2


def test_the_in_tray_pages_decisions_and_proposals_each_on_its_own(uow, clock):
    for n in range(1, 6):
        run(handlers.submit_application, uow, clock, SETTINGS, application_request(n),
            caller("institution", uscc(n)))
    answers = pages(handlers.list_pending_decisions, uow, clock, {}, REGULATOR, 2, "decisions")
    ids = [d["application_id"] for answer in answers for d in answer["decisions"]]
    assert len(ids) == 5 == len(set(ids)) and len(answers) == 3
    everything = run(handlers.list_pending_decisions, uow, clock, SETTINGS, {}, REGULATOR)
    assert ids == [d["application_id"] for d in everything["decisions"]]
    assert everything["page"]["next_page_token"] == ""
    assert all(a["city_quota"] == 40 for a in answers)


def test_the_register_token_is_bound_to_its_filters(uow, clock):
    file_institution(uow, clock, 1, "410502")
    file_institution(uow, clock, 2, "410502")
    first = run(handlers.list_register, uow, clock, SETTINGS,
                {"district_code": "410502", "page": {"page_size": 1}}, ANONYMOUS)
    token = first["page"]["next_page_token"]
    with pytest.raises(InvalidArgument, match="issued for another request"):
        run(handlers.list_register, uow, clock, SETTINGS,
            {"district_code": "410522", "page": {"page_token": token}}, ANONYMOUS)
    rest = run(handlers.list_register, uow, clock, SETTINGS,
               {"district_code": "410502", "page": {"page_token": token}}, ANONYMOUS)
    assert len(rest["entries"]) == 1 and rest["page"]["next_page_token"] == ""
