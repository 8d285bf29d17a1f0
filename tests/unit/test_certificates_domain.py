"""Pure rules of the certificate registry (seed 001 ch.4-6; seed 002 §4)."""
from __future__ import annotations

from datetime import date

import pytest

from services.certificates import domain
from services.common.errors import InvalidArgument

TODAY = date(2026, 11, 21)


def holder_id(first17: str = "41050219900307123") -> str:
    return first17 + domain.id_check_character(first17)


# --- GB 11643 ---------------------------------------------------------------------------
@pytest.mark.parametrize("number", [
    "11010519491231002X",  # the example of GB 11643-1999 itself
    "440524188001010014",  # the other widely published example (Guangdong)
])
def test_known_valid_check_characters(number):
    assert domain.id_check_character(number[:17]) == number[17]


def test_known_valid_id_number_passes():
    assert domain.id_number_problem("11010519491231002X", TODAY) is None


def test_birth_before_1900_is_out_of_range():
    # A valid check character, but nobody born in 1880 sits an exam in 2026.
    assert domain.id_number_problem("440524188001010014", TODAY) == "birth date is out of range"


def test_check_character_mod_11_2_maps_remainder_2_to_x():
    # sum of weighted digits of 11010519491231002 is 167; 167 % 11 = 2 -> 'X'
    total = sum(int(c) * w for c, w in zip("11010519491231002", domain.ID_WEIGHTS, strict=True))
    assert total % 11 == 2
    assert domain.id_check_character("11010519491231002") == "X"


def test_wrong_check_character_is_named():
    good = holder_id()
    wrong = good[:17] + ("0" if good[17] != "0" else "1")
    assert domain.id_number_problem(wrong, TODAY) == "check character is wrong"


@pytest.mark.parametrize("value,problem", [
    ("1101051949123100", "must be 18 characters"),
    ("11010519491231002Y", "must be 17 digits and a check character (0-9 or X)"),
    ("99010519491231002X", "region code is not a GB/T 2260 province"),
    ("110105194902301234", "birth date is not a date"),
])
def test_id_shape_problems(value, problem):
    assert domain.id_number_problem(value, TODAY) == problem


def test_birth_date_in_the_future_is_out_of_range():
    assert domain.id_number_problem(holder_id("41050220300101123"), TODAY) == "birth date is out of range"


def test_lower_case_x_is_normalised():
    assert domain.normalize_id_number(" 11010519491231002x ") == "11010519491231002X"


# --- certificate numbers ------------------------------------------------------------------
def test_number_follows_the_national_coding_rule():
    number = domain.certificate_number("S000041000123", date(2026, 3, 1), 4, 1)
    assert number == "S000041000123264000001"
    assert len(number) == 22
    assert domain.certificate_number_problem(number) is None


def test_number_parts_year_level_serial():
    number = domain.certificate_number("Y123411000007", date(2027, 1, 1), 1, 999_999)
    assert number[:13] == "Y123411000007"   # parts 1-4: the filing code
    assert number[13:15] == "27"            # part 5: year issued
    assert number[15] == "1"                # part 6: level
    assert number[16:] == "999999"          # part 7: serial


@pytest.mark.parametrize("args", [
    ("X000041000123", date(2026, 1, 1), 4, 1),
    ("S000041000123", date(2026, 1, 1), 6, 1),
    ("S000041000123", date(2026, 1, 1), 4, 0),
    ("S000041000123", date(2026, 1, 1), 4, 1_000_000),
])
def test_number_refuses_bad_parts(args):
    with pytest.raises(ValueError):
        domain.certificate_number(*args)


@pytest.mark.parametrize("number", [
    "S00004100012326400000",      # 21 characters
    "s000041000123264000001",     # lower-case kind letter
    "S000099000123264000001",     # no such province
    "S000041000123266000001",     # level 6
    "S000041000123264000000",     # serial 0
])
def test_number_problems(number):
    assert domain.certificate_number_problem(number) is not None


def test_serials_run_per_evaluator_year_and_level():
    a = domain.serial_key("S000041000123", date(2026, 1, 1), 4)
    assert a != domain.serial_key("S000041000123", date(2026, 1, 1), 3)
    assert a != domain.serial_key("S000041000123", date(2027, 1, 1), 4)
    assert a != domain.serial_key("S000041000124", date(2026, 1, 1), 4)


# --- masking ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,masked", [
    ("张三", "张*"), ("张三丰", "张*丰"), ("欧阳娜娜", "欧**娜"), ("李", "*"),
])
def test_mask_name(name, masked):
    assert domain.mask_name(name) == masked


def test_mask_id_hides_county_and_birth_date():
    masked = domain.mask_id_number("11010519491231002X")
    assert masked == "110***********002X"
    assert "19491231" not in masked and len(masked) == 18


