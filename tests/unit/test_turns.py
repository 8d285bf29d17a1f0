"""Long loops give the worker's other calls their turn (services/common/turns.py), and a long
request parsed in turns is the same message, with the same error, as parsed in one go."""
from __future__ import annotations

import pytest
from google.protobuf.json_format import ParseError

from services.common import protos, turns
from services.common.protos import from_dict, from_dict_in_turns, service_proto


def test_in_turns_gives_a_turn_every_so_many_items(monkeypatch):
    given = []
    monkeypatch.setattr(turns, "give_turn", lambda: given.append(1))
    assert list(turns.in_turns(range(1_201), every=500)) == list(range(1_201))
    assert len(given) == 2


def _rows(n):
    return [{"row_ref": str(i), "holder_name": "张三丰", "holder_id_number": "x",
             "occupation_code": "4-10-01-02", "skill_level": 4} for i in range(n)]


def test_a_long_request_parsed_in_turns_is_the_same_message(monkeypatch):
    given = []
    monkeypatch.setattr(protos, "give_turn", lambda: given.append(1))
    message_class = service_proto("certificates").messages.IssueCertificatesRequest
    request = {"exam_session_id": "s-1", "assessment_date": "2026-12-01", "rows": _rows(1_201)}
    assert from_dict_in_turns(request, message_class) == from_dict(request, message_class)
    assert len(given) == 3


def test_a_bad_entry_gets_the_error_of_the_whole_request():
    message_class = service_proto("certificates").messages.IssueCertificatesRequest
    rows = _rows(1_201)
    rows[1_100]["skill_level"] = "four"
    request = {"exam_session_id": "s-1", "rows": rows}
    with pytest.raises(ParseError) as in_one_go:
        from_dict(request, message_class)
    with pytest.raises(ParseError) as in_turns:
        from_dict_in_turns(request, message_class)
    assert str(in_turns.value) == str(in_one_go.value)
