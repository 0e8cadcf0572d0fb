"""The example project's OpenAPI schema, and schemathesis against the running
example API (contract section 10).

The schema is generated in a subprocess with the example's own settings, with
``idempotency.openapi.postprocess_schema`` and without it. The live tests run
the example under gunicorn on loopback, on its own SQLite file, and drive it
with the demo token: schemathesis generates requests from the schema and
checks that no answer is a 5xx and that every answer (status, content type,
headers, body) is the one the schema documents.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.checks import UndefinedContentType, UndefinedStatusCode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.example_runs import ROOT, manage
from tests.servers import NO_CONTROL_SOCKET, free_port, wait_until

DEMO_TOKEN = "demo-token-for-the-example-project-only"  # demo_setup.DEMO_TOKEN
PROBLEM_JSON = "application/problem+json"
IDEMPOTENT = [
    ("/api/payments/", "post"),
    ("/api/payments/{id}/", "put"),
    ("/api/payments/{id}/", "patch"),
    ("/api/payments/{id}/", "delete"),
    ("/api/payments/{id}/refund/", "post"),
]
NOT_IDEMPOTENT = [
    ("/api/payments/", "get"),
    ("/api/payments/{id}/", "get"),
    ("/api/schema/", "get"),
]
# Printed by `manage.py shell -c` in the example project.
SCHEMAS = """
import json
from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings

hooks = settings.SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]
schemas = {"with": SchemaGenerator().get_schema(request=None, public=True)}
with patched_settings({"POSTPROCESSING_HOOKS": [h for h in hooks if not h.startswith("idempotency")]}):
    schemas["without"] = SchemaGenerator().get_schema(request=None, public=True)
print(json.dumps(schemas))
"""
AUTHORIZATION = {"Authorization": f"Token {DEMO_TOKEN}"}
# Examples per operation: enough to meet every status the API answers (201,
# replays, 400, 404, 422), few enough that the module runs in seconds.
# Positive examples only, requests the schema allows: negative ones reach
# Django's URL resolver too (a path id of "null,null"), whose HTML 404 page is
# the project's routing, not an answer of its API.
EXAMPLES = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def schemas(example_env: dict[str, str]) -> dict[str, Any]:
    printed = manage(example_env, "shell", "-c", SCHEMAS).stdout
    result: dict[str, Any] = json.loads(printed.splitlines()[-1])  # after the shell's banner
    return result


def test_the_example_schema_generates_with_no_warning_and_is_valid_openapi(example_env, tmp_path):
    out = tmp_path / "schema.json"
    manage(example_env, "spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json",
           "--file", str(out))  # fmt: skip

    validate(json.loads(out.read_text()))


@pytest.mark.parametrize("route, method", IDEMPOTENT)
def test_every_idempotent_operation_of_the_example_documents_the_package(schemas, route, method):
    operation = schemas["with"]["paths"][route][method]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]

    assert parameter["in"] == "header"
    assert parameter["required"] is False  # the example's REQUIRED is the default
    assert parameter["schema"]["maxLength"] == 255
    for status in ("400", "409", "422", "503"):
        response = operation["responses"][status]
        if "$ref" in response:
            response = schemas["with"]["components"]["responses"][response["$ref"].split("/")[-1]]
        assert response["content"][PROBLEM_JSON]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
    success = min(status for status in operation["responses"] if status.startswith("2"))
    assert "Idempotent-Replayed" in operation["responses"][success]["headers"]


@pytest.mark.parametrize("route, method", NOT_IDEMPOTENT)
def test_the_examples_other_operations_are_unchanged(schemas, route, method):
    before = json.dumps(schemas["without"]["paths"][route][method])

    assert json.dumps(schemas["with"]["paths"][route][method]) == before


def test_exactly_the_idempotent_operations_of_the_example_change(schemas):
    def operations(schema: dict[str, Any]) -> dict[tuple[str, str], Any]:
        return {(r, m): op for r, item in schema["paths"].items() for m, op in item.items()}

    before, after = operations(schemas["without"]), operations(schemas["with"])

    assert before.keys() == after.keys()
    assert {name for name in before if before[name] != after[name]} == set(IDEMPOTENT)
    # A plain Django view (the receipt webhook) is not in a DRF schema at all.
    assert "/webhooks/receipt/" not in schemas["with"]["paths"]


def test_the_refunds_own_400_keeps_its_body_and_gains_problem_json(schemas):
    own = schemas["without"]["paths"]["/api/payments/{id}/refund/"]["post"]["responses"]["400"]
    answer = schemas["with"]["paths"]["/api/payments/{id}/refund/"]["post"]["responses"]["400"]

    assert answer["description"] == own["description"]
    assert answer["content"]["application/json"] == own["content"]["application/json"]
    assert answer["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem"}


# The running example -----------------------------------------------------------


@pytest.fixture(scope="module")
def example_api(
    example_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The example project under gunicorn on loopback, migrated, with the demo user."""
    manage(example_env, "migrate", "--verbosity", "0")
    manage(example_env, "demo_setup")
    port = free_port()
    log_path = tmp_path_factory.mktemp("openapi_gunicorn") / "gunicorn.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "example_project.wsgi:application",
             "-w", "1", "-b", f"127.0.0.1:{port}", *NO_CONTROL_SOCKET],
            cwd=ROOT, env=example_env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert server.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{url}/api/schema/").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(answers, 30, "the example project answers")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=15)


