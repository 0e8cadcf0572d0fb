"""The admin in real headless Chromium: log in, filter, open, release, refuse.

Uses the system browser and driver (Debian's chromium and chromium-driver);
without them the test is skipped locally and fails in CI (CI=true).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from idempotency.keys import digest, shown
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


def log_in(browser, live_server, admin_user, next_url, wait, By, shown_):
    browser.get(f"{live_server.url}/admin/login/?next={next_url}")
    browser.find_element(By.NAME, "username").send_keys(admin_user.username)
    browser.find_element(By.NAME, "password").send_keys("password")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()


def test_admin_releases_a_stuck_record_in_a_real_browser(browser, live_server, admin_user):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown_
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, WAIT_SECONDS)
    # Its worker died: the lock has expired, so the release may remove it.
    stuck = IdempotencyRecordFactory(key=digest("stuck-key"), scope="user:1", lock_expired=True)
    done = IdempotencyRecordFactory(key=digest("done-key"), completed=True)
    stuck_shown, done_shown = shown(stuck.key), shown(done.key)
    changelist = "/admin/idempotency/idempotencyrecord/"

    log_in(browser, live_server, admin_user, changelist, wait, By, shown_)
    wait.until(shown_.presence_of_element_located((By.ID, "result_list")))
    assert {stuck_shown, done_shown} <= keys_listed(browser, By)
    assert stuck.key not in browser.page_source

    # Filter by status: only the in-progress record is left.
    browser.find_element(By.LINK_TEXT, "in progress").click()
    wait.until(shown_.url_contains("status__exact=in_progress"))
    assert keys_listed(browser, By) == {stuck_shown}

    # Search by the key itself: the admin finds it by its digest.
    browser.get(f"{live_server.url}{changelist}?q=stuck-key")
    wait.until(shown_.presence_of_element_located((By.ID, "result_list")))
    assert keys_listed(browser, By) == {stuck_shown}

    # Open it: the detail page says it is in progress, and until when it was locked.
    browser.find_element(By.LINK_TEXT, stuck_shown).click()
    wait.until(shown_.text_to_be_present_in_element((By.ID, "content"), "In progress"))
    assert "Locked until" in browser.find_element(By.ID, "content").text
    browser.get(f"{live_server.url}{changelist}")
    wait.until(shown_.presence_of_element_located((By.ID, "result_list")))

    # Release it through the action and its confirmation page.
    browser.find_element(
        By.CSS_SELECTOR, f"input[name=_selected_action][value='{stuck.pk}']"
    ).click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("release_records")
    browser.find_element(By.NAME, "index").click()
    wait.until(shown_.text_to_be_present_in_element((By.ID, "content"), "Release this record?"))
    assert stuck_shown in browser.find_element(By.ID, "content").text
    browser.find_element(By.CSS_SELECTOR, "form input[type=submit]").click()

    wait.until(
        shown_.text_to_be_present_in_element(
            (By.CLASS_NAME, "messagelist"), "Released the idempotency record"
        )
    )
    assert stuck_shown not in keys_listed(browser, By)
    assert not IdempotencyRecord.objects.filter(pk=stuck.pk).exists()
    assert IdempotencyRecord.objects.filter(pk=done.pk).exists()


def test_admin_delete_button_refuses_a_running_record_in_a_real_browser(
    browser, live_server, admin_user
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown_
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, WAIT_SECONDS)
    running = IdempotencyRecordFactory(key=digest("running-key"))  # locked for a minute
    detail = f"/admin/idempotency/idempotencyrecord/{running.pk}/change/"

    log_in(browser, live_server, admin_user, detail, wait, By, shown_)
    wait.until(shown_.text_to_be_present_in_element((By.ID, "content"), "In progress"))
    # Django's own "Delete" link of the detail page, then its confirmation.
    browser.find_element(By.CSS_SELECTOR, "a.deletelink").click()
    wait.until(shown_.text_to_be_present_in_element((By.ID, "content"), "Release this record?"))
    content = browser.find_element(By.ID, "content").text
    assert "Still running under a live lock: it will be kept." in content
    browser.find_element(By.CSS_SELECTOR, "form input[type=submit]").click()

    wait.until(shown_.presence_of_element_located((By.CLASS_NAME, "messagelist")))
    messages = browser.find_element(By.CLASS_NAME, "messagelist").text
    assert "still running under a live lock and was kept" in messages
    assert "Released 0" in messages
    assert shown(running.key) in keys_listed(browser, By)
    assert IdempotencyRecord.objects.filter(pk=running.pk).exists()


def keys_listed(browser, By):
    return {
        cell.text
        for cell in browser.find_elements(By.CSS_SELECTOR, "#result_list th.field-shown_key")
    }
