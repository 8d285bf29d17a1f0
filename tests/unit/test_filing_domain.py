"""The filing slice's rules, without broker or database."""
from datetime import date

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument
from services.common.workdays import WorkdayCalendar
from services.filing import domain
from tests.support import SIX_MATERIALS, application_request, material, uscc

AREAS = domain.ANYANG_AREAS
cal = WorkdayCalendar()


def violations(request) -> list[str]:
    with pytest.raises(InvalidArgument) as info:
        domain.parse_submission(request, AREAS)
    return info.value.violations


def test_a_complete_submission_parses():
    sub = domain.parse_submission(application_request(1), AREAS)
    assert sub.institution["institution_id"] == uscc(1)
    assert sub.scope[0]["skill_levels"] == [3, 4, 5]
    assert domain.missing_materials(sub.materials) == []


def test_every_violation_is_reported_at_once():
    request = application_request(1)
    request["request_id"] = ""
    request["institution"]["institution_id"] = uscc(1)[:-1] + ("0" if uscc(1)[-1] != "0" else "1")
    request["institution"]["district_code"] = "110105"   # Beijing Chaoyang: not in Anyang
    request["scope"][0]["skill_levels"] = [0, 6]
    request["materials"][0]["sha256"] = "nothex"
    found = violations(request)
    assert any(v.startswith("request_id") for v in found)
    assert "institution.institution_id: check character is wrong" in found
    assert any("district_code: 110105 is not a district or county" in v for v in found)
    assert any("skill_levels: [0, 6] not in 1-5" in v for v in found)
    assert any("materials[0].sha256" in v for v in found)


def test_missing_sections_are_named():
    found = violations({"request_id": "r1"})
    assert "institution: required" in found
    assert "scope: at least one occupation is required" in found


def test_prohibited_words_in_the_name_are_refused():
    found = violations(application_request(1, name="全国包过职业技能培训学校"))
    assert any("prohibited words 全国, 包过" in v for v in found)


def test_duplicates_in_scope_and_materials_are_refused():
    request = application_request(1)
    request["scope"].append(dict(request["scope"][0]))
    request["materials"].append(material(SIX_MATERIALS[0]))
    found = violations(request)
    assert any("listed twice" in v for v in found)
    assert any("given twice" in v for v in found)


def test_occupation_code_shape():
    request = application_request(1)
    request["scope"][0]["occupation_code"] = "育婴员"
    assert any("occupation_code: must look like" in v for v in violations(request))


def test_missing_materials_in_the_rules_order():
    assert domain.missing_materials([material(SIX_MATERIALS[2])]) == \
        [k for k in SIX_MATERIALS if k != SIX_MATERIALS[2]]


def test_supplement_notice_must_list_every_missing_material():
    missing = list(SIX_MATERIALS[4:])
    with pytest.raises(InvalidArgument, match="also missing: MATERIAL_KIND_AUTHENTICITY_PLEDGE"):
        domain.check_supplement_request(domain.RECEIVED, 0, missing, [SIX_MATERIALS[4]], [],
                                        date(2025, 9, 16), "2025-09-22")
    domain.check_supplement_request(domain.RECEIVED, 0, missing, missing, [],
                                    date(2025, 9, 16), "2025-09-22")


def test_only_one_supplement_notice_and_only_within_the_window():
    with pytest.raises(FailedPrecondition, match="one notice"):
        domain.check_supplement_request(domain.RECEIVED, 1, [], [], ["x"], date(2025, 9, 16),
                                        "2025-09-22")
    with pytest.raises(FailedPrecondition, match="window ended on 2025-09-22"):
        domain.check_supplement_request(domain.RECEIVED, 0, [], [], ["x"], date(2025, 9, 23),
                                        "2025-09-22")
    with pytest.raises(FailedPrecondition, match="accepted"):
        domain.check_supplement_request(domain.ACCEPTED, 0, [], [], ["x"], date(2025, 9, 16),
                                        "2025-09-22")


