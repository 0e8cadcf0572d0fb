"""The example project: clean checks and migrations, and its API does what the README shows.

Everything runs in subprocesses with the example's own settings and its own
SQLite file, whatever IDEMPOTENCY_TEST_DB says, so these tests need no
database fixture.
"""

from __future__ import annotations

import ast
import json
import re
from datetime import timedelta

from idempotency.conf import DEFAULTS, as_timedelta
from tests.example_runs import ROOT, manage

SETTINGS_FILE = ROOT / "example_project" / "settings.py"

# Run by `manage.py shell -c` inside the example project: drives its API with
# Django's test client and prints one JSON line per response.
DRIVER = """
import json, os, uuid
from django.test import Client
from django.test.utils import setup_test_environment
from example_project.payments.models import Payment, Receipt

setup_test_environment()
client = Client(headers={"authorization": "Token " + os.environ["EXAMPLE_TOKEN"]})

def show(name, response):
    print(json.dumps({
        "name": name,
        "status": response.status_code,
        "replayed": response.headers.get("Idempotent-Replayed"),
        "content_type": response.headers.get("Content-Type"),
        "body": response.content.decode(),
    }))

key = str(uuid.uuid4())
for name, amount in [("first", 1999), ("replay", 1999), ("mismatch", 2999)]:
    show(name, client.post("/api/payments/", {"amount": amount, "description": "Blue mug"},
                           content_type="application/json", headers={"idempotency-key": key}))
print(json.dumps({"name": "payments", "count": Payment.objects.count()}))

payment = Payment.objects.get()
key = str(uuid.uuid4())
show("refund-unpaid", client.post(f"/api/payments/{payment.pk}/refund/", headers={"idempotency-key": key}))

key = str(uuid.uuid4())
for name in ["webhook", "webhook-replay"]:
    show(name, Client().post("/webhooks/receipt/", {"processor_reference": payment.processor_reference},
                             content_type="application/json", headers={"idempotency-key": key}))
print(json.dumps({"name": "receipts", "count": Receipt.objects.count()}))

key = str(uuid.uuid4())
for name in ["refund", "refund-replay"]:
    show(name, client.post(f"/api/payments/{payment.pk}/refund/", headers={"idempotency-key": key}))
show("refund-again", client.post(f"/api/payments/{payment.pk}/refund/",
                                 headers={"idempotency-key": str(uuid.uuid4())}))
show("late-receipt", Client().post("/webhooks/receipt/", {"processor_reference": payment.processor_reference},
                                   content_type="application/json", headers={"idempotency-key": str(uuid.uuid4())}))
print(json.dumps({"name": "final", "status": Payment.objects.get().status, "version": Payment.objects.get().version}))

import re
from django.contrib.auth import get_user_model
browser = Client()
browser.force_login(get_user_model().objects.get(username="demo"))
page = browser.get("/checkout/").content.decode()
token = re.search(r'name="idempotency_token" value="([^"]+)"', page).group(1)
csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
form = {"csrfmiddlewaretoken": csrf, "idempotency_token": token, "amount": "350", "description": "Coffee"}
for name in ["checkout", "checkout-double-click"]:
    response = browser.post("/checkout/pay/", form)
    print(json.dumps({"name": name, "status": response.status_code, "location": response.headers.get("Location"),
                      "replayed": response.headers.get("Idempotent-Replayed")}))
print(json.dumps({"name": "checkout-payments", "count": Payment.objects.filter(description="Coffee").count()}))
"""


def test_system_checks_are_clean(example_env: dict[str, str]) -> None:
    result = manage(example_env, "check", "--fail-level", "WARNING")

    assert "System check identified no issues" in result.stdout


def test_migrations_match_the_models(example_env: dict[str, str]) -> None:
    result = manage(example_env, "makemigrations", "--check", "--dry-run")

    assert "No changes detected" in result.stdout


