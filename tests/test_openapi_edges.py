"""OpenAPI edges (review 14, issue 14): generic views' action methods, an
operation's own problem 400, and a mixin hook that needs a real request."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from django.test import override_settings
from django.urls import path
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.settings import patched_settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, permissions, serializers
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from idempotency import idempotent
from idempotency.drf import IdempotencyMixin
from tests.testapp.models import Charge

HOOK = "idempotency.openapi.postprocess_schema"
PROBLEM_JSON = "application/problem+json"


# ------------------------------------------------------------------ OpenAPI


class ChargeSerializer(serializers.ModelSerializer[Charge]):
    class Meta:
        model = Charge
        fields = ("id", "amount", "label")


class GenericCreateView(generics.CreateAPIView[Charge]):
    """A generic view whose ``create`` carries ``@idempotent`` (contract section 1:
    "a method of a DRF APIView/ViewSet (create, update, an @action, ...)")."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []
    serializer_class = ChargeSerializer
    queryset = Charge.objects.all()

    @idempotent
    def create(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().create(request, *args, **kwargs)


OwnErrors = inline_serializer("OwnErrors", fields={"errors": serializers.ListField()})


class OwnProblem400View(IdempotencyMixin, APIView):
    """A project that already documents its 400 as application/problem+json,
    with its own body (drf-standardized-errors style)."""

    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(request=None, responses={201: None, (400, PROBLEM_JSON): OwnErrors})
    def post(self, request: Any) -> Any:
        return Response(status=201)


class RequiredForStrictClientsView(IdempotencyMixin, APIView):
    """``get_idempotency_required()`` decides per request, as the mixin's
    docstring invites: here from the caller's credential, which the schema's
    mock request does not have."""

    permission_classes = [permissions.AllowAny]

    def get_idempotency_required(self) -> bool | None:
        return bool(self.request.auth["strict"])

    @extend_schema(request=None, responses={201: None})
    def post(self, request: Any) -> Any:
        return Response(status=201)


class GenericUpdateDestroyView(generics.RetrieveUpdateDestroyAPIView[Charge]):
    permission_classes = [permissions.AllowAny]
    authentication_classes: list[Any] = []
    serializer_class = ChargeSerializer
    queryset = Charge.objects.all()

    @idempotent
    def update(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().update(request, *args, **kwargs)

    @idempotent
    def destroy(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().destroy(request, *args, **kwargs)


urlpatterns = [
    path("generic-create/", GenericCreateView.as_view()),
    path("charges/<int:pk>/", GenericUpdateDestroyView.as_view()),
    path("own-problem-400/", OwnProblem400View.as_view()),
]


def schema() -> dict[str, Any]:
    with patched_settings({"POSTPROCESSING_HOOKS": [HOOK]}):
        generated = SchemaGenerator(patterns=urlpatterns).get_schema(request=None, public=True)
    return json.loads(json.dumps(generated))


def key_parameters(operation: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        p
        for p in operation.get("parameters", [])
        if p.get("in") == "header" and p.get("name", "").lower() == "idempotency-key"
    ]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_idempotent_create_of_a_generic_create_api_view_is_documented_as_it_is_protected():
    # At request time the package protects it: the second POST is the replay.
    client = APIClient()
    first = client.post("/generic-create/", {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="g1")
    again = client.post("/generic-create/", {"amount": 5}, format="json", HTTP_IDEMPOTENCY_KEY="g1")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Charge.objects.count() == 1

    # So its schema must document the key and the package's answers.
    operation = schema()["paths"]["/generic-create/"]["post"]
    assert key_parameters(operation), "the protected operation has no Idempotency-Key header"
    assert {"409", "422", "503"} <= set(operation["responses"])


@pytest.mark.django_db
@override_settings(ROOT_URLCONF=__name__)
def test_the_packages_400_body_matches_the_schema_of_an_operation_that_declares_its_own_problem_400():
    # A real 400 of the package: an empty key.
    answer = APIClient().post("/own-problem-400/", HTTP_IDEMPOTENCY_KEY="")
    assert answer.status_code == 400
    assert answer.headers["Content-Type"] == PROBLEM_JSON
    body = json.loads(answer.content)

    document = schema()
    response = document["paths"]["/own-problem-400/"]["post"]["responses"]["400"]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    documented = response["content"][PROBLEM_JSON]["schema"]
    # The documented schema of that status and media type must accept the
    # package's answer (schemathesis' response_schema_conformance).
    jsonschema.validate(body, {**documented, "components": document["components"]})


def test_a_mixin_hook_that_needs_a_real_request_does_not_break_the_whole_schema():
    """drf-spectacular itself warns and falls back when a view cannot be
    introspected without a real request; the hook must not turn one such view
    into an exception for the whole schema (a 500 at /api/schema/)."""
    patterns = [*urlpatterns, path("strict/", RequiredForStrictClientsView.as_view())]
    with patched_settings({"POSTPROCESSING_HOOKS": [HOOK]}):
        generated = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    # Every other idempotent operation is still documented.
    assert key_parameters(generated["paths"]["/own-problem-400/"]["post"])
    assert "/strict/" in generated["paths"]


@pytest.mark.django_db
def test_idempotent_update_and_destroy_of_a_generic_view_document_put_patch_and_delete():
    # PATCH runs partial_update, which calls the decorated update: protected too.
    charge = Charge.objects.create(amount=1, label="a")
    with override_settings(ROOT_URLCONF=__name__):
        client = APIClient()
        first = client.patch(
            f"/charges/{charge.pk}/", {"amount": 2}, format="json", HTTP_IDEMPOTENCY_KEY="u1"
        )
        again = client.patch(
            f"/charges/{charge.pk}/", {"amount": 2}, format="json", HTTP_IDEMPOTENCY_KEY="u1"
        )
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["Idempotent-Replayed"] == "true"

    operations = schema()["paths"]["/charges/{id}/"]
    for method in ("put", "patch", "delete"):
        assert key_parameters(operations[method]), method
        assert {"409", "422", "503"} <= set(operations[method]["responses"]), method
    assert not key_parameters(operations["get"])


def test_an_operations_own_problem_400_and_the_packages_are_both_documented_once():
    from idempotency.openapi import postprocess_schema

    document = schema()
    documented = document["paths"]["/own-problem-400/"]["post"]["responses"]["400"]
    body = documented["content"][PROBLEM_JSON]["schema"]
    assert body["anyOf"][1] == {"$ref": "#/components/schemas/Problem"}
    assert body["anyOf"][0] != body["anyOf"][1]  # the project's own, kept

    with patched_settings({"POSTPROCESSING_HOOKS": [HOOK]}):
        generator = SchemaGenerator(patterns=urlpatterns)
        generator.get_schema(request=None, public=True)
        again = postprocess_schema(json.loads(json.dumps(document)), generator)
    assert again == document  # the hook run twice adds nothing


def test_a_mixin_hook_that_raises_on_the_mock_request_is_warned_about_and_falls_back(capsys):
    from drf_spectacular.drainage import reset_generator_stats

    reset_generator_stats()
    patterns = [path("strict/", RequiredForStrictClientsView.as_view())]
    with patched_settings({"POSTPROCESSING_HOOKS": [HOOK]}):
        generated = SchemaGenerator(patterns=patterns).get_schema(request=None, public=True)

    (parameter,) = key_parameters(generated["paths"]["/strict/"]["post"])
    assert parameter["required"] is False  # REQUIRED, the settings' default
    warned = capsys.readouterr().err
    assert "RequiredForStrictClientsView.get_idempotency_required() raised" in warned