def test_supplement_is_complete_when_materials_and_items_are_all_answered():
    notice = {"missing_materials": [SIX_MATERIALS[5]], "other_items": ["new credit report"]}
    all_six = [material(k) for k in SIX_MATERIALS]
    assert not domain.supplement_complete(notice, all_six[:5], ["new credit report"])
    assert not domain.supplement_complete(notice, all_six, [])
    assert domain.supplement_complete(notice, all_six, ["new credit report"])


def test_acceptance_needs_all_six_materials():
    with pytest.raises(FailedPrecondition, match="request a supplement"):
        domain.check_acceptance(domain.RECEIVED, [SIX_MATERIALS[0]])
    domain.check_acceptance(domain.RECEIVED, [])


def test_filing_needs_all_three_evaluation_steps_and_a_refusal_needs_reasons():
    passed = {"materials_check_passed": True, "expert_review_passed": True, "site_visit_passed": True}
    assert domain.check_filing_decision("DECISION_OUTCOME_FILE", passed, []) == []
    with pytest.raises(FailedPrecondition, match="site_visit_passed"):
        domain.check_filing_decision("DECISION_OUTCOME_FILE", {**passed, "site_visit_passed": False}, [])
    with pytest.raises(InvalidArgument, match="reasons"):
        domain.check_filing_decision("DECISION_OUTCOME_REFUSE", {}, ["  "])
    assert domain.check_filing_decision("DECISION_OUTCOME_REFUSE", {}, [" premises unfit "]) == \
        ["premises unfit"]
    with pytest.raises(InvalidArgument, match="outcome"):
        domain.check_filing_decision("DECISION_OUTCOME_UNSPECIFIED", {}, [])


def test_the_clock():
    assert domain.acceptance_due(date(2025, 9, 26), cal).date == date(2025, 10, 10)
    assert domain.supplement_due(date(2025, 9, 16)).date == date(2025, 10, 16)
    # 15 working days from 15 Sep 2025 end on the make-up Saturday 11 Oct.
    assert domain.decision_due(date(2025, 9, 15), cal).date == date(2025, 10, 11)


def test_sweep_acts_only_once_a_deadline_day_has_passed():
    assert domain.sweep_action(domain.RECEIVED, "2025-09-22", None, date(2025, 9, 22)) is None
    assert domain.sweep_action(domain.RECEIVED, "2025-09-22", None, date(2025, 9, 23)) == "deem_accepted"
    assert domain.sweep_action(domain.SUPPLEMENT_REQUESTED, "2025-09-22", "2025-10-16",
                               date(2025, 10, 17)) == "deem_withdrawn"
    assert domain.sweep_action(domain.ACCEPTED, "2025-09-22", None, date(2026, 1, 1)) is None


def test_validity_is_three_years():
    assert domain.validity_end(date(2025, 9, 15)) == date(2028, 9, 14)
    assert domain.validity_end(date(2024, 2, 29)) == date(2027, 2, 28)


def test_filing_code_carries_the_certificate_number_parts_1_to_4():
    assert domain.filing_code("41", 123) == "S000041000123"
    assert len(domain.filing_code("41", 1)) == 13
    for bad in (dict(province_code="4", site_serial=1), dict(province_code="41", site_serial=0),
                dict(province_code="41", site_serial=1_000_000)):
        with pytest.raises(ValueError):
            domain.filing_code(**bad)


def test_the_city_areas_come_from_the_environment(tmp_path, monkeypatch):
    import json

    from services.filing.settings import load_settings
    path = tmp_path / "areas.json"
    path.write_text(json.dumps({"110105": ["朝阳区", "district"], "110118": ["密云区", "county"]}),
                    encoding="utf-8")
    monkeypatch.setenv("FILING_AREAS_FILE", str(path))
    assert load_settings({}).areas == {"110105": ("朝阳区", "district"), "110118": ("密云区", "county")}
    monkeypatch.delenv("FILING_AREAS_FILE")
    assert load_settings({}).areas == domain.ANYANG_AREAS
