"""HTTP/JSON through the edge's gateway: every route of the platform's services answers, the
answers are gRPC's (same data, same codes, the same structured details as JSON), the OpenAPI
document is valid, and anonymous callers of public RPCs are rate-limited per address
(429 with Retry-After, RESOURCE_EXHAUSTED over gRPC, counted in the metrics).

Plain pytest (grpcio must not run under eventlet)."""
from __future__ import annotations

import re

import grpc
import pytest
import requests
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.routes import all_routes
from tests.e2e.grpc_client import Certificates, Filing
from tests.platform import Platform
from tests.support import token

pytestmark = pytest.mark.e2e

SERVICES = ("filing", "certificates", "transparency")


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("http"), services=SERVICES)
    # ListQuotaUsage has a small limit of its own: the rate-limit test exhausts it.
    started.edge_env = {"PUBLIC_RATE_LIMITS": "ListQuotaUsage=6/3", "PUBLIC_RATE_LIMIT": "600",
                        "PUBLIC_RATE_BURST": "200"}
    started.start()
    yield started
    codes = started.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{started.logs()}"


def get(plat, path, role=None, headers=None, **kwargs):
    headers = dict(headers or {})
    if role:
        headers["Authorization"] = f"Bearer {token(role)}"
    return requests.get(plat.http_url + path, headers=headers, timeout=15, **kwargs)


def grpc_status(call, *args):
    try:
        call(*args)
    except grpc.RpcError as exc:
        return rpc_status.from_call(exc)
    raise AssertionError("the call succeeded")


def details_of(status: status_pb2.Status) -> dict:
    """The typed details of a google.rpc.Status by their short type name."""
    found = {}
    for any_detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                     error_details_pb2.RetryInfo, error_details_pb2.PreconditionFailure):
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    return found


def http_details(body: dict) -> dict:
    return {d["@type"].rpartition(".")[2]: d for d in body.get("details", [])}


def test_every_route_of_the_platform_answers(plat):
    """Each route reaches its RPC: an answer from the edge or the worker, never 'no route'."""
    for route in all_routes(SERVICES):
        path = re.sub(r"\{[^}]+\}", "x", route.template)
        answer = requests.request(route.verb.upper(), plat.http_url + path, json={}
                                  if route.body else None, timeout=15)
        body = answer.json()
        assert answer.status_code != 404 or http_details(body)["ErrorInfo"]["reason"] \
            != "ROUTE_NOT_FOUND", route.template
        assert answer.status_code in (200, 400, 401, 403, 404, 409), (route.template, body)
        if answer.status_code != 200:
            assert body["code"] and body["message"], body


def test_public_reads_answer_as_grpc_does(plat):
    anonymous = Filing(plat.channel)
    assert get(plat, "/v1/areas").json() == anonymous.ListAreas({})
    assert get(plat, "/v1/names:check", params={"name": "郑州市职业技能评价中心"}).json() == \
        anonymous.CheckName({"name": "郑州市职业技能评价中心"})
    assert get(plat, "/v1/register", params={"page.page_size": "5"}).json() == \
        anonymous.ListRegister({"page": {"page_size": 5}})
    number = "S000041000123264000001"
    over_http = get(plat, f"/v1/certificates/{number}:verify", params={"holder_name": "张三"})
    posted = requests.post(f"{plat.http_url}/v1/certificates/{number}:verify",
                           json={"holder_name": "张三"}, timeout=15)
    over_grpc = Certificates(plat.channel).VerifyCertificate(
        {"certificate_number": number, "holder_name": "张三"})
    assert over_http.json() == posted.json() == over_grpc
    assert over_grpc["result"] == "VERIFICATION_RESULT_NOT_FOUND"


