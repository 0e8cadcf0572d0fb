"""The admin in real headless Chromium: log in, filter, open, release.

Uses the system browser and driver (Debian's chromium and chromium-driver);
without them the test is skipped locally and fails in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from idempotency.models import IdempotencyRecord
from tests.factories import IdempotencyRecordFactory

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT_SECONDS = 10

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser(tmp_path):
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        reason = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(
        service=Service(CHROMEDRIVER, log_output=subprocess.DEVNULL), options=options
    )
    driver.set_page_load_timeout(WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()


def test_admin_releases_a_stuck_record_in_a_real_browser(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, WAIT_SECONDS)
    stuck = IdempotencyRecordFactory(key="stuck-key", scope="user:1")
    IdempotencyRecordFactory(key="done-key", completed=True)
    changelist = "/admin/idempotency/idempotencyrecord/"

    browser.get(f"{live_server.url}/admin/login/?next={changelist}")
    browser.find_element(By.NAME, "username").send_keys(admin_user.username)
    browser.find_element(By.NAME, "password").send_keys("password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(shown.presence_of_element_located((By.ID, "result_list")))
    assert {"stuck-key", "done-key"} <= keys_listed(browser, By)

    # Filter by status: only the in-progress record is left.
    browser.find_element(By.LINK_TEXT, "in progress").click()
    wait.until(shown.url_contains("status__exact=in_progress"))
    assert keys_listed(browser, By) == {"stuck-key"}

    # Open it: the detail page says it is running, and until when it is locked.
    browser.find_element(By.LINK_TEXT, "stuck-key").click()
    wait.until(shown.text_to_be_present_in_element((By.ID, "content"), "In progress"))
    assert "Locked until" in browser.find_element(By.ID, "content").text
    browser.back()
    wait.until(shown.presence_of_element_located((By.ID, "result_list")))

    # Release it through the action and its confirmation page.
    browser.find_element(
        By.CSS_SELECTOR, f"input[name=_selected_action][value='{stuck.pk}']"
    ).click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("release_records")
    browser.find_element(By.NAME, "index").click()
    wait.until(shown.text_to_be_present_in_element((By.ID, "content"), "Release this record?"))
    assert "stuck-key" in browser.find_element(By.ID, "content").text
    browser.find_element(By.CSS_SELECTOR, "form input[type=submit]").click()

    wait.until(shown.text_to_be_present_in_element((By.CLASS_NAME, "messagelist"), "Released 1"))
    assert "stuck-key" not in keys_listed(browser, By)
    assert not IdempotencyRecord.objects.filter(pk=stuck.pk).exists()
    assert IdempotencyRecord.objects.filter(key="done-key").exists()


def keys_listed(browser, By):
    return {
        cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list th.field-key")
    }
