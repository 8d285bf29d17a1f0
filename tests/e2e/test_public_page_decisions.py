"""The public page's grades (信用等级) and sanctions (处理结果) sections, filled, in a real
headless browser: a regulator publishes a year's grades and decides a sanction that is then
overturned on review, every step through gRPC as the real users take it; a member of the
public then finds the grade and the sanction with its reversal by the institution's code,
each entry checked against the signed decision log, in Chinese (no raw enum names). An
institution without any sees the page's "nothing found" text; a mistyped code is refused by
the form itself. Screenshots go to .screenshots/ (git-ignored): look at them.

Plain pytest (grpcio must not run under eventlet)."""
from __future__ import annotations

import json

import pytest

from tests import grading_support as gs
from tests.e2e.browser import SHOTS, wait_gone, wait_text
from tests.e2e.test_decision_log_grpc import entries
from tests.e2e.test_grading_grpc import file_institution, grading, known_to_grading
from tests.e2e.test_inspection_grpc import Inspection, at, open_case, register_inspectors
from tests.platform import Platform, eventually
from tests.support import uscc

pytestmark = pytest.mark.e2e

N, NOTHING = 951, 959  # graded and sanctioned; never filed, so nothing published


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("page-decisions"),
                       services=("filing", "grading", "inspection", "transparency"),
                       clock=True, FILING_DISTRICT_QUOTA=100).start()
    yield started
    codes = started.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{started.logs()}"


def logged(plat, n: int, kind: str) -> list[dict]:
    return [json.loads(e["entry_json"]) for e in entries(plat, f"institution:{uscc(n)}")
            if e.get("kind") == kind]


@pytest.fixture(scope="module")
def decisions(plat):
    """Institution N filed in 2024 and graded A for 2025 (full marks declared); in June 2026 a
    warning decided against it, overturned on review: what the log shows of each."""
    file_institution(plat, N, (2024, 3, 4))
    eventually(lambda: known_to_grading(plat, N), 20, "filing's InstitutionFiled in grading")
    at(plat, 2026, 1, 5)
    regulator = grading(plat, "regulator")
    regulator.OpenGradingYear({"year": 2025, "system_id": "default",
                               "self_assessment_working_days": 10, "request_id": "open-2025"})
    grading(plat, "institution", N).SubmitSelfAssessment({
        "year": 2025, "values": gs.full_marks(), "final": True, "request_id": "final"})
    at(plat, 2026, 1, 20)
    regulator.PublishGrades({"year": 2025, "request_id": "publish-2025"})

    inspectors = register_inspectors(plat, "P", 2)
    at(plat, 2026, 6, 1)
    case_id = open_case(plat, N, "page-warn", inspectors, "ch.6 art.3(3)")
    own = Inspection(plat.channel, "institution", N)
    own.StateCase({"request_id": "waive", "case_id": case_id, "statement": "无异议",
                   "waive": True})
    inspection = Inspection(plat.channel, "regulator")
    inspection.Decide({"case_id": case_id, "summary": "考务管理不规范"})
    decision_id = inspection.GetCase({"case_id": case_id})["case"]["decision"]["decision_id"]
    at(plat, 2026, 6, 23)
    own.RequestReview({"case_id": case_id, "grounds": "证据不足"})
    inspection.DecideReview({"case_id": case_id, "outcome": "REVIEW_OUTCOME_OVERTURNED",
                             "reasons": "证据不足"})
    for kind in ("grading.GradePublished", "inspection.SanctionDecided",
                 "inspection.DecisionReversed"):
        eventually(lambda kind=kind: logged(plat, N, kind), 30, f"{kind} in the log")
    return {"decision_id": decision_id}


def search(driver, plat, section: str, code: str) -> str:
    """Open the section, search `code`, and the result once every entry is checked."""
    from selenium.webdriver.common.by import By

    driver.get("about:blank")
    driver.get(f"{plat.http_url}/#{section}")
    driver.find_element(By.ID, f"{section}-institution").send_keys(code)
    driver.find_element(By.CSS_SELECTOR, f"#{section} button").click()
    result = f"#{section}-result"
    wait_gone(driver, result, "查询中")
    return wait_gone(driver, result, "核验中")


