from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from tests.testapp import views

router = SimpleRouter()
router.register("viewset", views.ChargeViewSet, basename="viewset")
router.register(
    "authenticated-viewset", views.AuthenticatedViewSet, basename="authenticated-viewset"
)
router.register("action", views.ActionViewSet, basename="action")

urlpatterns = [
    path("plain/", views.plain_view),
    path("plain-required/", views.plain_required_view),
    path("api-function/", views.api_function_view),
    path("api-authenticated/", views.api_authenticated_view),
    path("api-view/", views.ChargeAPIView.as_view()),
    path("class-view/", views.PlainClassView.as_view()),
    path("", include(router.urls)),
]

# tests/concurrency
urlpatterns += [
    path("process/", views.process_view),
    path("doomed-worker/", views.doomed_worker_view),
]

# tests/test_*.py (the HTTP contract)
contract_router = SimpleRouter()
contract_router.register("throttled-viewset", views.ThrottledViewSet, basename="throttled-viewset")
contract_router.register("admin-viewset", views.AdminOnlyViewSet, basename="admin-viewset")
contract_router.register("configured-viewset", views.ConfiguredViewSet, basename="configured")
contract_router.register("optional-viewset", views.OptionalViewSet, basename="optional")
contract_router.register("mixin-action", views.DecoratedActionMixinViewSet, basename="mixin-action")
urlpatterns += [
    path("tenant-path/", views.tenant_path_scoped_view),
    path("tenant-callable/", views.tenant_callable_scoped_view),
    path("ttl/", views.ttl_view),
    path("optional/", views.optional_view),
    path("headers/", views.headers_view),
    path("throttled/", views.throttled_view),
    path("admin-only/", views.admin_only_view),
    path("echo/", views.echo_view),
    path("reads-data/", views.reads_data_first_view),
    path("", include(contract_router.urls)),
]

# tests/test_transactions.py, tests/test_queries.py
urlpatterns += [
    path("atomic-depth/", views.atomic_depth_view),
    path("superseded/", views.superseded_view),
    path("commit-fails/", views.commit_fails_view),
]
# tests/test_conf.py
urlpatterns += [
    path("record/", views.record_view),
    path("template/", views.template_view),
]
urlpatterns += [path("claim-visibility/", views.claim_visibility_view)]
# tests/concurrency/test_contention.py
urlpatterns += [path("fails-first/", views.fails_first_view)]
# tests/reliability
urlpatterns += [path("fault/", views.fault_view)]
# tests/reliability (R2: input, isolation, credentials, large bodies, clock skew)
urlpatterns += [
    path("robust/", views.robust_view),
    path("robust-api/", views.robust_api_view),
    path("short-ttl/", views.short_ttl_view),
    path("credentials/", views.credentials_view),
    path("secret-echo/", views.secret_echo_view),
    path("big-stream/", views.big_stream_view),
    path("clock/", views.clock_view),
]
