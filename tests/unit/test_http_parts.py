"""The parts of the HTTP gateway and the rate limiter that need no server: path templates,
route precedence, requests from paths, query strings and bodies, client addresses behind
proxies, token buckets."""
from __future__ import annotations

import ipaddress

import pytest

from services.common import ratelimit
from services.common.errors import InvalidArgument, ResourceExhausted
from services.common.routes import RouteTable, build_request, compile_template, service_routes


def route(service, rpc, verb="get"):
    return next(r for r in service_routes(service) if r.rpc == rpc and r.verb == verb)


def test_templates_compile_to_anchored_patterns_with_their_variables():
    pattern, variables = compile_template("/v1/certificates/{certificate_number}:verify")
    assert variables == ("certificate_number",)
    assert pattern.fullmatch("/v1/certificates/S1:verify").groups() == ("S1",)
    assert pattern.fullmatch("/v1/certificates/S1") is None
    assert pattern.fullmatch("/v1/certificates/a/b:verify") is None
    pattern, variables = compile_template("/v1/{name=files/**}")
    assert pattern.fullmatch("/v1/files/a/b").groups() == ("files/a/b",)
    with pytest.raises(ValueError):
        compile_template("v1/no-slash")


def test_the_route_table_finds_the_rpc_and_tells_a_wrong_verb_from_no_route():
    table = RouteTable(service_routes("certificates"))
    found, values, _ = table.find("get", "/v1/certificates/S000041000123264000001:verify")
    assert found.rpc == "VerifyCertificate" and values == {
        "certificate_number": "S000041000123264000001"}
    assert table.find("get", "/v1/certificates/S1")[0].rpc == "GetCertificate"
    assert table.find("post", "/v1/certificates:invalidate")[0].rpc == "InvalidateCertificates"
    assert table.find("get", "/v1/certificates")[0].rpc == "ListCertificates"
    assert table.find("delete", "/v1/certificates") == (None, {}, True)
    assert table.find("get", "/v1/nowhere") == (None, {}, False)


def test_requests_come_from_the_path_the_query_string_and_the_body():
    verify = route("certificates", "VerifyCertificate")
    message = build_request(verify, {"certificate_number": "S1"}, "holder_name=%E5%BC%A0", b"")
    assert (message.certificate_number, message.holder_name) == ("S1", "张")
    listing = route("certificates", "ListCertificates")
    message = build_request(listing, {}, "page.page_size=5&skill_level=3&status="
                            "CERTIFICATE_STATUS_VALID&issuedFrom=2026-01-01", b"")
    assert message.page.page_size == 5 and message.skill_level == 3 and message.status == 1
    assert message.issued_from == "2026-01-01"  # the JSON name is accepted too
    posted = route("certificates", "VerifyCertificate", verb="post")
    message = build_request(posted, {"certificate_number": "S1"}, "",
                            '{"holder_name": "张三", "certificate_number": "S2"}'.encode())
    assert (message.certificate_number, message.holder_name) == ("S1", "张三")  # the path wins
    checks = route("filing", "ListQuotaUsage")
    assert build_request(checks, {}, "exceeded_only=true", b"").exceeded_only is True


@pytest.mark.parametrize("query, body", [
    ("no_such=1", b""), ("page=3", b""), ("skill_level=many", b""), ("exceeded_only=maybe", b""),
])
def test_what_is_not_the_request_message_is_refused(query, body):
    target = route("filing", "ListQuotaUsage") if "exceeded" in query else \
        route("certificates", "ListCertificates")
    with pytest.raises(InvalidArgument) as refused:
        build_request(target, {}, query, body)
    assert refused.value.reason == "MALFORMED_REQUEST"


@pytest.mark.parametrize("body", [b"{", b"[1]", b'{"rows": 5}', b"\xff"])
def test_a_body_that_is_not_the_message_is_refused(body):
    with pytest.raises(InvalidArgument):
        build_request(route("certificates", "IssueCertificates", verb="post"), {}, "", body)