# --- batches ------------------------------------------------------------------------------
def row(**overrides):
    data = {"row_ref": "r", "holder_name": "张三", "holder_id_number": holder_id(),
            "occupation_code": "4-10-01-02", "occupation_name": "育婴员", "skill_level": 4}
    data.update(overrides)
    return data


def batch(rows, assessment_date="2026-11-10", session="S-2026-11"):
    return {"exam_session_id": session, "assessment_date": assessment_date, "rows": rows}


def test_rows_are_checked_one_by_one():
    parsed = domain.parse_batch(batch([
        row(),
        row(holder_id_number=holder_id()[:17] + "Z", row_ref="bad-id"),
        row(holder_name="", skill_level=7, occupation_code="41001", row_ref="bad-all"),
    ]), TODAY, 30)
    assert [r.ok for r in parsed.rows] == [True, False, False]
    assert parsed.rows[1].errors == ["holder_id_number: must be 17 digits and a check character (0-9 or X)"]
    assert len(parsed.rows[2].errors) == 3


def test_same_holder_occupation_level_twice_in_a_batch():
    parsed = domain.parse_batch(batch([row(), row(), row(skill_level=3)]), TODAY, 30)
    assert [r.ok for r in parsed.rows] == [True, False, True]
    assert "duplicate of row 0" in parsed.rows[1].errors[0]


def test_envelope_errors_are_all_reported():
    with pytest.raises(InvalidArgument) as caught:
        domain.parse_batch({"exam_session_id": "bad id!", "assessment_date": "2026-12-01",
                            "rows": []}, TODAY, 30)
    assert len(caught.value.violations) == 3
    assert any("in the future" in v for v in caught.value.violations)


def test_too_many_rows():
    with pytest.raises(InvalidArgument, match="at most 10000"):
        domain.parse_batch(batch([row()] * 10_001), TODAY, 30)


@pytest.mark.parametrize("assessed,late", [("2026-10-22", False), ("2026-10-21", True)])
def test_late_reporting_after_the_configured_days(assessed, late):
    # 2026-10-22 + 30 days = 2026-11-21 (on time); one day earlier is day 31: late.
    assert domain.parse_batch(batch([row()], assessed), TODAY, 30).late is late


def test_rights_asked_once_per_occupation_and_level():
    parsed = domain.parse_batch(batch([row(holder_id_number=holder_id(f"41050219900307{i:03d}"))
                                       for i in range(50)] + [row(skill_level=3)]), TODAY, 30)
    assert domain.rights_to_ask(parsed.rows) == [("4-10-01-02", 3), ("4-10-01-02", 4)]
    domain.refuse_out_of_scope(parsed.rows, {("4-10-01-02", 3): "level 3 not filed"})
    assert not parsed.rows[-1].ok and "level 3 not filed" in parsed.rows[-1].errors[0]
    assert all(r.ok for r in parsed.rows[:-1])


def test_only_active_institutions_issue():
    assert domain.issuing_refusal(domain.ACTIVE) is None
    assert "suspended" in domain.issuing_refusal(domain.SUSPENDED, "rectification order 12")
    assert "terminated" in domain.issuing_refusal(domain.TERMINATED)
    assert "not filed" in domain.issuing_refusal(None)


# --- invalidation -------------------------------------------------------------------------
def test_invalidation_needs_one_selection_a_reason_and_a_decision():
    with pytest.raises(InvalidArgument) as caught:
        domain.parse_invalidation({"selection": {}, "reason": "INVALIDATION_REASON_UNSPECIFIED"})
    assert len(caught.value.violations) == 3


def test_withdrawn_data_is_not_a_void_reason():
    with pytest.raises(InvalidArgument, match="WithdrawCertificates"):
        domain.parse_invalidation({"selection": {"certificate_numbers": ["S000041000123264000001"]},
                                   "reason": domain.DATA_WITHDRAWN, "decision_ref": "D-1"})


def test_period_selection():
    selection, reason, ref, _ = domain.parse_invalidation({
        "selection": {"period": {"institution_id": "x", "issued_from": "2026-01-01",
                                 "issued_to": "2026-06-30"}},
        "reason": "INVALIDATION_REASON_FRAUD", "decision_ref": "安人社决〔2026〕12号"})
    assert selection.kind == "period" and selection.institution_id == "X"
    assert selection.issued_to == date(2026, 6, 30)


def test_issue_key_is_per_holder_occupation_level_session_and_hides_the_id():
    key = domain.issue_key("INST", "S1", holder_id(), "4-10-01-02", 4)
    assert holder_id() not in key and len(key) == 64
    assert key == domain.issue_key("INST", "S1", holder_id(), "4-10-01-02", 4)
    assert key != domain.issue_key("INST", "S2", holder_id(), "4-10-01-02", 4)
    assert key != domain.issue_key("INST", "S1", holder_id(), "4-10-01-02", 3)
