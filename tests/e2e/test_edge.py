"""The edge as a client meets it: malformed bytes, structured and bounded errors, a worker that
dies, reflection v1, JSON logs with an access line per call, identity-provider tokens, TLS.

Plain pytest: grpcio must not run under eventlet's monkey patching.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from grpc_status import rpc_status

from services.common.errors import MAX_MESSAGE_BYTES, encoded_size
from services.common.protos import service_proto
from tests.e2e.grpc_client import Certificates, Filing
from tests.identity import AUDIENCE, ISSUER, IdentityProvider, self_signed_certificate
from tests.platform import FILING, Platform, eventually, free_port
from tests.support import application_request, token, uscc

pytestmark = pytest.mark.e2e

SERVICES = ("filing", "certificates")
# Bytes no request message decodes from: a truncated varint, a length past the end, wire type 7.
UNDECODABLE = (b"\xff", b"\x0a\x05ab", b"\x0f")


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    platform = Platform(tmp_path_factory.mktemp("edge"), services=SERVICES).start()
    yield platform
    codes = platform.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{platform.logs()}"


def refusal(call, *args, **kwargs):
    """(code, message, {detail name: message}) of a refused call; fails if it succeeded."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        status = rpc_status.from_call(exc)
        assert status is not None, f"no grpc-status-details-bin on {exc.code()}: {exc.details()}"
        assert status.code == exc.code().value[0] and status.message == exc.details()
        details = {}
        for detail in status.details:
            for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                         error_details_pb2.PreconditionFailure):
                if detail.Is(kind.DESCRIPTOR):
                    details[kind.DESCRIPTOR.name] = kind()
                    detail.Unpack(details[kind.DESCRIPTOR.name])
        return exc.code(), exc.details(), details
    raise AssertionError("the call succeeded")


def log_lines(plat, name: str) -> list[dict]:
    text = (plat.tmp_path / f"{name}.log").read_text()
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line is one JSON object


# --- malformed requests -----------------------------------------------------------------
def test_undecodable_bytes_are_invalid_argument_on_every_method(plat):
    asked = 0
    for service in SERVICES:
        proto = service_proto(service)
        for method in proto.service_descriptor.methods:
            call = plat.channel.unary_unary(f"/{proto.full_name}/{method.name}")
            for data in UNDECODABLE:
                code, message, details = refusal(call, data, timeout=5)
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method.name, data)
                assert message == f"request: not a valid {method.input_type.full_name} message"
                assert details["ErrorInfo"].reason == "MALFORMED_REQUEST"
                assert details["ErrorInfo"].domain == f"vocreg.{service}"
                asked += 1
    assert asked == 3 * (len(service_proto("filing").service_descriptor.methods)
                         + len(service_proto("certificates").service_descriptor.methods))
    edge = log_lines(plat, "edge")
    assert not [e for e in edge if e["level"] in ("ERROR", "CRITICAL") or "exception" in e]
    malformed = [e for e in edge if e.get("reason") == "MALFORMED_REQUEST"]
    assert len(malformed) >= asked and all(e["level"] == "INFO" for e in malformed)


# --- structured errors --------------------------------------------------------------------
def test_invalid_argument_has_field_violations_with_their_paths(plat):
    bad = application_request(301)
    bad["institution"]["district_code"] = "999999"
    bad["scope"][0]["skill_levels"] = [9]
    code, message, details = refusal(Filing(plat.channel, "institution", 301).SubmitApplication,
                                     bad)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    fields = {v.field: v.description for v in details["BadRequest"].field_violations}
    assert "institution.district_code" in fields and "scope[0].skill_levels" in fields
    assert (details["ErrorInfo"].reason, details["ErrorInfo"].domain) == (
        "INVALID_ARGUMENT", "vocreg.filing")
    assert all(description in message for description in fields.values())