def test_refusals_carry_the_grpc_code_message_and_details_as_json(plat):
    # No token for a regulator's read: 401, UNAUTHENTICATED (16), the same ErrorInfo.
    answer = get(plat, "/v1/pendingDecisions")
    assert answer.status_code == 401 and answer.json()["code"] == 16
    status = grpc_status(Filing(plat.channel).ListPendingDecisions, {})
    assert answer.json()["message"] == status.message
    info = http_details(answer.json())["ErrorInfo"]
    assert info["reason"] == details_of(status)["ErrorInfo"].reason == "TOKEN_REQUIRED"
    assert info["domain"] == "vocreg.filing"
    # A token whose role may not: 403.
    assert get(plat, "/v1/pendingDecisions", role="inspector").status_code == 403
    # With the regulator's token it answers.
    assert get(plat, "/v1/pendingDecisions", role="regulator").status_code == 200
    # Field limits: 400 with BadRequest field violations, as over gRPC.
    answer = get(plat, "/v1/certificates/" + "9" * 40 + ":verify", params={"holder_name": "张"})
    assert answer.status_code == 400 and answer.json()["code"] == 3
    violations = http_details(answer.json())["BadRequest"]["fieldViolations"]
    assert violations[0]["field"] == "certificate_number"
    status = grpc_status(Certificates(plat.channel).VerifyCertificate,
                         {"certificate_number": "9" * 40, "holder_name": "张"})
    assert [v.field for v in details_of(status)["BadRequest"].field_violations] == \
        [v["field"] for v in violations]
    # What is not the message: 400 MALFORMED_REQUEST; an unknown route: 404; a wrong verb: 405.
    answer = requests.post(plat.http_url + "/v1/applications", data=b"{not json",
                           headers={"Content-Type": "application/json"}, timeout=15)
    assert answer.status_code == 400
    assert http_details(answer.json())["ErrorInfo"]["reason"] == "MALFORMED_REQUEST"
    assert get(plat, "/v1/register", params={"no_such_field": "1"}).status_code == 400
    assert get(plat, "/v1/nothing-here").status_code == 404
    assert requests.delete(plat.http_url + "/v1/register", timeout=15).status_code == 405
    # The deadline header, gRPC's format: a malformed one is refused.
    assert get(plat, "/v1/areas", headers={"grpc-timeout": "soon"}).status_code == 400
    assert get(plat, "/v1/areas", headers={"grpc-timeout": "5S"}).status_code == 200


def test_the_openapi_document_is_served_and_valid(plat):
    from openapi_spec_validator import validate

    document = get(plat, "/openapi.json").json()
    validate(document)
    operation = document["paths"]["/v1/certificates/{certificate_number}:verify"]["get"]
    assert operation["security"] == [{}, {"bearer": []}]
    assert "429" in operation["responses"]
    assert {p["name"] for p in operation["parameters"]} == {"certificate_number", "holder_name"}


def test_anonymous_calls_of_a_public_rpc_are_limited_per_address(plat):
    """ListQuotaUsage: 6 a minute, bursts of 3 (PUBLIC_RATE_LIMITS), over HTTP and gRPC."""
    anonymous = Filing(plat.channel)
    codes = [get(plat, "/v1/quotaUsage").status_code for _ in range(4)]
    assert codes[0] == 200 and codes[-1] == 429, codes  # other tests may have taken some
    refused = get(plat, "/v1/quotaUsage")
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    body = refused.json()
    assert body["code"] == 8 and http_details(body)["ErrorInfo"]["reason"] == "RATE_LIMITED"
    assert http_details(body)["RetryInfo"]["retryDelay"].endswith("s")
    # Over gRPC too (the channel may come from ::1, a bucket of its own, or 127.0.0.1).
    status = None
    for _ in range(5):
        try:
            anonymous.ListQuotaUsage({})
        except grpc.RpcError as exc:
            status = rpc_status.from_call(exc)
            break
    assert status is not None and status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert details_of(status)["RetryInfo"].retry_delay.ToNanoseconds() > 0
    # A caller with a token is known: not limited per address.
    assert get(plat, "/v1/quotaUsage", role="regulator").ok
    # Another public RPC has its own bucket.
    assert get(plat, "/v1/areas").ok
    metrics = plat.metrics("edge")
    assert re.search(r'vocreg_rate_limited_total\{method="/vocreg.filing.v1.FilingService/'
                     r'ListQuotaUsage"\} [2-9]', metrics), metrics[-2000:]
    assert re.search(r'vocreg_http_calls_total\{grpc_code="RESOURCE_EXHAUSTED",method="vocreg.filing'
                     r'.v1.FilingService/ListQuotaUsage"\} [1-9]', metrics), metrics[-3000:]


def test_the_page_and_health_are_served(plat):
    page = get(plat, "/")
    assert page.ok and page.headers["Content-Type"].startswith("text/html")
    assert 'content="filing,certificates,transparency"' in page.text
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert get(plat, "/healthz").text == "ok\n"
