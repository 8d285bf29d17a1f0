"""Public verification (services/certificates/public.py), the one implementation the worker's
handler and the edge both run, on an in-memory lookup: the answers a member of the public
relies on, the masking, the counter, and bad questions."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from services.certificates import domain, public
from services.common.errors import InvalidArgument

NUMBER = "S000041000123264000001"


def holder_id() -> str:
    first17 = "41050219900307001"
    return first17 + domain.id_check_character(first17)


def stored(**changes) -> dict:
    record = {"certificate_number": NUMBER, "holder_name": "欧阳娜娜",
              "holder_id_number": holder_id(), "occupation_code": "4-10-01-02",
              "occupation_name": "育婴员", "skill_level": 4, "issued_on": "2026-06-15",
              "issuer_name": "安阳市第1职业技能培训评价中心", "status": domain.VALID}
    record.update(changes)
    return record


def lookup_of(*records):
    by_number = {r["certificate_number"]: r for r in records}
    asked = []

    def lookup(number):
        asked.append(number)
        return by_number.get(number)

    lookup.asked = asked
    return lookup


def counted(result: str) -> float:
    return REGISTRY.get_sample_value("vocreg_certificate_verifications_total",
                                     {"result": result}) or 0.0


def test_a_valid_certificate_is_answered_masked():
    before = counted("valid")
    answer = public.verify({"certificate_number": NUMBER, "holder_name": "欧阳娜娜"},
                           lookup_of(stored()))
    assert answer == {
        "result": "VERIFICATION_RESULT_VALID", "certificate_number": NUMBER,
        "holder_name_masked": "欧**娜",
        "holder_id_number_masked": holder_id()[:3] + "*" * 11 + holder_id()[-4:],
        "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4,
        "issued_on": "2026-06-15", "issuer_name": "安阳市第1职业技能培训评价中心"}
    assert holder_id() not in str(answer) and "欧阳娜娜" not in str(answer)
    assert counted("valid") == before + 1


def test_the_number_is_normalised_and_the_name_s_typing_noise_ignored():
    lookup = lookup_of(stored(holder_name="阿依古丽·买买提"))
    answer = public.verify({"certificate_number": f"  {NUMBER.lower()} ",
                            "holder_name": "阿依古丽•买买提"}, lookup)
    assert answer["result"] == "VERIFICATION_RESULT_VALID"
    assert lookup.asked == [NUMBER]


def test_a_wrong_name_is_answered_exactly_like_an_unknown_number():
    before = counted("not_found")
    lookup = lookup_of(stored())
    wrong = public.verify({"certificate_number": NUMBER, "holder_name": "李四"}, lookup)
    other = NUMBER[:-1] + "9"
    unknown = public.verify({"certificate_number": other, "holder_name": "欧阳娜娜"}, lookup)
    assert wrong == {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": NUMBER}
    assert unknown == {"result": "VERIFICATION_RESULT_NOT_FOUND", "certificate_number": other}
    assert counted("not_found") == before + 2


@pytest.mark.parametrize("status, result, reason", [
    (domain.INVALIDATED, "VERIFICATION_RESULT_INVALIDATED", "INVALIDATION_REASON_FRAUD"),
    (domain.WITHDRAWN, "VERIFICATION_RESULT_WITHDRAWN", "INVALIDATION_REASON_DATA_WITHDRAWN")])
def test_an_ended_certificate_says_why_and_since_when_but_not_the_decision(status, result,
                                                                          reason):
    record = stored(status=status, invalidation={
        "reason": reason, "effective_on": "2026-09-08", "operation_id": "op-1",
        "decision_ref": "安人社监〔2026〕31号"})
    answer = public.verify({"certificate_number": NUMBER, "holder_name": "欧阳娜娜"},
                           lookup_of(record))
    assert (answer["result"], answer["reason"], answer["effective_on"],
            answer["operation_id"]) == (result, reason, "2026-09-08", "op-1")
    assert "安人社监" not in str(answer)


@pytest.mark.parametrize("request_, problems", [
    ({"certificate_number": "not-a-number", "holder_name": ""},
     ("certificate_number", "holder_name: required")),
    ({"holder_name": "张三"}, ("certificate_number",)),
    ({"certificate_number": NUMBER}, ("holder_name: required",))])
def test_a_bad_question_is_invalid_and_looks_nothing_up(request_, problems):
    lookup = lookup_of(stored())
    with pytest.raises(InvalidArgument) as raised:
        public.verify(request_, lookup)
    assert all(p in str(raised.value) for p in problems)
    assert lookup.asked == []


def test_only_the_fields_the_answer_needs_are_read():
    assert public.PROJECTION["_id"] == 0
    assert set(public.FIELDS) == {
        "certificate_number", "holder_name", "holder_id_number", "occupation_code",
        "occupation_name", "skill_level", "issued_on", "issuer_name", "status", "invalidation"}
    # the issuer's institution, batch, session and history are never read for the public


def test_the_edge_s_read_is_the_same_function_on_its_database():
    class Collection:
        def __init__(self):
            self.queries = []

        def find_one(self, query, projection):
            self.queries.append((query, projection))
            return stored() if query == {"certificate_number": NUMBER} else None

    collection = Collection()
    answer = public.EDGE_READS["VerifyCertificate"](
        {"certificate_number": NUMBER, "holder_name": "欧阳娜娜"},
        {public.COLLECTION: collection})
    assert answer["result"] == "VERIFICATION_RESULT_VALID"
    assert collection.queries == [({"certificate_number": NUMBER}, public.PROJECTION)]
