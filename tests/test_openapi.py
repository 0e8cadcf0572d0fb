"""idempotency.openapi.postprocess_schema (contract section 10), on the test
app's views: drf-spectacular generates the schema of every way of attaching
the package, with the hook and without it, and the two are compared.

The example project's schema, and schemathesis against the running example
API, are in tests/test_openapi_example.py.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.test import override_settings
from django.urls import path
from django.utils.decorators import method_decorator
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.validation import validate_schema
from openapi_spec_validator import validate
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.versioning import URLPathVersioning
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from idempotency.openapi import postprocess_schema
from idempotency.openapi.operations import handler_options, view_options
from idempotency.options import ViewOptions, options_of
from tests.testapp import views, views_doors

ENUMS = "drf_spectacular.hooks.postprocess_schema_enums"
HOOK = "idempotency.openapi.postprocess_schema"
SHARE = "tests.test_openapi.share_bad_request"
PROBLEM_JSON = "application/problem+json"


class NotIdempotentView(APIView):
    permission_classes = [permissions.AllowAny]

    def post(self, request: Any) -> Any:
        return Response(status=201)


@method_decorator(idempotent(required=True), name="post")
class MethodDecoratedAPIView(APIView):
    permission_classes = [permissions.AllowAny]

    def post(self, request: Any) -> Any:
        return Response(status=201)


class DeclaresItsOwnView(IdempotencyMixin, APIView):
    """Its own header parameter, 400 and 409: kept, and added to."""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "idempotency-key", str, OpenApiParameter.HEADER, description="Our own words."
            )
        ],
        responses={
            201: OpenApiTypes.OBJECT,
            400: OpenApiResponse(OpenApiTypes.OBJECT, description="Our own 400."),
            409: OpenApiResponse(description="Our own 409."),
        },
    )
    def post(self, request: Any) -> Any:
        return Response(status=201)


class Amount(serializers.Serializer[Any]):
    amount = serializers.IntegerField(min_value=1)


class TokenFormView(IdempotencyMixin, APIView):
    permission_classes = [permissions.AllowAny]
    idempotency_token = True

    @extend_schema(request=Amount, responses={201: Amount})
    def post(self, request: Any) -> Any:
        return Response(request.data, status=201)


class SharedIdempotentView(IdempotencyMixin, APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={201: None, 400: OpenApiResponse(description="shared")})
    def post(self, request: Any) -> Any:
        return Response(status=201)


class SharedPlainView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={201: None, 400: OpenApiResponse(description="shared")})
    def post(self, request: Any) -> Any:
        return Response(status=201)


SHARED = {"description": "A 400 the project shares between operations."}


def share_bad_request(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A project hook before ours: one 400 response, referenced by two operations."""
    result.setdefault("components", {}).setdefault("responses", {})["SharedBadRequest"] = SHARED
    for route in ("/shared-idempotent/", "/shared-plain/"):
        result["paths"][route]["post"]["responses"]["400"] = {
            "$ref": "#/components/responses/SharedBadRequest"
        }
    return result


