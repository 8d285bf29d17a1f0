"""The edge's pure parts: nameko's wire format, undecodable bytes, reflection v1, JSON logs."""
import json
import logging

import pytest
from google.protobuf import descriptor_pool
from vocreg.filing.v1 import filing_pb2

from services.common import amqp_rpc, logs
from services.common.edge import REFLECTION_V1, Undecodable, reflection_v1_file, tolerant_parser


def test_a_request_is_a_nameko_rpc_message_that_expires_with_the_deadline():
    message = amqp_rpc.request_message({"institution_id": "X"}, {
        "auth_token": "t0k", "call_id_stack": ["edge.GetInstitution.c1"], "skip": None},
        reply_to="r1", correlation_id="c1", timeout=2.5)
    assert json.loads(message.body) == {"args": [{"institution_id": "X"}], "kwargs": {}}
    assert message.properties["content_type"] == "application/json"
    assert message.properties["reply_to"] == "r1"
    assert message.properties["correlation_id"] == "c1"
    assert message.properties["delivery_mode"] == 1  # not persistent
    assert message.properties["expiration"] == "2500"
    assert message.properties["application_headers"] == {
        "nameko.auth_token": "t0k", "nameko.call_id_stack": ["edge.GetInstitution.c1"]}
    no_payload = amqp_rpc.request_message(None, {}, "r", "c", 0.0001)
    assert json.loads(no_payload.body)["args"] == []
    assert no_payload.properties["expiration"] == "1"


def test_a_reply_is_the_result_or_the_workers_error_with_its_args():
    assert amqp_rpc.parse_reply(b'{"result": {"a": 1}, "error": null}') == {"a": 1}
    with pytest.raises(amqp_rpc.RemoteCallError) as caught:
        amqp_rpc.parse_reply(json.dumps({"result": None, "error": {
            "exc_type": "NotFound", "exc_path": "services.common.errors.NotFound",
            "exc_args": ["no such id", {"reason": "NOT_FOUND"}], "value": "no such id"}}))
    assert (caught.value.exc_type, caught.value.value) == ("NotFound", "no such id")
    assert caught.value.exc_args == ["no such id", {"reason": "NOT_FOUND"}]
    for garbage in (b"\xff\xfe", b"[1, 2]", b"{not json"):
        with pytest.raises(amqp_rpc.RemoteCallError) as caught:
            amqp_rpc.parse_reply(garbage)
        assert caught.value.exc_type == "MalformedReply"  # not in the error table: INTERNAL


def test_connection_parameters_from_the_amqp_uri():
    params = amqp_rpc.connection_params("amqp://u:p%40ss@rabbit:5673/vh")
    assert (params["host"], params["userid"], params["password"], params["virtual_host"]) == (
        "rabbit:5673", "u", "p@ss", "vh")
    assert params["heartbeat"] == 0 and not params["ssl"]
    assert amqp_rpc.connection_params("amqp://guest:guest@localhost:5672/")["virtual_host"] == "/"
    secure = amqp_rpc.connection_params("amqps://u:p@rabbit/")
    assert secure["ssl"] and secure["host"] == "rabbit:5671"
    with pytest.raises(ValueError):
        amqp_rpc.connection_params("redis://localhost")


@pytest.mark.parametrize("data", [b"\xff", b"\x0a\x05abc", b"\x0a\x02\xc3\x28",
                                  b"\x0a" + b"\xff" * 20])
def test_undecodable_bytes_become_a_marker_not_an_exception(data):
    parsed = tolerant_parser(filing_pb2.GetInstitutionRequest)(data)
    assert isinstance(parsed, Undecodable) and parsed.size == len(data)


def test_decodable_bytes_parse_as_the_request():
    request = filing_pb2.GetInstitutionRequest(institution_id="X")
    assert tolerant_parser(filing_pb2.GetInstitutionRequest)(request.SerializeToString()) == request


def test_reflection_v1_is_v1alpha_under_its_own_package():
    reflection_v1_file()
    reflection_v1_file()  # idempotent
    service = descriptor_pool.Default().FindServiceByName(REFLECTION_V1)
    method = service.methods_by_name["ServerReflectionInfo"]
    assert method.input_type.full_name == "grpc.reflection.v1.ServerReflectionRequest"
    assert service.file.name == "grpc/reflection/v1/reflection.proto"