def entry_texts(driver, section: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [li.text for li in driver.find_elements(By.CSS_SELECTOR,
                                                   f"#{section}-result ul.entries > li")]


def no_overflow(driver, section: str) -> None:
    """Nothing in the section is wider than the section (long references wrap)."""
    wide = driver.execute_script("""
        const box = document.getElementById(arguments[0]).getBoundingClientRect();
        return Array.from(document.querySelectorAll('#' + arguments[0] + ' *'))
          .filter((n) => n.getBoundingClientRect().right > box.right + 1)
          .map((n) => n.tagName + ':' + n.textContent.slice(0, 40));""", section)
    assert not wide, wide


def test_both_sections_are_shown_when_their_services_run(browser, plat):
    from selenium.webdriver.common.by import By

    browser.get(plat.http_url + "/")
    for section in ("grades", "sanctions"):
        assert browser.find_element(By.ID, section).is_displayed()
        link = browser.find_element(By.CSS_SELECTOR, f"nav a[href='#{section}']")
        assert link.is_displayed()


def test_the_published_grade_is_found_and_checked_against_the_log(browser, plat, decisions):
    text = search(browser, plat, "grades", uscc(N))
    [entry] = entry_texts(browser, "grades")
    assert "信用等级公布" in entry and "年度\n2025" in entry and "等级\nA" in entry, entry
    assert "已核验" in entry and "树头签名有效" in entry, entry
    assert "GRADE_" not in text and "处理决定" not in text  # only this section's kinds
    no_overflow(browser, "grades")
    # The head was signed at the last decision, 23 June 10:00 in Anyang: shown in Beijing time.
    head = wait_text(browser, "#log-head", "北京时间")
    assert "树头签名时间\n2026-06-23 10:" in head, head
    browser.save_screenshot(str(SHOTS / "grades-found.png"))


def test_the_sanction_and_its_reversal_are_found_with_their_references(browser, plat, decisions):
    text = search(browser, plat, "sanctions", uscc(N))
    decided, reversed_ = entry_texts(browser, "sanctions")
    reference = decisions["decision_id"]
    assert "处理决定" in decided and "处理种类\n警告并限期整改" in decided, decided
    assert "ch.6 art.3(3)" in decided and "考务管理不规范" in decided, decided
    assert f"决定编号\n{reference}" in decided and "决定日期\n2026-06-01" in decided, decided
    assert "记录时间\n2026-06-01 10:00（北京时间）" in decided, decided
    assert "处理决定撤销" in reversed_ and f"决定编号\n{reference}" in reversed_, reversed_
    assert "证据不足" in reversed_ and "2026-06-23" in reversed_, reversed_
    for entry in (decided, reversed_):
        assert "已核验" in entry and "树头签名有效" in entry, entry
    assert "SANCTION_" not in text and "SUBJECT_KIND_" not in text, text
    assert "信用等级" not in text  # only this section's kinds
    no_overflow(browser, "sanctions")
    browser.save_screenshot(str(SHOTS / "sanctions-found.png"))
    browser.set_window_size(390, 1400)  # a phone
    browser.execute_script("document.getElementById('sanctions').scrollIntoView()")
    browser.save_screenshot(str(SHOTS / "sanctions-phone.png"))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    browser.set_window_size(1280, 1600)
    assert width <= 390, "the page scrolls sideways on a phone"


@pytest.mark.parametrize("section", ["grades", "sanctions"])
def test_an_institution_without_any_shows_nothing_found(browser, plat, decisions, section):
    text = search(browser, plat, section, uscc(NOTHING))
    assert text == "暂无公开记录。"
    browser.save_screenshot(str(SHOTS / f"{section}-nothing.png"))


@pytest.mark.parametrize("case, code", [
    ("short", "52410502MJ00009"),
    ("check", uscc(N)[:17] + ("1" if uscc(N)[17] != "1" else "2")),
    ("letter", "52410502MJ000095I"),  # 17 characters and I, outside GB 32100
])
def test_a_malformed_code_is_refused_by_the_form(browser, plat, case, code):
    from selenium.webdriver.common.by import By

    browser.get("about:blank")
    browser.get(plat.http_url + "/#grades")
    field = browser.find_element(By.ID, "grades-institution")
    field.send_keys(code)
    browser.find_element(By.CSS_SELECTOR, "#grades button").click()
    alert = wait_text(browser, "#grades-result [role=alert]", "统一社会信用代码")
    assert alert == "请输入正确的统一社会信用代码：18 位数字或大写字母，末位为校验码。"
    assert field.get_attribute("aria-invalid") == "true"
    assert browser.switch_to.active_element.get_attribute("id") == "grades-institution"
    browser.save_screenshot(str(SHOTS / f"grades-malformed-{case}.png"))