def own_problem(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """A project hook before ours: a Problem schema of its own."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = {"type": "string"}
    return result


router = SimpleRouter()
router.register("viewset", views.ChargeViewSet, basename="viewset")
router.register("configured", views.ConfiguredViewSet, basename="configured")
router.register("optional", views.OptionalViewSet, basename="optional")
router.register("action", views.ActionViewSet, basename="action")
router.register("mixin-action", views.DecoratedActionMixinViewSet, basename="mixin-action")
router.register("dispatch-viewset", views_doors.DispatchDecoratedViewSet, basename="dv")
router.register("token-pay", views_doors.TokenPayViewSet, basename="token-pay")
router.register("own-errors", views_doors.OwnErrorFormatViewSet, basename="own-errors")

urlpatterns = [
    path("plain/", views.plain_view),  # a Django view: not in a DRF schema at all
    path("api-function/", views.api_function_view),
    path("api-view/", views.ChargeAPIView.as_view()),
    path("charges/<int:charge_id>/", views.ChargeAPIView.as_view()),
    path("dispatch-decorated/", views_doors.DispatchDecoratedAPIView.as_view()),
    path("dispatch-in-body/", views_doors.DispatchInClassBodyAPIView.as_view()),
    path("method-decorated/", MethodDecoratedAPIView.as_view()),
    path("not-idempotent/", NotIdempotentView.as_view()),
    path("own/", DeclaresItsOwnView.as_view()),
    path("token-form/", TokenFormView.as_view()),
    path("shared-idempotent/", SharedIdempotentView.as_view()),
    path("shared-plain/", SharedPlainView.as_view()),
    *router.urls,
]

# (path, method) -> whether the key is required; every other operation is not idempotent.
IDEMPOTENT = {
    ("/viewset/", "post"): False,
    ("/viewset/{id}/", "put"): False,
    ("/viewset/{id}/", "patch"): False,
    ("/viewset/{id}/", "delete"): False,
    ("/viewset/{id}/refund/", "post"): False,  # an @action under the mixin
    ("/configured/", "post"): True,  # idempotency_required = True
    ("/configured/{id}/", "patch"): True,  # idempotency_methods = ("post", "patch")
    ("/optional/", "post"): False,
    ("/action/refund/", "post"): False,  # @idempotent on an @action
    ("/mixin-action/refund/", "post"): False,
    ("/dispatch-viewset/", "post"): False,  # @method_decorator(idempotent, name="dispatch")
    ("/token-pay/", "post"): False,
    ("/own-errors/", "post"): False,
    ("/api-function/", "post"): False,  # @idempotent under @api_view
    ("/api-function/", "put"): False,
    ("/api-function/", "patch"): False,
    ("/api-function/", "delete"): False,
    ("/api-view/", "post"): False,  # @idempotent on an APIView method
    ("/charges/{charge_id}/", "post"): False,
    ("/dispatch-decorated/", "post"): False,
    ("/dispatch-in-body/", "post"): False,  # @idempotent on dispatch in the class body
    # @method_decorator(idempotent(required=True), name="post")
    ("/method-decorated/", "post"): True,
    ("/own/", "post"): False,
    ("/token-form/", "post"): False,
    ("/shared-idempotent/", "post"): False,
}
NOT_IDEMPOTENT = [
    ("/viewset/", "get"),
    ("/configured/{id}/", "put"),  # not in its idempotency_methods
    ("/api-function/", "get"),
    ("/not-idempotent/", "post"),
    ("/shared-plain/", "post"),
]


def generate(
    hooks: tuple[str, ...] = (ENUMS, HOOK), patterns: Any = None, **spectacular: Any
) -> tuple[dict[str, Any], SchemaGenerator]:
    with patched_settings({"POSTPROCESSING_HOOKS": list(hooks), **spectacular}):
        generator = SchemaGenerator(patterns=urlpatterns if patterns is None else patterns)
        # A JSON round trip: the schema as a client reads it.
        return json.loads(json.dumps(generator.get_schema(request=None, public=True))), generator


@pytest.fixture(scope="module")
def with_hook() -> dict[str, Any]:
    return generate(hooks=(ENUMS, SHARE, HOOK))[0]


@pytest.fixture(scope="module")
def without_hook() -> dict[str, Any]:
    return generate(hooks=(ENUMS, SHARE))[0]


def operations(schema: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (route, method): operation
        for route, item in schema["paths"].items()
        for method, operation in item.items()
    }


def key_parameters(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        p
        for p in operation.get("parameters", [])
        if p["in"] == "header" and p["name"].lower() == "idempotency-key"
    ]


def resolve(schema: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    if "$ref" not in value:
        return value
    section, name = value["$ref"].removeprefix("#/components/").split("/")
    found: dict[str, Any] = schema["components"][section][name]
    return found


def kept(before: Any, after: Any, schema_before: Any, schema_after: Any, where: str) -> None:
    """Everything in ``before`` is in ``after``: dict keys, list items in order,
    equal scalars; a reference may have become a copy of what it referenced."""
    if isinstance(before, dict) and isinstance(after, dict):
        if "allOf" in after and "allOf" not in before:  # a token view's form body
            after = after["allOf"][0]
        if "$ref" in before and "$ref" not in after:
            before = resolve(schema_before, before)
        for name, value in before.items():
            assert name in after, f"{where}: {name} removed"
            kept(value, after[name], schema_before, schema_after, f"{where}/{name}")
    elif isinstance(before, list) and isinstance(after, list):
        assert len(after) >= len(before), f"{where}: items removed"
        for index, value in enumerate(before):
            kept(value, after[index], schema_before, schema_after, f"{where}[{index}]")
    else:
        assert before == after, f"{where}: {before!r} became {after!r}"


def test_the_schema_with_the_hook_is_valid_openapi(with_hook):
    validate(with_hook)  # openapi-spec-validator
    validate_schema(with_hook)  # drf-spectacular's own check


def test_exactly_the_idempotent_operations_change(with_hook, without_hook):
    before, after = operations(without_hook), operations(with_hook)

    assert before.keys() == after.keys()
    changed = {name for name in before if before[name] != after[name]}
    assert changed == set(IDEMPOTENT)


@pytest.mark.parametrize("route, method", NOT_IDEMPOTENT)
def test_an_operation_that_is_not_idempotent_is_unchanged_byte_for_byte(
    with_hook, without_hook, route, method
):
    before = json.dumps(without_hook["paths"][route][method])
    after = json.dumps(with_hook["paths"][route][method])

    assert after == before


def test_nothing_the_schema_declares_is_removed(with_hook, without_hook):
    for name, operation in operations(without_hook).items():
        kept(operation, with_hook["paths"][name[0]][name[1]], without_hook, with_hook, str(name))
    for section, entries in without_hook["components"].items():
        for name, value in entries.items():
            assert with_hook["components"][section][name] == value, (section, name)


@pytest.mark.parametrize("route, method", list(IDEMPOTENT))
def test_an_idempotent_operation_documents_the_key_header(with_hook, route, method):
    (parameter,) = key_parameters(with_hook["paths"][route][method])

    if route == "/own/":
        assert parameter["description"] == "Our own words."  # the project's, kept
        return
    assert parameter["name"] == "Idempotency-Key"
    assert parameter["required"] is IDEMPOTENT[route, method]
    assert parameter["schema"]["type"] == "string"
    assert parameter["schema"]["maxLength"] == 255
    assert parameter["schema"]["minLength"] == 1


@pytest.mark.parametrize("route, method", [n for n in IDEMPOTENT if n[0] != "/own-errors/"])
def test_an_idempotent_operation_documents_the_packages_answers_as_problem_json(
    with_hook, route, method
):
    responses = with_hook["paths"][route][method]["responses"]

    for status in ("400", "409", "422", "503"):
        response = resolve(with_hook, responses[status])
        assert response["content"][PROBLEM_JSON]["schema"] == {
            "$ref": "#/components/schemas/Problem"
        }
        assert response["description"]
    retry_after = resolve(with_hook, responses["503"])["headers"]["Retry-After"]
    assert retry_after["required"] is True
    assert retry_after["schema"] == {"type": "integer", "minimum": 0}
    assert "Retry-After" in resolve(with_hook, responses["409"])["headers"]


@pytest.mark.parametrize("route, method", list(IDEMPOTENT))
def test_the_operations_own_responses_may_come_back_replayed(
    with_hook, without_hook, route, method
):
    own = without_hook["paths"][route][method]["responses"]
    responses = with_hook["paths"][route][method]["responses"]

    for status in own:
        if status.startswith("5") or int(status) in (401, 403, 408, 409, 425, 429):
            assert "Idempotent-Replayed" not in responses[status].get("headers", {})
            continue  # never stored (RELEASE_STATUSES, 5xx), so never replayed
        assert responses[status]["headers"]["Idempotent-Replayed"] == {
            "$ref": "#/components/headers/IdempotentReplayed"
        }
    assert with_hook["components"]["headers"]["IdempotentReplayed"]["schema"] == {
        "type": "string",
        "enum": ["true"],
    }


def test_the_problem_schema_is_rfc_9457_problem_details(with_hook):
    problem = with_hook["components"]["schemas"]["Problem"]

    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert problem["properties"]["status"]["type"] == "integer"


def test_the_packages_answers_are_shared_components(with_hook):
    responses = with_hook["paths"]["/viewset/"]["post"]["responses"]

    assert responses["422"] == {"$ref": "#/components/responses/IdempotencyKeyReused"}
    assert responses["409"] == {"$ref": "#/components/responses/IdempotencyConflict"}
    assert responses["503"] == {"$ref": "#/components/responses/IdempotencyStoreUnavailable"}
    assert responses["400"] == {"$ref": "#/components/responses/IdempotencyKeyRefused"}


def test_an_operations_own_400_and_409_keep_their_words_and_gain_problem_json(
    with_hook, without_hook
):
    own = without_hook["paths"]["/own/"]["post"]["responses"]
    responses = with_hook["paths"]["/own/"]["post"]["responses"]

    assert responses["400"]["description"] == "Our own 400."
    assert (
        responses["400"]["content"]["application/json"] == own["400"]["content"]["application/json"]
    )
    assert (
        responses["400"]["content"][PROBLEM_JSON]["schema"]["$ref"]
        == "#/components/schemas/Problem"
    )
    assert responses["409"]["description"] == "Our own 409."
    assert PROBLEM_JSON in responses["409"]["content"]
    assert responses["409"]["headers"]["Retry-After"].get("required", False) is False
    assert "$ref" not in responses["422"] or responses["422"]["$ref"].endswith("KeyReused")


def test_a_shared_response_is_copied_into_the_idempotent_operation_and_left_alone_elsewhere(
    with_hook,
):
    assert with_hook["components"]["responses"]["SharedBadRequest"] == SHARED
    plain = with_hook["paths"]["/shared-plain/"]["post"]["responses"]["400"]
    assert plain == {"$ref": "#/components/responses/SharedBadRequest"}
    idempotent_400 = with_hook["paths"]["/shared-idempotent/"]["post"]["responses"]["400"]
    assert idempotent_400["description"] == SHARED["description"]
    assert PROBLEM_JSON in idempotent_400["content"]


def test_a_view_with_its_own_exception_handler_gets_the_answers_without_problem_json(with_hook):
    """OwnErrorFormatViewSet hands the package's errors to its EXCEPTION_HANDLER."""
    responses = with_hook["paths"]["/own-errors/"]["post"]["responses"]

    for status in ("400", "409", "422", "503"):
        assert responses[status]["description"]
        assert "content" not in responses[status]


def test_a_token_view_documents_the_token_form_field(with_hook, without_hook):
    before = without_hook["paths"]["/token-form/"]["post"]["requestBody"]["content"]
    content = with_hook["paths"]["/token-form/"]["post"]["requestBody"]["content"]

    assert content["application/json"] == before["application/json"]
    for media_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        schema = content[media_type]["schema"]
        assert schema["allOf"][0] == before[media_type]["schema"]
        assert "idempotency_token" in schema["allOf"][1]["properties"]
    (parameter,) = key_parameters(with_hook["paths"]["/token-form/"]["post"])
    assert "one-time token" in parameter["description"]
    # A view that is not a token view keeps its form bodies as they were.
    assert with_hook["paths"]["/viewset/"]["post"].get("requestBody") == without_hook["paths"][
        "/viewset/"
    ]["post"].get("requestBody")


@override_settings(IDEMPOTENCY={"REQUIRED": True, "HEADER": "X-Request-Key", "KEY_MAX_LENGTH": 64})
def test_the_header_its_length_and_required_follow_the_settings_at_generation_time():
    schema, _ = generate()
    post = schema["paths"]["/viewset/"]["post"]
    (parameter,) = [p for p in post["parameters"] if p["name"] == "X-Request-Key"]

    assert parameter["required"] is True  # REQUIRED
    assert parameter["schema"]["maxLength"] == 64
    optional = schema["paths"]["/optional/"]["post"]["parameters"]
    assert [p["required"] for p in optional if p["name"] == "X-Request-Key"] == [False]
    # A header the project documents under another name is not taken for the key.
    assert (
        len([p for p in schema["paths"]["/own/"]["post"]["parameters"] if p["in"] == "header"]) == 2
    )


@pytest.mark.parametrize(
    "spectacular",
    [
        {"SCHEMA_PATH_PREFIX_INSERT": "/v1"},
        {"CAMELIZE_NAMES": True},
        {"SCHEMA_PATH_PREFIX": "/api-", "SCHEMA_PATH_PREFIX_TRIM": True},
    ],
    ids=["prefix-insert", "camelize", "prefix-trim"],
)
def test_operations_are_found_wherever_the_settings_put_their_paths(spectacular):
    schema, _ = generate(**spectacular)
    documented = [name for name, op in operations(schema).items() if key_parameters(op)]

    assert len(documented) == len(IDEMPOTENT), sorted(documented)
    validate(schema)


def test_a_schema_without_idempotent_operations_is_left_exactly_as_it_was():
    patterns = [path("not-idempotent/", NotIdempotentView.as_view())]

    assert generate(patterns=patterns)[0] == generate(hooks=(ENUMS,), patterns=patterns)[0]


def test_running_the_hook_again_adds_nothing():
    with patched_settings({"POSTPROCESSING_HOOKS": [HOOK]}):
        generator = SchemaGenerator(patterns=urlpatterns)
        once = generator.get_schema(request=None, public=True)
        twice = postprocess_schema(copy.deepcopy(once), generator)

    assert twice == once


def test_a_project_component_named_problem_is_kept_and_the_packages_takes_another_name():
    schema, _ = generate(hooks=(ENUMS, "tests.test_openapi.own_problem", HOOK))

    assert schema["components"]["schemas"]["Problem"] == {"type": "string"}
    answer = schema["components"]["responses"]["IdempotencyKeyReused"]
    assert answer["content"][PROBLEM_JSON]["schema"] == {"$ref": "#/components/schemas/Problem2"}
    assert schema["components"]["schemas"]["Problem2"]["required"] == [
        "type",
        "title",
        "status",
        "detail",
    ]


class TwoVersions(URLPathVersioning):
    allowed_versions = ("v1", "v2")
    default_version = "v1"


class VersionedView(IdempotencyMixin, APIView):
    permission_classes = [permissions.AllowAny]
    versioning_class = TwoVersions

    def post(self, request: Any, version: str) -> Any:
        return Response(status=201)


def test_an_operation_under_a_url_path_version_is_found():
    patterns = [
        path("<str:version>/versioned/", VersionedView.as_view()),
        path("not-idempotent/", NotIdempotentView.as_view()),
    ]
    schema, _ = generate(patterns=patterns)

    assert key_parameters(schema["paths"]["/v1/versioned/"]["post"])
    assert not key_parameters(schema["paths"]["/not-idempotent/"]["post"])


# How a view's options are found: the lookups the doors rely on.


def test_the_decorated_function_of_an_api_view_is_found_in_drfs_handler():
    handler = views.api_function_view.cls.post  # DRF's, calling the decorated function

    assert options_of(handler) is None
    assert isinstance(handler_options(handler), ViewOptions)


def test_method_decorator_keeps_the_options_on_the_class_attribute():
    assert options_of(MethodDecoratedAPIView.post).required is True
    assert options_of(views_doors.DispatchDecoratedAPIView.dispatch) is not None


def test_a_handler_defined_elsewhere_is_not_searched_for_closures():
    decorated = idempotent(lambda request: None)

    def handler(self: Any, request: Any) -> Any:
        return decorated(request)

    assert handler_options(handler) is None


def test_the_mixins_get_methods_decide_the_methods_and_required():
    view = views.ConfiguredViewSet()

    assert view_options(view, "POST").required is True
    assert view_options(view, "POST").methods == frozenset({"POST", "PATCH"})
    assert view_options(NotIdempotentView(), "POST") is None