def test_api_stores_replays_and_refuses_a_reused_key(example_env: dict[str, str]) -> None:
    manage(example_env, "migrate", "--verbosity", "0")
    manage(example_env, "demo_setup")  # twice: it is safe to run again
    setup = manage(example_env, "demo_setup")
    token = re.search(r"API token: (\S+)", setup.stdout)
    assert token is not None, setup.stdout

    result = manage({**example_env, "EXAMPLE_TOKEN": token.group(1)}, "shell", "-c", DRIVER)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    out = {line["name"]: line for line in lines}

    assert out["first"]["status"] == 201
    assert out["first"]["replayed"] is None
    assert json.loads(out["first"]["body"])["amount"] == 1999
    assert out["replay"]["status"] == 201
    assert out["replay"]["replayed"] == "true"
    assert out["replay"]["body"] == out["first"]["body"]
    assert out["mismatch"]["status"] == 422
    assert out["mismatch"]["content_type"] == "application/problem+json"
    assert json.loads(out["mismatch"]["body"])["status"] == 422
    assert out["payments"]["count"] == 1

    assert out["refund-unpaid"]["status"] == 400  # only a paid payment is refunded
    assert "not paid yet" in json.loads(out["refund-unpaid"]["body"])["detail"]

    assert out["webhook"]["status"] == 201
    assert out["webhook-replay"]["replayed"] == "true"
    assert out["webhook-replay"]["body"] == out["webhook"]["body"]
    assert out["receipts"]["count"] == 1

    assert out["refund"]["status"] == 200
    assert json.loads(out["refund"]["body"])["refunded"] is True
    assert json.loads(out["refund"]["body"])["status"] == "refunded"
    assert out["refund-replay"]["status"] == 200
    assert out["refund-replay"]["replayed"] == "true"
    assert out["refund-again"]["status"] == 400  # another key: still refunded only once
    assert "already refunded" in json.loads(out["refund-again"]["body"])["detail"]
    # A receipt arriving after the refund does not make the payment paid again.
    assert out["late-receipt"]["status"] == 201
    assert (out["final"]["status"], out["final"]["version"]) == ("refunded", 3)

    # The HTML checkout: the same form submitted twice pays once, one redirect.
    assert out["checkout"]["status"] == out["checkout-double-click"]["status"] == 302
    assert out["checkout-double-click"]["location"] == out["checkout"]["location"]
    assert out["checkout-double-click"]["replayed"] == "true"
    assert out["checkout-payments"]["count"] == 1


def test_settings_list_every_idempotency_key_at_its_default_commented_out() -> None:
    source = SETTINGS_FILE.read_text()
    block = source[source.index("IDEMPOTENCY: dict") :]
    block = block[: block.index("\n}") + 2]
    listed = re.findall(r'^    # "([A-Z_]+)": (.+?),(?:  #.*)?$', block, re.MULTILINE)

    assert [name for name, _ in listed] == list(DEFAULTS)
    for name, text in listed:
        value, default = _evaluate(text), DEFAULTS[name]
        if isinstance(default, timedelta):
            assert isinstance(value, int), f"{name}: give seconds, as DEFAULTS allows"
            value = as_timedelta(value)
        assert value == default, f"{name}: {text} in settings.py, {default!r} in DEFAULTS"


def _evaluate(text: str) -> object:
    """A literal, or a product such as ``24 * 60 * 60``."""
    node = ast.parse(text, mode="eval").body
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left, right = _evaluate(ast.unparse(node.left)), _evaluate(ast.unparse(node.right))
        assert isinstance(left, int) and isinstance(right, int), text
        return left * right
    return ast.literal_eval(node)


def test_the_receipt_task_delivered_twice_sends_one_email(example_env: dict[str, str]) -> None:
    manage(example_env, "migrate", "--verbosity", "0")

    output = manage(example_env, "demo_receipt").stdout

    assert output.count("Subject: Your receipt for 12.50 EUR") == 1
    first, second = (
        line.split(": ", 1)[1] for line in output.splitlines() if " delivery: " in line
    )
    assert first == second
    assert "the same result twice; one email" in output