def test_the_client_address_is_the_peer_unless_a_trusted_proxy_forwarded_it():
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    assert ratelimit.grpc_peer_address("ipv4:192.0.2.7:50000") == "192.0.2.7"
    assert ratelimit.grpc_peer_address("ipv6:[::1]:50000") == "::1"
    # grpcio 1.85 percent-encodes the brackets (and a zone's %): every IPv6 client was ""
    # before, one rate-limit bucket for all of them, and never a trusted proxy.
    assert ratelimit.grpc_peer_address("ipv6:%5B::1%5D:50000") == "::1"
    assert ratelimit.grpc_peer_address("ipv6:%5B2001:db8::7%5D:443") == "2001:db8::7"
    assert ratelimit.grpc_peer_address("ipv6:%5Bfe80::1%25eth0%5D:443") == "fe80::1"
    assert ratelimit.client_address("192.0.2.7", "203.0.113.9", trusted) == "192.0.2.7"
    assert ratelimit.client_address("10.1.2.3", "203.0.113.9, 10.9.9.9", trusted) == \
        "203.0.113.9"
    # A client's own X-Forwarded-For entry before the proxy's does not count.
    assert ratelimit.client_address("10.1.2.3", "1.1.1.1, 203.0.113.9", trusted) == \
        "203.0.113.9"
    assert ratelimit.client_address("10.1.2.3", "garbage", trusted) == "10.1.2.3"
    assert ratelimit.client_address("10.1.2.3", "203.0.113.9", ()) == "10.1.2.3"


def settings(monkeypatch, **env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ratelimit.RateLimitSettings()


def test_a_bucket_refills_at_the_rate_and_says_how_long_to_wait(monkeypatch):
    now = [0.0]
    refused = []
    limiter = ratelimit.RateLimiter(
        settings(monkeypatch, PUBLIC_RATE_LIMIT="60", PUBLIC_RATE_BURST="2",
                 PUBLIC_RATE_LIMITS="CheckName=6/1"),
        clock=lambda: now[0], on_limited=refused.append)
    limiter.check("a", "VerifyCertificate", "m")
    limiter.check("a", "VerifyCertificate", "m")
    with pytest.raises(ResourceExhausted) as over:
        limiter.check("a", "VerifyCertificate", "m")
    assert over.value.retry_after == pytest.approx(1.0)
    assert over.value.details()["retry_delay_seconds"] == 1.0
    limiter.check("b", "VerifyCertificate", "m")  # another address, its own bucket
    now[0] = 1.0
    limiter.check("a", "VerifyCertificate", "m")  # one token back after a second
    limiter.check("a", "CheckName", "m")          # its own figure: 6 a minute, burst 1
    with pytest.raises(ResourceExhausted) as over:
        limiter.check("a", "CheckName", "m")
    assert over.value.retry_after == pytest.approx(10.0)
    assert refused == ["m", "m"]


def test_the_buckets_are_bounded_and_the_limit_can_be_off(monkeypatch):
    limiter = ratelimit.RateLimiter(settings(monkeypatch, PUBLIC_RATE_BURST="1",
                                             RATE_LIMIT_MAX_CLIENTS="3"))
    for address in "abcd":
        limiter.check(address, "X", "m")
    assert len(limiter._buckets) == 3
    off = ratelimit.RateLimiter(settings(monkeypatch, PUBLIC_RATE_LIMIT="0"))
    for _ in range(100):
        off.check("a", "X", "m")


@pytest.mark.parametrize("text", ["CheckName", "CheckName=0", "CheckName=x/2", "=5",
                                  "CheckName=5/0"])
def test_wrong_overrides_stop_the_start_naming_the_variable(text):
    with pytest.raises(SystemExit, match="PUBLIC_RATE_LIMITS"):
        ratelimit.parse_overrides(text, ratelimit.Limit(60, 20))
