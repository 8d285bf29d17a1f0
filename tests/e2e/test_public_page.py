"""The public page in a real headless browser (Debian's chromium, driven by Selenium through
chromedriver): a person verifies a certificate, finds that "not found" and "wrong name" look
the same, sees a voided certificate's decision checked against the decision log, searches the
register and opens an institution's log entries. Screenshots of each page go to
.screenshots/ (git-ignored): look at them. The browser is tests/e2e/browser.py's.
Plain pytest (grpcio must not run under eventlet)."""
from __future__ import annotations

import pytest

from tests.e2e.browser import SHOTS, wait_text
from tests.e2e.test_certificates_grpc import at, batch, file_institution, issuer, regulator, row
from tests.platform import Platform
from tests.support import uscc

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def plat(tmp_path_factory):
    started = Platform(tmp_path_factory.mktemp("page"),
                       services=("filing", "certificates", "transparency"), clock=True,
                       FILING_DISTRICT_QUOTA=100).start()
    yield started
    codes = started.stop()
    assert set(codes.values()) == {0}, f"unclean shutdown {codes}:\n{started.logs()}"


@pytest.fixture(scope="module")
def data(plat):
    """Institution 901 filed, two certificates issued, the second voided."""
    n = 901
    filing_code = file_institution(plat, n)
    at(plat, 2026, 6, 20)
    issued = issuer(plat, n).IssueCertificates(batch([row(1), row(2)], session="2026-06-P"))
    numbers = [r["certificate_number"] for r in issued["results"]]
    regulator(plat).InvalidateCertificates({
        "selection": {"certificate_numbers": [numbers[1]]},
        "reason": "INVALIDATION_REASON_EXAM_MISCONDUCT", "decision_ref": "安人社〔2026〕21号"})
    return {"n": n, "filing_code": filing_code, "valid": numbers[0], "voided": numbers[1]}


def verify(driver, plat, number, name):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.get(plat.http_url + "/")
    field = driver.find_element(By.ID, "certificate-number")
    field.send_keys(number)
    field.send_keys(Keys.TAB)  # the keyboard alone: tab to the name, Enter submits
    driver.switch_to.active_element.send_keys(name, Keys.ENTER)
    return wait_text(driver, "#verify-result", "核验结果")


def test_a_valid_certificate_is_shown_masked(browser, plat, data):
    text = verify(browser, plat, data["valid"], row(1)["holder_name"])
    assert "核验结果：有效" in text
    assert row(1)["holder_name"] not in text and "张*丰" in text
    assert row(1)["holder_id_number"] not in text
    assert "安阳市第901职业技能培训评价中心" in text
    browser.save_screenshot(str(SHOTS / "verify-valid.png"))


def test_not_found_and_wrong_name_are_the_same_page(browser, plat, data):
    wrong_name = verify(browser, plat, data["valid"], "李四")
    browser.save_screenshot(str(SHOTS / "verify-wrong-name.png"))
    unknown = verify(browser, plat, "S000041000123264999999", row(1)["holder_name"])
    browser.save_screenshot(str(SHOTS / "verify-not-found.png"))
    assert wrong_name == unknown == "核验结果：未查询到该证书：证书编号或持证人姓名不符"


def test_a_voided_certificate_shows_its_decision_checked_against_the_log(browser, plat, data):
    verify(browser, plat, data["voided"], row(2)["holder_name"])
    text = wait_text(browser, "#verify-result", "已核验")
    assert "核验结果：已作废" in text and "考试违纪舞弊" in text and "安人社〔2026〕21号" in text
    assert "包含于共" in text and "树头签名有效" in text, text
    browser.save_screenshot(str(SHOTS / "verify-voided-in-log.png"))


def test_the_register_is_searched_and_an_institution_shows_its_log_entries(browser, plat, data):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get("about:blank")
    browser.get(plat.http_url + "/#register")
    browser.find_element(By.ID, "register-name").send_keys("第901")
    wait_text(browser, "#register-district", "文峰区")
    Select(browser.find_element(By.ID, "register-district")).select_by_value("410502")
    browser.find_element(By.CSS_SELECTOR, "#register-form button").click()
    text = wait_text(browser, "#register-result", "共 1 家")
    assert "安阳市第901职业技能培训评价中心" in text and data["filing_code"] in text
    assert uscc(data["n"]) in text
    browser.find_element(By.CSS_SELECTOR, "#register-result button").click()
    text = wait_text(browser, "#register-result", "已核验")
    assert "备案" in text and "树头签名有效" in text
    browser.save_screenshot(str(SHOTS / "register-with-log.png"))
    browser.set_window_size(390, 1400)  # a phone
    browser.execute_script("document.getElementById('register').scrollIntoView()")
    browser.save_screenshot(str(SHOTS / "register-phone.png"))
    width = browser.execute_script("return document.documentElement.scrollWidth")
    assert width <= 390, "the page scrolls sideways on a phone"
    browser.set_window_size(1280, 1600)


def test_the_page_is_labelled_and_refuses_an_empty_form_by_voice(browser, plat, data):
    from selenium.webdriver.common.by import By

    browser.get(plat.http_url + "/")
    for field in browser.find_elements(By.CSS_SELECTOR, "input, select"):
        labels = browser.find_elements(By.CSS_SELECTOR, f"label[for='{field.get_attribute('id')}']")
        assert labels and labels[0].get_attribute("textContent").strip(), field.get_attribute("id")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    # Sections of services this platform does not run stay hidden.
    assert not browser.find_element(By.ID, "grades").is_displayed()
    assert not browser.find_element(By.ID, "sanctions").is_displayed()
    assert browser.find_element(By.ID, "log").is_displayed()
    wait_text(browser, "#log-head", "已记录决定")
    browser.find_element(By.CSS_SELECTOR, "#verify-form button").click()
    alert = wait_text(browser, "#verify-result [role=alert]", "请填写")
    assert alert == "请填写证书编号和持证人姓名。"
    assert browser.find_element(By.ID, "certificate-number").get_attribute("aria-invalid") == "true"
    assert browser.switch_to.active_element.get_attribute("id") == "certificate-number"
    browser.save_screenshot(str(SHOTS / "page-empty-form.png"))
