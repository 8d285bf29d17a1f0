"""The conventions every service's protos follow, checked over every declared service (so a new
service cannot forget them), and the central check of requests against their limits."""
from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from services.common import limits
from services.common.api import check_message
from services.common.errors import InvalidArgument
from services.common.protos import service_proto
from services.common.spec import registry

NO_SIDE_EFFECTS = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
IDEMPOTENT = descriptor_pb2.MethodOptions.IDEMPOTENT


def services():
    return [service_proto(name).service_descriptor for name in registry()]


def test_every_string_and_repeated_field_of_every_request_declares_its_limit():
    missing = [problem for service in services()
               for message in limits.request_messages(service)
               for problem in limits.undeclared(message)]
    assert missing == [], "declare (vocreg.common.v1.field) = {max_length/max_items: N}"


def test_every_rpc_says_whether_it_changes_anything_and_every_change_takes_a_request_id():
    for service in services():
        for method in service.methods:
            level = method.GetOptions().idempotency_level
            assert level in (NO_SIDE_EFFECTS, IDEMPOTENT), \
                f"{method.full_name}: declare option idempotency_level"
            field = method.input_type.fields_by_name.get("request_id")
            rules = limits.field_rules(field) if field is not None else None
            if level == NO_SIDE_EFFECTS:
                assert field is None, f"{method.full_name}: a read takes no request_id"
            else:
                assert rules is not None and rules.request_id, \
                    f"{method.full_name}: a change takes request_id with its request_id rule"
                assert rules.max_length == 64, method.full_name


def refused(message: str, request: dict, service="certificates") -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        check_message(request, service, message, "request")
    return info.value.violations


def test_a_100_kb_row_ref_is_refused_without_being_quoted():
    violations = refused("IssueCertificatesRequest",
                         {"rows": [{"row_ref": "ok"}, {"row_ref": "x" * 100_000}]})
    assert violations == ["rows[1].row_ref: at most 64 characters (got 100000)"]


@pytest.mark.parametrize("character", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028"])
def test_control_characters_are_refused_in_nested_and_repeated_fields(character):
    violations = refused("SubmitApplicationRequest", {
        "institution": {"name": f"安阳{character}中心"},
        "scope": [{"occupation_name": "育婴员"}, {"occupation_name": f"x{character}"}],
        "materials": [{"document_uri": f"s3://{character}"}]}, "filing")
    code = f"U+{ord(character):04X}"
    assert violations == [f"institution.name: control character {code} is not allowed",
                          f"scope[1].occupation_name: control character {code} is not allowed",
                          f"materials[0].document_uri: control character {code} is not allowed"]


def test_an_unpaired_surrogate_is_refused_by_the_parse_already():
    [violation] = refused("CheckNameRequest", {"name": "a\ud800"}, "filing")
    assert "Unpaired surrogate" in violation
    assert limits.text_problem("a\udc00", 10, True) == "control character U+DC00 is not allowed"


def test_line_breaks_only_in_multiline_text():
    check_message({"note": "第一行\n第二行\r\n\t第三行", "decision_ref": "AY-1"}, "certificates",
                  "InvalidateCertificatesRequest", "request")
    assert refused("InvalidateCertificatesRequest", {"decision_ref": "AY\n1"}) == [
        "decision_ref: control character U+000A is not allowed"]
    assert refused("InvalidateCertificatesRequest", {"note": "a\x00b"}) == [
        "note: control character U+0000 is not allowed"]


def test_lists_are_bounded_and_a_refused_list_is_not_read_further():
    assert refused("IssueCertificatesRequest", {"rows": [{"row_ref": "x" * 99}] * 10_001}) == [
        "rows: at most 10000 entries (got 10001)"]
    numbers = refused("InvalidateCertificatesRequest",
                      {"selection": {"certificate_numbers": ["S"] * 1001}})
    assert numbers == ["selection.certificate_numbers: at most 1000 entries (got 1001)"]


def test_many_violations_are_listed_up_to_a_bound():
    violations = refused("IssueCertificatesRequest", {"rows": [{"row_ref": "x" * 65}] * 500})
    assert len(violations) == limits.MAX_VIOLATIONS + 1
    assert violations[-1] == "request: 450 more violations not listed"


def test_a_page_token_is_bounded_like_any_field():
    assert refused("ListRegisterRequest", {"page": {"page_token": "t" * 1025}}, "filing") == [
        "page.page_token: at most 1024 characters (got 1025)"]


def test_a_parse_error_does_not_quote_a_huge_value():
    [violation] = refused("IssueCertificatesRequest", {"rows": [{"skill_level": "9" * 100_000}]})
    assert len(violation) < 400


def test_a_well_formed_request_passes_and_comes_back_parsed():
    message = check_message({"rows": [{"row_ref": "r1", "holder_name": "张三"}]}, "certificates",
                            "IssueCertificatesRequest", "request")
    assert message.rows[0].holder_name == "张三"
