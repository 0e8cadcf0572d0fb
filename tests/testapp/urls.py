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

# tests/test_doors.py: every way of attaching the package
from idempotency.drf import IdempotencyTokenView  # noqa: E402
from tests.testapp import views_doors  # noqa: E402

doors_router = SimpleRouter()
doors_router.register("dispatch-viewset", views_doors.DispatchDecoratedViewSet, basename="dv")
doors_router.register("own-errors", views_doors.OwnErrorFormatViewSet, basename="own-errors")
doors_router.register("validating", views_doors.ValidatingViewSet, basename="validating")
doors_router.register("token-pay", views_doors.TokenPayViewSet, basename="token-pay")
urlpatterns += [
    path("dispatch-decorated/", views_doors.DispatchDecoratedAPIView.as_view()),
    path("dispatch-in-body/", views_doors.DispatchInClassBodyAPIView.as_view()),
    path("mixin-and-dispatch/", views_doors.MixinAndDispatchDecoratedAPIView.as_view()),
    path("durable/", views_doors.durable_view),
    path("durable-mixin/", views_doors.DurableMixinView.as_view()),
    path("durable-lookalike/", views_doors.durable_lookalike_view),
    path("owns-transaction/", views_doors.owns_its_transaction_view),
    path("rolls-back/", views_doors.rolls_back_view),
    path("gzipped/", views_doors.gzipped_view),
    path("negotiated/", views_doors.CsvOrJson.as_view()),
    path("principal/", views_doors.principal_view),
    path("principal-tenant/", views_doors.principal_tenant_view),
    path("async/", views_doors.async_view),
    path("async-class/", views_doors.AsyncClassView.as_view()),
    path("sensitive/", views_doors.sensitive_view),
    path("sensitive-stream/", views_doors.sensitive_stream_view),
    path("async-dispatch/", views_doors.AsyncDispatchView.as_view()),
    path("gated/", views_doors.gated_view),
    path("gated-waiting/", views_doors.gated_waiting_view),
    path("form/", views_doors.form_page_view),
    path("slow-form/", views_doors.slow_form_page_view),
    path("slow-pay/", views_doors.slow_pay_view),
    path("pay/", views_doors.pay_view),
    path("paid/<int:pk>/", views_doors.paid_view),
    path("form-key/", views_doors.form_key_view),
    path("token/", IdempotencyTokenView.as_view()),
    path("", include(doors_router.urls)),
]
# tests/test_fingerprint.py
urlpatterns += [
    path("fingerprint/form/", views.fingerprint_form_view),
    path("fingerprint/upload/<str:filename>/", views.fingerprint_upload_view),
    path("fingerprint/decimal/", views.fingerprint_decimal_view),
]

# tests/uvicorn and tests/test_async.py: async views under ASGI
from tests.testapp import views_async  # noqa: E402

urlpatterns += [
    path("async-charge/", views_async.async_charge_view),
    path("async-charge-class/", views_async.AsyncChargeView.as_view()),
    path("async-required/", views_async.async_required_view),
    path("async-waiting/", views_async.async_waiting_view),
    path("async-short-wait/", views_async.async_short_wait_view),
    path("orm-on-the-event-loop/", views_async.orm_on_the_event_loop_view),
]

# tests/stores
urlpatterns += [path("counted/", views.counted_view)]
urlpatterns += [path("dies-after-commit/", views.dies_after_commit_view)]
