"""The public page in Debian's chromium, driven by Selenium through chromedriver: what the
browser tests share (starting the browser, waiting for text, where screenshots go).

Chromium comes from Debian's packages (chromium, chromium-driver): installed here when absent
and the tests run as root (as .ci/run does), skipped otherwise with the command to run."""
from __future__ import annotations

import os

from tests.e2e.debian import install_or_skip
from tests.platform import ROOT

SHOTS = ROOT / ".screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PACKAGES = ("chromium", "chromium-driver", "fonts-noto-cjk")


def ensure_chromium() -> None:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return
    install_or_skip(PACKAGES, "no chromium")


def chromium():
    """A headless Chromium at 1280x1600 in zh-CN (the caller quits it)."""
    ensure_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1280,1600", "--lang=zh-CN"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    SHOTS.mkdir(exist_ok=True)
    return driver


def wait_text(driver, css, text, timeout=20):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: text in d.find_element(By.CSS_SELECTOR, css).text,
        message=f"{text!r} never appeared in {css}")
    return driver.find_element(By.CSS_SELECTOR, css).text


def wait_gone(driver, css, text, timeout=20):
    """The element's text once `text` has left it (e.g. every "核验中…" answered)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: text not in d.find_element(By.CSS_SELECTOR, css).text,
        message=f"{text!r} never left {css}")
    return driver.find_element(By.CSS_SELECTOR, css).text
