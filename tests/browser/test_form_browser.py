"""A checkout form submitted twice in real headless Chromium (contract section 8).

The second click on "Pay" comes while the first submit is still running, as
a double click or an impatient user does: both POSTs carry the page's one
token. The first runs the view, the second waits for it and replays its
redirect, so one charge is made and the browser lands on that charge's
success page.
"""

from __future__ import annotations

from typing import Any

import pytest

from idempotency import signals
from tests.browser.test_admin_browser import WAIT_SECONDS, browser  # noqa: F401 (a fixture)
from tests.testapp import views_doors
from tests.testapp.models import Charge

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_pay_button_clicked_twice_charges_once_and_lands_on_one_success_page(
    browser: Any,  # noqa: F811
    live_server: Any,
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    replays: list[int] = []

    def replayed(sender: Any, status: int, **kwargs: Any) -> None:
        replays.append(status)

    views_doors.PAY_ENTERED.clear()
    signals.response_replayed.connect(replayed)
    try:
        browser.get(f"{live_server.url}/slow-form/")
        # The second click comes from the page itself, 300 ms after the first,
        # while the first submit runs (its view takes a second) and the page
        # is still shown: WebDriver would wait for the navigation instead.
        browser.execute_script(
            "const pay = document.getElementById('pay');"
            "pay.click(); setTimeout(() => pay.click(), 300);"
        )
        assert views_doors.PAY_ENTERED.wait(WAIT_SECONDS)
        WebDriverWait(browser, WAIT_SECONDS).until(lambda b: "/paid/" in b.current_url)
        body = browser.find_element(By.TAG_NAME, "body").text
    finally:
        signals.response_replayed.disconnect(replayed)

    charge = Charge.objects.get()  # exactly one
    assert browser.current_url.endswith(f"/paid/{charge.pk}/")
    assert body == f"Paid: charge {charge.pk}"
    assert replays == [302]  # the second submit got the first one's redirect