def test_refusals_at_the_edge_have_stable_reasons(plat):
    institution = Filing(plat.channel, "institution", 302)
    app = institution.SubmitApplication(application_request(302))["application"]
    cases = [
        (Filing(plat.channel).GetApplication, grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REQUIRED"),
        (Filing(plat.channel, metadata=(("authorization", "Bearer x.y.z"),)).GetApplication,
         grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID"),
        (Filing(plat.channel, metadata=(("authorization", "Basic abc"),)).GetApplication,
         grpc.StatusCode.UNAUTHENTICATED, "AUTHORIZATION_MALFORMED"),
        (Filing(plat.channel, "inspector").AcceptApplication, grpc.StatusCode.PERMISSION_DENIED,
         "ROLE_NOT_ALLOWED"),
        (Filing(plat.channel, "institution", 303).GetApplication,
         grpc.StatusCode.PERMISSION_DENIED, "NOT_OWN_INSTITUTION"),
        (Filing(plat.channel, "regulator").GetApplication, None, None),
    ]
    for call, code, reason in cases:
        if code is None:
            assert call({"application_id": app["application_id"]})["application"]
            continue
        got, _, details = refusal(call, {"application_id": app["application_id"]})
        assert (got, details["ErrorInfo"].reason) == (code, reason)


def test_a_blocking_state_is_a_precondition_failure(plat):
    institution = f"{uscc(304)}"
    code, message, details = refusal(
        Certificates(plat.channel, "institution", 304).IssueCertificates,
        {"exam_session_id": "s-1", "assessment_date": "2026-01-05", "rows": [{
            "row_ref": "1", "holder_name": "张三", "holder_id_number": "11010519491231002X",
            "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4}]})
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not filed" in message
    assert (details["ErrorInfo"].reason, details["ErrorInfo"].domain) == (
        "INSTITUTION_NOT_FILED", "vocreg.certificates")
    [violation] = details["PreconditionFailure"].violations
    assert (violation.type, violation.subject) == ("INSTITUTION_NOT_FILED",
                                                  f"institution/{institution}")


def test_huge_values_are_refused_with_a_short_answer(plat):
    """No refusal may become RESOURCE_EXHAUSTED (gRPC's 8-16 KB trailer limit) or INTERNAL."""
    huge = "9" * 100_000
    regulator = Filing(plat.channel, "regulator")
    everywhere = application_request(305)
    for key in ("name", "legal_representative", "address", "district_code", "contact_phone"):
        everywhere["institution"][key] = "名" * 20_000
    everywhere["scope"] = [{"occupation_code": "9" * 5000, "occupation_name": "名" * 5000,
                            "skill_levels": [9]} for _ in range(20)]
    calls = [
        (regulator.GetInstitution, {"institution_id": huge}),
        (regulator.GetApplication, {"application_id": huge}),
        (Filing(plat.channel, "institution", 305).SubmitApplication, everywhere),
        (Certificates(plat.channel).VerifyCertificate,
         {"certificate_number": huge, "holder_name": "名" * 50_000}),
        (Certificates(plat.channel, "regulator").GetCertificate, {"certificate_number": huge}),
    ]
    for call, request in calls:
        code, message, details = refusal(call, request)
        assert code not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL,
                            grpc.StatusCode.UNKNOWN), (call, code, message)
        assert encoded_size(message) <= MAX_MESSAGE_BYTES
        assert huge not in message and "名" * 100 not in message
        assert "ErrorInfo" in details


# --- a worker that dies ---------------------------------------------------------------------
def test_a_killed_worker_fails_calls_fast_and_comes_back(tmp_path):
    plat = Platform(tmp_path).start()
    try:
        public = Filing(plat.channel)
        assert "entries" not in public.ListRegister({})
        worker = plat.procs["worker"]
        # A call in flight when the worker dies: the stopped worker holds the request, then
        # dies, and the broker puts it back on a queue nobody consumes.
        worker.send_signal(signal.SIGSTOP)
        answers = []
        pending = threading.Thread(
            target=lambda: answers.append(refusal(public.ListRegister, {}, timeout=30)))
        pending.start()
        time.sleep(0.5)
        plat.stopped.add("worker")
        worker.kill()
        worker.wait(timeout=10)
        pending.join(timeout=25)
        assert answers, "the call waited out its deadline"
        code, message, details = answers[0]
        assert code == grpc.StatusCode.UNAVAILABLE and "not running" in message
        assert details["ErrorInfo"].reason == "SERVICE_NOT_RUNNING"
        # New calls fail at once, long before their deadline; the service is unready.
        code, _, _ = refusal(public.ListRegister, {}, timeout=30)
        assert code == grpc.StatusCode.UNAVAILABLE
        assert plat.health(FILING) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert plat.health("") == health_pb2.HealthCheckResponse.SERVING
        plat.start_worker()
        plat.wait_for_health(FILING, health_pb2.HealthCheckResponse.SERVING)
        assert "entries" not in public.ListRegister({})
    finally:
        plat.stop()


# --- reflection -------------------------------------------------------------------------------
def test_reflection_v1_is_served_beside_v1alpha(plat):
    for version in ("v1", "v1alpha"):
        info = plat.channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
        requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                    reflection_pb2.ServerReflectionRequest(
                        file_containing_symbol="grpc.reflection.v1.ServerReflection"),
                    reflection_pb2.ServerReflectionRequest(file_containing_symbol=FILING)]
        listed, own_file, filing_file = list(info(iter(requests), timeout=5))
        names = {s.name for s in listed.list_services_response.service}
        assert {FILING, "vocreg.certificates.v1.CertificateRegistry", "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection"} <= names, version
        assert own_file.file_descriptor_response.file_descriptor_proto, version
        assert filing_file.file_descriptor_response.file_descriptor_proto, version


# --- logs -------------------------------------------------------------------------------------
def test_every_process_logs_json_with_one_access_line_per_call(plat):
    secret_name, secret_address = "安阳市日志测试职业技能培训中心", "河南省安阳市秘密路77号"
    request = application_request(306, name=secret_name)
    request["institution"]["address"] = secret_address
    Filing(plat.channel, "institution", 306).SubmitApplication(request)
    refusal(Filing(plat.channel, "inspector").SubmitApplication, request)

    def access_lines():
        return [e for e in log_lines(plat, "edge") if e["logger"] == "vocreg.access"
                and e["method"] == "/vocreg.filing.v1.FilingService/SubmitApplication"]

    lines = eventually(lambda: len(access_lines()) >= 2 and access_lines(), what="access lines")
    ok = [e for e in lines if e["code"] == "OK" and e["subject"] == "institution-306"]
    denied = [e for e in lines if e["code"] == "PERMISSION_DENIED" and e["role"] == "inspector"]
    assert ok and denied and ok[0]["role"] == "institution"
    assert set(ok[0]) >= {"time", "level", "process", "method", "code", "duration_ms",
                          "call_id", "role", "subject"}
    assert denied[0]["reason"] == "ROLE_NOT_ALLOWED"
    for name in ("edge", "worker", "worker-certificates"):
        text = (plat.tmp_path / f"{name}.log").read_text()
        entries = log_lines(plat, name)  # raises if any line is not JSON
        assert entries and {e["process"] for e in entries} <= {"edge", "worker:filing",
                                                                "worker:certificates"}
        assert secret_name not in text and secret_address not in text
        assert "Eventlet is deprecated" not in text


# --- identity from an identity provider ---------------------------------------------------------
def test_identity_provider_tokens_are_accepted_and_development_ones_refused(tmp_path):
    idp = IdentityProvider()
    idp.add_key("rsa-1", "RS256")
    idp.add_key("ec-1", "ES256")
    production = {"VOCREG_JWKS_URL": str(idp.write_jwks(tmp_path / "jwks.json")),
                  "VOCREG_JWT_ISSUER": ISSUER, "VOCREG_JWT_AUDIENCE": AUDIENCE,
                  "VOCREG_JWT_SECRET": "bus-secret-" + "x" * 32}
    plat = Platform(tmp_path, services=SERVICES, **production)
    plat.edge_env = production
    plat.start()
    try:
        def as_(token_, client=Filing):
            return client(plat.channel, metadata=(("authorization", f"Bearer {token_}"),))

        assert "entries" not in as_(idp.token("rsa-1", role="regulator")).ListApplications({})
        institution = as_(idp.token("ec-1", role="institution", sub="inst-a",
                                    institution_id=uscc(307)))
        app = institution.SubmitApplication(application_request(307))["application"]
        assert app["state"] == "APPLICATION_STATE_RECEIVED"
        code, _, details = refusal(as_(token("regulator")).ListApplications, {})
        assert (code, details["ErrorInfo"].reason) == (grpc.StatusCode.UNAUTHENTICATED,
                                                       "TOKEN_ALGORITHM_REFUSED")
        code, _, details = refusal(as_(idp.token("rsa-1", audience="another-api")).ListApplications,
                                   {})
        assert (code, details["ErrorInfo"].reason) == (grpc.StatusCode.UNAUTHENTICATED,
                                                       "TOKEN_INVALID")
        # certificates asks filing with its own service token (HS256, on the bus only):
        # filing answers "not filed", not "unauthenticated".
        code, message, _ = refusal(
            as_(idp.token("rsa-1", role="institution", sub="inst-b", institution_id=uscc(308)),
                Certificates).IssueCertificates,
            {"exam_session_id": "s", "assessment_date": "2026-01-05", "rows": [{
                "row_ref": "1", "holder_name": "张三", "holder_id_number": "11010519491231002X",
                "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4}]})
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "not filed" in message
    finally:
        plat.stop()


# --- TLS ------------------------------------------------------------------------------------
def test_tls_from_a_certificate_and_key_reloaded_when_renewed(tmp_path):
    cert, key = self_signed_certificate(tmp_path, "first")
    plat = Platform(tmp_path)
    probe_port = free_port()
    plat.edge_env = {"EDGE_TLS_CERT_FILE": str(cert), "EDGE_TLS_KEY_FILE": str(key),
                     "EDGE_PROBE_PORT": str(probe_port)}
    plat.tls_root = cert.read_bytes()
    plat.start()
    try:
        assert "entries" not in Filing(plat.channel).ListRegister({})
        with grpc.insecure_channel(f"localhost:{plat.grpc_port}") as plaintext:
            with pytest.raises(grpc.RpcError) as refused:
                Filing(plaintext).ListRegister({}, timeout=3)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # Kubernetes' gRPC probes speak plaintext: the probe port serves health, nothing else.
        with grpc.insecure_channel(f"localhost:{probe_port}") as probe:
            assert health_pb2_grpc.HealthStub(probe).Check(
                health_pb2.HealthCheckRequest(service=FILING), timeout=3).status == \
                health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as other:
                Filing(probe).ListRegister({}, timeout=3)
            assert other.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The certificate is renewed in place (as a Secret volume is): new connections get it.
        renewed_cert, renewed_key = self_signed_certificate(tmp_path, "renewed")
        os.replace(renewed_key, key)
        os.replace(renewed_cert, cert)
        renewed = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"localhost:{plat.grpc_port}", renewed) as channel:
            assert "entries" not in Filing(channel).ListRegister({}, timeout=5)
        old = grpc.ssl_channel_credentials(plat.tls_root)
        with grpc.secure_channel(f"localhost:{plat.grpc_port}", old) as channel:
            with pytest.raises(grpc.RpcError):
                Filing(channel).ListRegister({}, timeout=3)
    finally:
        plat.stop()


def test_the_launcher_logs_json_too(tmp_path):
    """`make run`'s launcher: here, refusing to start without a broker, in one JSON line."""
    import subprocess
    import sys

    from tests.platform import ROOT

    done = subprocess.run([sys.executable, "-m", "services.run"], cwd=ROOT, capture_output=True,
                          text=True, timeout=30,
                          env={**os.environ, "AMQP_URI": f"amqp://guest:guest@127.0.0.1:{free_port()}/"})
    assert done.returncode == 2 and not done.stdout
    [entry] = [json.loads(line) for line in done.stderr.splitlines()]
    assert (entry["process"], entry["level"]) == ("run", "CRITICAL")
    assert "RabbitMQ is not reachable" in entry["message"]


def test_paging_and_retry_refusals_name_their_reason_and_field(plat):
    code, _, details = refusal(Filing(plat.channel).ListRegister,
                               {"page": {"page_token": "forged.token"}})
    assert (code, details["ErrorInfo"].reason) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                   "PAGE_TOKEN_INVALID")
    assert [v.field for v in details["BadRequest"].field_violations] == ["page.page_token"]
    institution = Filing(plat.channel, "institution", 309)
    institution.SubmitApplication(application_request(309, request_id="retry-309"))
    changed = application_request(309, request_id="retry-309")
    changed["institution"]["contact_phone"] = "0372-5999999"
    code, _, details = refusal(institution.SubmitApplication, changed)
    assert (code, details["ErrorInfo"].reason) == (grpc.StatusCode.ALREADY_EXISTS,
                                                   "REQUEST_ID_REUSED")


def test_an_unknown_method_is_unimplemented_with_details(plat):
    for path, domain in (("/vocreg.filing.v1.FilingService/NoSuchMethod", "vocreg.filing"),
                         ("/no.such.v1.Service/Method", "vocreg.edge")):
        code, _, details = refusal(plat.channel.unary_unary(path), b"", timeout=5)
        assert code == grpc.StatusCode.UNIMPLEMENTED
        assert (details["ErrorInfo"].reason, details["ErrorInfo"].domain) == (
            "METHOD_NOT_FOUND", domain)
    # What is served is still served.
    assert plat.health("") == health_pb2.HealthCheckResponse.SERVING
    Filing(plat.channel).ListRegister({})