def test_json_log_lines_carry_fields_and_exceptions():
    formatter = logs.JsonFormatter(process="edge")
    record = logging.LogRecord("vocreg.access", logging.INFO, __file__, 1, "grpc call %s",
                               ("done",), None)
    record.fields = {"method": "/x/Y", "code": "OK", "message": "never overwritten"}
    line = formatter.format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "grpc call done" and entry["process"] == "edge"
    assert (entry["method"], entry["code"], entry["level"]) == ("/x/Y", "OK", "INFO")
    assert entry["time"].endswith("Z")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys
        failed = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed\nacross lines", (),
                                   sys.exc_info())
    entry = json.loads(formatter.format(failed))
    assert "RuntimeError: boom" in entry["exception"] and entry["message"] == "failed\nacross lines"


def test_a_configuration_error_is_logged_not_printed(caplog):
    log = logging.getLogger("vocreg.test")
    with caplog.at_level(logging.CRITICAL):
        assert logs.fail(log, "configuration error: X") == 1
    assert caplog.records[-1].getMessage() == "configuration error: X"
    assert logs.fail(log, 3) == 3 and logs.fail(log, None) == 0


def test_a_request_without_a_json_form_is_invalid_argument():
    from google.protobuf import timestamp_pb2

    from services.common.edge import request_payload
    from services.common.errors import InvalidArgument

    assert request_payload(filing_pb2.GetInstitutionRequest(institution_id="X")) == {
        "institution_id": "X"}
    with pytest.raises(InvalidArgument, match="Timestamp is not valid") as caught:
        request_payload(timestamp_pb2.Timestamp(seconds=2**62))
    assert caught.value.reason == "MALFORMED_REQUEST"


def test_a_response_is_checked_once_by_whoever_receives_it():
    """The worker checks every request (the handlers use the parsed message); its response it
    leaves to the edge, which parses it into the response message anyway, only for the call
    the edge sent."""
    from google.protobuf.json_format import ParseError

    from services.common.api import CallInfo, api
    from services.common.errors import InvalidArgument

    class Filing:
        name = "filing"

        @api
        def ListRegister(self, request, caller):
            return {"entries": "not a list"}  # a bug the receiver's parse catches

    service = Filing()
    service.call = CallInfo(token=None, call_id="c1", checked="filing.ListRegister")
    assert service.ListRegister({}) == {"entries": "not a list"}  # the edge will refuse it
    with pytest.raises(InvalidArgument, match="page_size"):  # requests: always checked
        service.ListRegister({"page": {"page_size": "not a number"}})
    # Anyone else, or the flag carried on from another method's call: checked here.
    for checked in (None, "certificates.IssueCertificates", "filing.GetInstitution"):
        service.call = CallInfo(token=None, call_id="c2", checked=checked)
        with pytest.raises(ParseError):
            service.ListRegister({})


def test_the_edge_reads_what_has_arrived_and_keeps_the_rest_for_the_next_frame():
    transport = object.__new__(amqp_rpc._BufferedTransport)
    chunks, asked = [b"abcdefgh", TimeoutError(), b"ij"], []

    def recv(size):
        asked.append(size)
        chunk = chunks.pop(0)
        if isinstance(chunk, Exception):
            raise chunk
        return chunk

    transport._quick_recv, transport._read_buffer = recv, b""
    transport.raise_on_initial_eintr = True
    assert transport._read(3) == b"abc" and asked == [amqp_rpc.READ_CHUNK]
    assert transport._read(3) == b"def" and len(asked) == 1  # no system call: buffered
    with pytest.raises(TimeoutError):
        transport._read(4)
    assert transport._read_buffer == b"gh"  # nothing lost to the timeout
    assert transport._read(4) == b"ghij" and transport._read_buffer == b""


def test_eventlet_tracebacks_become_json_log_lines(caplog):
    class Hub:
        removed = []

        def remove_descriptor(self, fileno):
            self.removed.append(fileno)

    hub = Hub()
    logs.route_eventlet_tracebacks(hub)
    try:
        raise ValueError("in a greenthread")
    except ValueError:
        import sys
        info = sys.exc_info()
    with caplog.at_level(logging.ERROR, logger="eventlet.hub"):
        hub.squelch_generic_exception(info)
        hub.squelch_timer_exception(object(), info)
        hub.squelch_exception(7, info)
    assert [r.getMessage() for r in caplog.records] == [
        "greenthread failed", "timer failed", "callback on descriptor 7 failed; removing it"]
    assert all(r.exc_info[0] is ValueError for r in caplog.records) and hub.removed == [7]
    line = json.loads(logs.JsonFormatter(process="worker:x").format(caplog.records[0]))
    assert "ValueError: in a greenthread" in line["exception"]