@pytest.fixture(scope="module")
def api_schema(example_api: str) -> Any:
    return schemathesis.openapi.from_url(f"{example_api}/api/schema/?format=json")


# schemathesis' own pytest integration for a schema from a fixture
# (schemathesis.pytest.from_fixture, 4.32.5) fails on pytest 9.2, which no longer
# has Function._nodeid; its Hypothesis strategies, run here, need neither.
@pytest.mark.parametrize("route, method", sorted(IDEMPOTENT + NOT_IDEMPOTENT))
def test_every_answer_of_the_example_api_is_the_one_its_schema_documents(api_schema, route, method):
    operation = api_schema[route][method.upper()]

    @hypothesis.given(case=operation.as_strategy(schemathesis.GenerationMode.POSITIVE))
    @hypothesis.settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(hypothesis.HealthCheck),
    )  # fmt: skip
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=AUTHORIZATION, checks=CHECKS)

    call()


def test_every_operation_of_the_example_is_tested(api_schema):
    tested = {(route, method.upper()) for route, method in IDEMPOTENT + NOT_IDEMPOTENT}
    paths = api_schema.raw_schema["paths"]
    found = {(route, method.upper()) for route, item in paths.items() for method in item}

    assert found == tested, found


def test_the_served_schema_and_swagger_ui(example_api, schemas):
    served = httpx.get(f"{example_api}/api/schema/?format=json")
    docs = httpx.get(f"{example_api}/api/docs/")

    assert served.json()["paths"] == schemas["with"]["paths"]
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
    assert "/api/schema/" in docs.text


@pytest.fixture(scope="module")
def package_answers(example_api: str) -> dict[str, tuple[str, httpx.Response]]:
    """One of each answer the package adds to POST /api/payments/, and a refund's
    own 400: name -> (the operation's path, the response)."""
    api = httpx.Client(base_url=example_api, headers=AUTHORIZATION)
    key = str(uuid.uuid4())
    body = {"amount": 1999, "description": "Blue mug"}

    def pay(amount: int = 1999, key: str = key) -> tuple[str, httpx.Response]:
        answer = api.post("/api/payments/", json={**body, "amount": amount},
                          headers={"Idempotency-Key": key})  # fmt: skip
        return "/api/payments/", answer

    answers = {"first": pay(), "replay": pay(), "reused": pay(2999), "two keys": pay(key="a, b")}
    payment = answers["first"][1].json()["id"]
    answers["not paid"] = (
        "/api/payments/{id}/refund/",
        api.post(
            f"/api/payments/{payment}/refund/", headers={"Idempotency-Key": str(uuid.uuid4())}
        ),
    )
    return answers


def test_the_packages_answers_are_the_ones_the_schema_documents(package_answers, api_schema):
    assert [a.status_code for _, a in package_answers.values()] == [201, 201, 422, 400, 400]
    assert package_answers["replay"][1].headers["Idempotent-Replayed"] == "true"
    assert package_answers["reused"][1].headers["Content-Type"] == PROBLEM_JSON
    for route, answer in package_answers.values():
        case = api_schema[route]["POST"].Case()
        case.validate_response(answer, checks=CHECKS)  # raises when it is not


def test_without_the_hook_the_same_answers_are_undocumented(package_answers, schemas):
    """What the test above would find if the hook were left out of the settings."""
    bare = schemathesis.openapi.from_dict(schemas["without"])

    # By class: the titles changed wording between schemathesis releases.
    undocumented = {"reused": UndefinedStatusCode, "two keys": UndefinedContentType}
    for name, failure in undocumented.items():
        route, answer = package_answers[name]
        with pytest.raises(schemathesis.errors.FailureGroup) as found:
            bare[route]["POST"].Case().validate_response(answer, checks=CHECKS)
        assert [type(f) for f in found.value.exceptions] == [failure]
