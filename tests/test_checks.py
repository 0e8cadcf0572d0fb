"""System checks: every id triggers on a bad value, stays silent on a good one, never raises."""

from __future__ import annotations

import functools
import sys
from datetime import timedelta
from io import StringIO

import pytest
from django.core.checks import Error, Warning
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from idempotency.checks import CHECKS, LEDGER, RETIRED
from idempotency.checks.rules import RULES
from idempotency.conf import DEFAULTS
from idempotency.options import ViewOptions
from tests.redis_servers import redis_server
from tests.servers import free_port
from tests.test_redis_settings import silent_redis
from tests.versioning.test_review_edges import PlainAdminURLs, unversioned_serializer

# Overriding DATABASES is how a project adds an alias; Django warns that its
# connections do not follow, which is why these checks read the settings.
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")


class ExplodingDict(dict):
    """A settings dict whose lookups raise, as a broken settings wrapper might."""

    def get(self, *args, **kwargs):
        raise RuntimeError("lookup exploded")


class Hostile:
    """Every dunder a check might touch raises."""

    def __eq__(self, other):
        raise RuntimeError("eq exploded")

    def __hash__(self):
        return 1

    def __repr__(self):
        raise RuntimeError("repr exploded")

    def __bool__(self):
        raise RuntimeError("bool exploded")

    def __iter__(self):
        raise RuntimeError("iter exploded")

    def __len__(self):
        raise RuntimeError("len exploded")

    def __lt__(self, other):
        raise RuntimeError("lt exploded")

    __le__ = __gt__ = __ge__ = __lt__


class HostileList(list):
    def __iter__(self):
        raise RuntimeError("iter exploded")


def scope_of_request_and_view(request, view):
    return "tenant"


class CallableScope:
    def __call__(self, request):
        return "tenant"


def with_database(settings, alias, engine, **entry):
    """Add a database alias (never connected to) and point DATABASE at it."""
    settings.DATABASES = {**settings.DATABASES, alias: {"ENGINE": engine, "NAME": alias, **entry}}
    settings.IDEMPOTENCY = {**getattr(settings, "IDEMPOTENCY", {}), "DATABASE": alias}


def without_redis(monkeypatch):
    # None in sys.modules makes `import redis` raise ImportError, as it does
    # where the package is not installed.
    monkeypatch.setitem(sys.modules, "redis", None)


def idempotency_messages():
    return registry.run_checks(tags=["idempotency"])


def only(messages, check_id):
    found = [message for message in messages if message.id == check_id]
    assert len(found) == 1, f"expected one {check_id}, got {[m.id for m in messages]}"
    return found[0]


def with_corsheaders(settings, **cors):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "corsheaders"]
    for name, value in cors.items():
        setattr(settings, name, value)


# id -> (settings to apply, a fragment the message must quote)
BAD = {
    "idempotency.E001": ({"IDEMPOTENCY": ["HEADER"]}, "['HEADER']"),
    "idempotency.E002": ({"IDEMPOTENCY": {"TIMEOUT": 5}}, "'TIMEOUT'"),
    "idempotency.E003": ({"IDEMPOTENCY": {"HEADER": 42}}, "42"),
    "idempotency.E004": ({"IDEMPOTENCY": {"HEADER": "Idempotency Key"}}, "'Idempotency Key'"),
    "idempotency.E005": ({"IDEMPOTENCY": {"REQUIRED": "False"}}, "'False'"),
    "idempotency.E006": ({"IDEMPOTENCY": {"TTL": "1h"}}, "'1h'"),
    "idempotency.E007": ({"IDEMPOTENCY": {"LOCK_TIMEOUT": -5}}, "-5"),
    "idempotency.E008": ({"IDEMPOTENCY": {"KEY_MAX_LENGTH": 0}}, "0"),
    "idempotency.E009": ({"IDEMPOTENCY": {"REPLAY_HEADERS": "X-Cost"}}, "'X-Cost'"),
    "idempotency.E010": ({"IDEMPOTENCY": {"RELEASE_STATUSES": (408, 700)}}, "(408, 700)"),
    "idempotency.E011": ({"IDEMPOTENCY": {"MAX_STORED_RESPONSE_BYTES": -1}}, "-1"),
    "idempotency.E012": ({"IDEMPOTENCY": {"DATABASE": None}}, "None"),
    "idempotency.E013": ({"IDEMPOTENCY": {"DATABASE": "payments"}}, "'payments'"),
    "idempotency.E014": ({"IDEMPOTENCY": {"SCOPE": 42}}, "42"),
    "idempotency.E015": (
        {"IDEMPOTENCY": {"FINGERPRINT": "payments.nowhere.fingerprint"}},
        "'payments.nowhere.fingerprint'",
    ),
    "idempotency.E016": (
        {"IDEMPOTENCY": {"SCOPE": "idempotency.conf.DEFAULTS"}},
        "'idempotency.conf.DEFAULTS'",
    ),
    "idempotency.E017": ({"IDEMPOTENCY": {"REPLAY_HEADERS": HostileList(["X"])}}, "iter exploded"),
    "idempotency.E018": ({"IDEMPOTENCY": {"HEADER": "Authorization"}}, "'Authorization'"),
    "idempotency.E019": (
        {"IDEMPOTENCY": {"SCOPE": "tests.test_checks.scope_of_request_and_view"}},
        "'tests.test_checks.scope_of_request_and_view'",
    ),
    "idempotency.E020": ({"IDEMPOTENCY": {"ANONYMOUS": "shared"}}, "'shared'"),
    "idempotency.E021": ({"IDEMPOTENCY": {"IN_PROGRESS_WAIT": "5"}}, "'5'"),
    "idempotency.E022": ({"IDEMPOTENCY": {"IN_PROGRESS_WAIT": 601}}, "601"),
    "idempotency.E023": ({"IDEMPOTENCY": {"STORE": "memcached"}}, "'memcached'"),
    "idempotency.E024": (
        {"IDEMPOTENCY": {"REDIS_URL": "http://localhost:6379"}},
        "'http://localhost:6379'",
    ),
    "idempotency.E025": ({"IDEMPOTENCY": {"REDIS_CLUSTER": "yes"}}, "'yes'"),
    "idempotency.E026": ({"IDEMPOTENCY": {"REDIS_PREFIX": "idem potency:"}}, "'idem potency:'"),
    "idempotency.E027": ({"IDEMPOTENCY": {"STORE": "redis"}}, "'redis'"),
    "idempotency.E028": (
        {"IDEMPOTENCY": {"STORE": "redis", "REDIS_URL": "redis://localhost:6379/0"}},
        "'django-idempotency[redis]'",
    ),
    "idempotency.E029": ({}, "'django.db.backends.dummy'"),
    # A URLconf with a view whose scope= does not import.
    "idempotency.E030": ({"ROOT_URLCONF": "tests.testapp.urls_bad_scope"}, "'no.such.path'"),
    "idempotency.E031": (
        {"IDEMPOTENCY": {"STORE": "redis", "REDIS_URL": "redis://127.0.0.1:1/0?socket_timeout=x"}},
        "'socket_timeout'",
    ),
    # The shared Redis at 127.0.0.1:6379, only read: it is no cluster node.
    "idempotency.E032": (
        {
            "IDEMPOTENCY": {
                "STORE": "redis",
                "REDIS_URL": "redis://127.0.0.1:6379/0",
                "REDIS_CLUSTER": True,
            }
        },
        "cluster_enabled:0",
    ),  # fmt: skip
    # A URLconf serving a plain admin.ModelAdmin of a VersionedModel.
    "idempotency.E033": ({"ROOT_URLCONF": PlainAdminURLs}, "testapp.Article"),
    # A plain ModelSerializer of a VersionedModel listing the version (plain_serializer).
    "idempotency.E034": ({}, "testapp.Article"),
    "idempotency.W001": ({"IDEMPOTENCY": {"TTL": 30, "LOCK_TIMEOUT": 60}}, "60"),
    "idempotency.W003": ({"CORS_ALLOW_HEADERS": ("content-type",)}, "('content-type',)"),
    "idempotency.W004": ({"CORS_EXPOSE_HEADERS": ["X-Cost"]}, "['X-Cost']"),
    "idempotency.W005": ({"IDEMPOTENCY": {"REPLAY_HEADERS": ["set-cookie"]}}, "'set-cookie'"),
    "idempotency.W006": ({"IDEMPOTENCY": {"HEADER": "Idempotency_Key"}}, "'Idempotency_Key'"),
    "idempotency.W007": ({"USE_TZ": False, "TIME_ZONE": "Europe/Paris"}, "False"),
    # REDIS_URL: a redis-server of the test's own (evicting_redis).
    "idempotency.W008": ({"IDEMPOTENCY": {"STORE": "redis"}}, "'allkeys-lru'"),
    "idempotency.W009": ({}, "task_time_limit (300 seconds)"),
    "idempotency.W010": ({"IDEMPOTENCY": {"RELEASE_STATUSES": (200, 201, 429)}}, "200, 201"),
    # REDIS_URL: a loopback socket that never answers (silent_redis).
    "idempotency.W011": ({"IDEMPOTENCY": {"STORE": "redis"}}, "within 1 s"),
}


@pytest.fixture(scope="module")
def evicting_redis():
    with redis_server("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru") as server:
        yield server


def apply_bad(settings, monkeypatch, check_id, request):
    overrides, _ = BAD[check_id]
    if check_id in {"idempotency.W003", "idempotency.W004"}:
        with_corsheaders(settings)
    for name, value in overrides.items():
        setattr(settings, name, value)
    if check_id == "idempotency.E028":
        without_redis(monkeypatch)
    if check_id == "idempotency.E029":
        with_database(settings, "legacy", "django.db.backends.dummy")
    if check_id == "idempotency.W007":
        with_database(settings, "records", "django.db.backends.sqlite3")
    if check_id == "idempotency.W008":
        url = request.getfixturevalue("evicting_redis").url
        settings.IDEMPOTENCY = {**settings.IDEMPOTENCY, "REDIS_URL": url}
    if check_id == "idempotency.W009":
        with_celery_app(monkeypatch, task_time_limit=300)
    if check_id == "idempotency.E034":
        request.getfixturevalue("plain_serializer")
    if check_id == "idempotency.W011":
        url = request.getfixturevalue("hung_redis")
        settings.IDEMPOTENCY = {**settings.IDEMPOTENCY, "REDIS_URL": url}


@pytest.fixture
def plain_serializer():
    with unversioned_serializer():
        yield


@pytest.fixture
def hung_redis():
    with silent_redis() as url:
        yield url


GOOD = {
    "HEADER": ["X-Idempotency-Key", "idempotency-key"],
    "REQUIRED": [True, False],
    "TTL": [3600, 86400.5, timedelta(days=7)],
    "LOCK_TIMEOUT": [1, 0.25, timedelta(seconds=1)],
    "KEY_MAX_LENGTH": [1, 64, 255, 256, 10_000],
    "SCOPE": [
        "idempotency.scope.default_scope",
        lambda request: "tenant",
        lambda request, view=None: "tenant",
        lambda *args: "tenant",
        CallableScope(),
        functools.partial(scope_of_request_and_view, view=None),
    ],
    "REPLAY_HEADERS": [(), ["X-Request-Cost"], ("Cache-Control", "X-Cost")],
    "RELEASE_STATUSES": [(), [408, 423], frozenset({100, 599})],
    "FINGERPRINT": ["idempotency.fingerprint.request_fingerprint", lambda request: "f"],
    "MAX_STORED_RESPONSE_BYTES": [0, 1024],
    "DATABASE": ["default"],
    "ANONYMOUS": ["share", "session", "refuse"],
    "IN_PROGRESS_WAIT": [0, 0.5, 30, 600, timedelta(0), timedelta(minutes=10)],
    "STORE": ["database"],
    "REDIS_URL": [
        None,
        "redis://localhost:6379/0",
        "rediss://:secret@cache.example.com:6380/1",
        "redis://[::1]:6379",
        "unix:///run/redis/redis.sock",
    ],
    "REDIS_CLUSTER": [True, False],
    "REDIS_PREFIX": ["idempotency:", "shop:idem:", "{idempotency}:", "é:"],
}

HOSTILE = [
    None,
    ExplodingDict(),
    Hostile(),
    HostileList([1]),
    [Hostile()],
    {Hostile(): 1},
    float("nan"),
    float("inf"),
    -float("inf"),
    10**100,
    -(10**100),
    "",
    ".",
    "..relative.path",
    "idempotency.",
    "\x00",
    b"bytes",
    object(),
    type,
    timedelta.max,
    timedelta.min,
]


def test_every_ledger_id_has_a_bad_value_here():
    assert set(BAD) == set(LEDGER)


def test_every_setting_has_a_rule_and_every_rule_an_id_in_the_ledger():
    assert {name for row in RULES for name in row.settings} == set(DEFAULTS)
    assert {outcome.id for row in RULES for outcome in row.outcomes.values()} <= set(LEDGER)


def test_retired_ids_are_not_in_the_ledger():
    assert "idempotency.W002" in RETIRED
    assert not RETIRED & set(LEDGER)


@pytest.mark.parametrize("check_id", sorted(BAD))
def test_bad_value_is_reported_with_its_value_and_a_hint(settings, monkeypatch, check_id, request):
    _, quoted = BAD[check_id]
    apply_bad(settings, monkeypatch, check_id, request)

    message = only(idempotency_messages(), check_id)

    assert quoted in message.msg
    assert message.hint
    assert message.msg.endswith((".", "?"))
    assert "\n" not in message.msg


@pytest.mark.parametrize("check_id", sorted(BAD))
def test_e_ids_are_errors_and_w_ids_are_warnings(settings, monkeypatch, check_id, request):
    apply_bad(settings, monkeypatch, check_id, request)

    message = only(idempotency_messages(), check_id)

    expected = Error if check_id.startswith("idempotency.E") else Warning
    assert type(message) is expected


def test_default_settings_produce_no_messages(settings):
    del settings.IDEMPOTENCY
    assert idempotency_messages() == []


@pytest.mark.parametrize("value", [{}, dict(DEFAULTS)], ids=["empty", "every-default"])
def test_explicit_defaults_produce_no_messages(settings, value):
    settings.IDEMPOTENCY = value
    assert idempotency_messages() == []


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, value) for name, values in GOOD.items() for value in values],
    ids=lambda item: item if isinstance(item, str) else None,
)
def test_good_value_is_silent(settings, name, value):
    settings.IDEMPOTENCY = {name: value}
    assert idempotency_messages() == []


@pytest.mark.parametrize("name", list(DEFAULTS))
@pytest.mark.parametrize("value", HOSTILE, ids=lambda value: type(value).__name__)
def test_hostile_value_never_raises(settings, name, value):
    settings.IDEMPOTENCY = {name: value}

    messages = idempotency_messages()

    assert all(message.id in LEDGER and message.hint for message in messages)


@pytest.mark.parametrize("value", HOSTILE, ids=lambda value: type(value).__name__)
def test_hostile_settings_dict_never_raises(settings, value):
    settings.IDEMPOTENCY = value

    messages = idempotency_messages()

    assert all(message.id in LEDGER and message.hint for message in messages)


@pytest.mark.parametrize("value", HOSTILE, ids=lambda value: type(value).__name__)
def test_hostile_cors_settings_never_raise(settings, value):
    with_corsheaders(settings, CORS_ALLOW_HEADERS=value, CORS_EXPOSE_HEADERS=value)

    messages = idempotency_messages()

    assert all(message.id in LEDGER and message.hint for message in messages)


def test_unknown_key_suggests_the_closest_known_key(settings):
    settings.IDEMPOTENCY = {"ttl": 60, "LOCK_TIMOUT": 5}

    messages = idempotency_messages()

    assert sorted(m.msg for m in messages) == [
        "settings.IDEMPOTENCY has an unknown key 'LOCK_TIMOUT': did you mean 'LOCK_TIMEOUT'?",
        "settings.IDEMPOTENCY has an unknown key 'ttl': did you mean 'TTL'?",
    ]


def test_unknown_key_without_a_close_match_says_to_remove_it(settings):
    settings.IDEMPOTENCY = {"COLOUR": "blue", 7: "seven"}

    messages = idempotency_messages()

    assert sorted(m.msg for m in messages) == [
        "settings.IDEMPOTENCY has an unknown key 'COLOUR': remove it.",
        "settings.IDEMPOTENCY has an unknown key 7: remove it.",
    ]


@pytest.mark.parametrize(
    "value",
    [True, "3600", None, [60]],
    ids=["bool", "str", "none", "list"],
)
def test_duration_of_the_wrong_type_is_e006(settings, value):
    settings.IDEMPOTENCY = {"TTL": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E006"]


@pytest.mark.parametrize(
    "value",
    [0, 0.0, -1, 1e-7, timedelta(0), timedelta(seconds=-1), float("nan"), float("inf"), 10**12,
     timedelta.max],
    ids=str,
)  # fmt: skip
def test_duration_that_is_not_positive_or_too_long_is_e007(settings, value):
    settings.IDEMPOTENCY = {"TTL": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E007"]


def test_both_durations_are_checked(settings):
    settings.IDEMPOTENCY = {"TTL": False, "LOCK_TIMEOUT": 0}

    messages = idempotency_messages()

    assert {(m.id, m.msg.split(" is ")[0]) for m in messages} == {
        ("idempotency.E006", 'IDEMPOTENCY["TTL"]'),
        ("idempotency.E007", 'IDEMPOTENCY["LOCK_TIMEOUT"]'),
    }


def test_lock_timeout_equal_to_ttl_is_silent(settings):
    settings.IDEMPOTENCY = {"TTL": timedelta(minutes=1), "LOCK_TIMEOUT": 60}
    assert idempotency_messages() == []


def test_lock_timeout_longer_than_default_ttl_is_w001(settings):
    settings.IDEMPOTENCY = {"LOCK_TIMEOUT": timedelta(days=2)}
    assert [m.id for m in idempotency_messages()] == ["idempotency.W001"]


def test_key_max_length_longer_than_the_old_key_column_is_silent(settings):
    # W002 is retired: keys are stored as 64-character digests, whatever their length.
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": 1000}
    assert idempotency_messages() == []


@pytest.mark.parametrize("value", [True, 2.5, "64", -3], ids=str)
def test_key_max_length_that_is_not_a_positive_int_is_e008(settings, value):
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E008"]


@pytest.mark.parametrize(
    "value",
    [None, [True], ["408"], [99], {408: "timeout"}, "408"],
    ids=["none", "bool", "str-item", "below-100", "dict", "str"],
)
def test_release_statuses_that_are_not_http_statuses_are_e010(settings, value):
    settings.IDEMPOTENCY = {"RELEASE_STATUSES": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E010"]


@pytest.mark.parametrize(
    "value",
    [["X-Cost", 7], ["Bad Header"], [""], {"X-Cost": 1}],
    ids=["int-item", "space", "empty", "dict"],
)
def test_replay_headers_that_are_not_header_names_are_e009(settings, value):
    settings.IDEMPOTENCY = {"REPLAY_HEADERS": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E009"]


def test_every_credential_header_in_replay_headers_is_named_in_one_warning(settings):
    settings.IDEMPOTENCY = {"REPLAY_HEADERS": ("X-Cost", "Authorization", "SET-COOKIE")}

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.W005"]
    assert "'Authorization', 'SET-COOKIE'" in messages[0].msg
    assert "'X-Cost'" not in messages[0].msg
    assert "no effect" in messages[0].hint


@pytest.mark.parametrize("header", ["", "Idempotency:Key", "Idempotency-Kéy", "a\r\nb"], ids=repr)
def test_header_that_is_not_a_token_is_e004(settings, header):
    settings.IDEMPOTENCY = {"HEADER": header}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E004"]


def test_hook_whose_module_raises_on_import_is_e015(settings):
    settings.IDEMPOTENCY = {"SCOPE": "tests.testapp.nonexistent_module.scope"}
    message = only(idempotency_messages(), "idempotency.E015")
    assert "No module named" in message.msg


def test_hook_naming_a_missing_attribute_is_e015(settings):
    settings.IDEMPOTENCY = {"FINGERPRINT": "idempotency.fingerprint.no_such_function"}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E015"]


def test_hook_naming_a_module_is_e016(settings):
    settings.IDEMPOTENCY = {"FINGERPRINT": "idempotency.fingerprint"}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E016"]


def test_database_error_lists_the_configured_aliases(settings):
    settings.IDEMPOTENCY = {"DATABASE": "replica"}
    message = only(idempotency_messages(), "idempotency.E013")
    assert "'default'" in message.msg


def test_cors_checks_are_silent_without_corsheaders(settings):
    settings.CORS_ALLOW_HEADERS = ()
    settings.CORS_EXPOSE_HEADERS = ()
    assert idempotency_messages() == []


def test_corsheaders_defaults_trigger_both_cors_warnings(settings):
    with_corsheaders(settings)
    assert sorted(m.id for m in idempotency_messages()) == ["idempotency.W003", "idempotency.W004"]


@pytest.mark.parametrize(
    "header", ["idempotency-key", "Idempotency-Key", "IDEMPOTENCY-KEY"], ids=str
)
def test_cors_allow_headers_compare_case_insensitively(settings, header):
    from corsheaders.defaults import default_headers

    with_corsheaders(
        settings,
        CORS_ALLOW_HEADERS=(*default_headers, header),
        CORS_EXPOSE_HEADERS=["Idempotent-Replayed"],
    )
    assert idempotency_messages() == []


def test_cors_allow_headers_follow_the_header_setting(settings):
    settings.IDEMPOTENCY = {"HEADER": "X-Request-Key"}
    with_corsheaders(
        settings,
        CORS_ALLOW_HEADERS=["idempotency-key"],
        CORS_EXPOSE_HEADERS=["idempotent-replayed"],
    )
    message = only(idempotency_messages(), "idempotency.W003")
    assert "'X-Request-Key'" in message.msg


def test_cors_wildcard_counts_only_without_credentials(settings):
    with_corsheaders(settings, CORS_ALLOW_HEADERS=["*"], CORS_EXPOSE_HEADERS=["*"])
    assert idempotency_messages() == []

    settings.CORS_ALLOW_CREDENTIALS = True

    assert sorted(m.id for m in idempotency_messages()) == ["idempotency.W003", "idempotency.W004"]


def test_every_check_is_registered_under_the_idempotency_tag():
    registered = set(registry.get_checks())
    assert set(CHECKS) <= registered
    assert all("idempotency" in check.tags for check in CHECKS)


def test_manage_py_check_fails_on_an_error(settings):
    settings.IDEMPOTENCY = {"TTL": "1 day"}

    with pytest.raises(SystemCheckError) as raised:
        call_command("check")

    assert "idempotency.E006" in str(raised.value)
    assert "'1 day'" in str(raised.value)
    assert "HINT:" in str(raised.value)


def test_manage_py_check_prints_a_warning_and_succeeds(settings):
    settings.IDEMPOTENCY = {"HEADER": "Idempotency_Key"}
    out, err = StringIO(), StringIO()

    call_command("check", stdout=out, stderr=err)

    assert "idempotency.W006" in err.getvalue()
    assert "HINT:" in err.getvalue()


def test_manage_py_check_fail_level_warning_fails_on_a_warning(settings):
    settings.IDEMPOTENCY = {"HEADER": "Idempotency_Key"}

    with pytest.raises(SystemCheckError, match="idempotency.W006"):
        call_command("check", fail_level="WARNING")


def test_manage_py_check_is_clean_with_the_default_settings(settings):
    del settings.IDEMPOTENCY
    out = StringIO()

    call_command("check", fail_level="WARNING", stdout=out)

    assert "no issues" in out.getvalue()


# HEADER naming a credential (E018)


@pytest.mark.parametrize(
    "header",
    ["Authorization", "authorization", "COOKIE", "Proxy-Authorization", "X-Api-Key",
     "x-csrftoken", "X-CSRFToken", "Set-Cookie"],
)  # fmt: skip
def test_header_naming_a_credential_header_is_e018(settings, header):
    settings.IDEMPOTENCY = {"HEADER": header}

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.E018"]
    assert repr(header) in messages[0].msg
    assert "credential would become the idempotency key" in messages[0].msg


@pytest.mark.parametrize("header", ["X-Authorization-Key", "Cookie-Key", "Api-Key"])
def test_header_merely_resembling_a_credential_header_is_silent(settings, header):
    settings.IDEMPOTENCY = {"HEADER": header}
    assert idempotency_messages() == []


# SCOPE and FINGERPRINT that cannot take the request (E019)


def scope_with_a_required_keyword(request, *, tenant):
    return tenant


@pytest.mark.parametrize("name", ["SCOPE", "FINGERPRINT"])
@pytest.mark.parametrize(
    "hook",
    [
        lambda: "x",
        lambda request, view: "x",
        scope_with_a_required_keyword,
        "tests.test_checks.scope_of_request_and_view",
        "tests.test_checks.scope_with_a_required_keyword",
    ],
    ids=["no-parameter", "two-parameters", "required-keyword", "path-two", "path-keyword"],
)
def test_hook_that_cannot_take_the_request_alone_is_e019(settings, name, hook):
    settings.IDEMPOTENCY = {name: hook}

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.E019"]
    assert messages[0].msg.startswith(f'IDEMPOTENCY["{name}"] is ')
    assert "signature (" in messages[0].msg
    assert "500" in messages[0].hint


def test_hook_without_a_readable_signature_is_silent(settings):
    # Some builtins have no signature to read; they are called as they are.
    settings.IDEMPOTENCY = {"FINGERPRINT": max}  # inspect.signature(max) raises ValueError
    assert idempotency_messages() == []


def test_view_options_refuse_what_the_checks_refuse(settings):
    # The decorator validates its options with the same rules as the checks
    # (idempotency.validation), so both say the same thing about a value.
    bad = {"scope": lambda: "x", "ttl": 0, "wait": 601, "required": "yes"}
    setting = {"scope": "SCOPE", "ttl": "TTL", "wait": "IN_PROGRESS_WAIT", "required": "REQUIRED"}

    for option, value in bad.items():
        settings.IDEMPOTENCY = {setting[option]: value}
        [check_message] = idempotency_messages()
        [problem] = ViewOptions(**{option: value}).problems(lambda field: "<name>")

        assert check_message.msg.replace(f'IDEMPOTENCY["{setting[option]}"]', "<name>") == (
            problem.message
        )


# ANONYMOUS (E020)


@pytest.mark.parametrize("value", ["SHARE", "deny", "", None, True, ("share",)], ids=repr)
def test_anonymous_that_is_not_one_of_the_three_policies_is_e020(settings, value):
    settings.IDEMPOTENCY = {"ANONYMOUS": value}

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.E020"]
    assert "'share', 'session' or 'refuse'" in messages[0].msg


# IN_PROGRESS_WAIT (E021, E022)


@pytest.mark.parametrize("value", ["5", True, None, [5]], ids=repr)
def test_in_progress_wait_of_the_wrong_type_is_e021(settings, value):
    settings.IDEMPOTENCY = {"IN_PROGRESS_WAIT": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E021"]


@pytest.mark.parametrize(
    "value",
    [-1, -0.001, timedelta(seconds=-1), 600.001, 601, timedelta(minutes=11), float("nan"),
     float("inf"), timedelta.max],
    ids=str,
)  # fmt: skip
def test_in_progress_wait_below_zero_or_above_the_longest_wait_is_e022(settings, value):
    settings.IDEMPOTENCY = {"IN_PROGRESS_WAIT": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E022"]


# STORE and the Redis settings (E023 to E028)


@pytest.mark.parametrize("value", ["Redis", "memory", "", None, 1], ids=repr)
def test_store_that_is_not_database_or_redis_is_e023(settings, value):
    settings.IDEMPOTENCY = {"STORE": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E023"]


@pytest.mark.parametrize(
    "url",
    ["localhost:6379", "http://localhost:6379", "redis://", "redis://:6379", "rediss:///0",
     "redis://localhost:port/0", "unix://", "", 6379, b"redis://localhost", ["redis://a"]],
    ids=repr,
)  # fmt: skip
def test_redis_url_that_is_not_a_redis_url_is_e024(settings, url):
    settings.IDEMPOTENCY = {"REDIS_URL": url}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E024"]


def test_redis_url_message_never_shows_the_password(settings):
    settings.IDEMPOTENCY = {"REDIS_URL": "redis://admin:hunter2@cache:notaport/0"}

    message = only(idempotency_messages(), "idempotency.E024")

    assert "hunter2" not in message.msg and "admin" not in message.msg
    assert "'redis://***@cache:notaport/0'" in message.msg


@pytest.mark.parametrize("value", ["yes", 1, 0, None], ids=repr)
def test_redis_cluster_that_is_not_a_bool_is_e025(settings, value):
    settings.IDEMPOTENCY = {"REDIS_CLUSTER": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E025"]


@pytest.mark.parametrize(
    "value", ["", "idem potency:", "idem\tpotency:", "idem:\n", "idem\x00:", 5, None, b"idem:"],
    ids=repr,
)  # fmt: skip
def test_redis_prefix_empty_or_with_white_space_or_control_characters_is_e026(settings, value):
    settings.IDEMPOTENCY = {"REDIS_PREFIX": value}
    assert [m.id for m in idempotency_messages()] == ["idempotency.E026"]


def test_redis_store_without_redis_url_is_e027(settings):
    pytest.importorskip("redis")
    settings.IDEMPOTENCY = {"STORE": "redis"}

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.E027"]
    assert "REDIS_URL" in messages[0].msg


def test_redis_store_without_the_redis_package_is_e028(settings, monkeypatch):
    without_redis(monkeypatch)
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": "redis://localhost:6379/0"}

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.E028"]
    assert "pip install 'django-idempotency[redis]'" in messages[0].msg
    assert "pip install 'django-idempotency[redis]'" in messages[0].hint


def test_redis_store_with_its_url_and_package_is_silent(settings):
    pytest.importorskip("redis")
    settings.IDEMPOTENCY = {
        "STORE": "redis",
        "REDIS_URL": "redis://127.0.0.1:1/0",  # nothing listens there: the checks never connect
        "REDIS_CLUSTER": True,
        "REDIS_PREFIX": "shop:",
    }
    assert idempotency_messages() == []


def test_database_store_needs_neither_redis_url_nor_the_redis_package(settings, monkeypatch):
    without_redis(monkeypatch)
    settings.IDEMPOTENCY = {"STORE": "database"}
    assert idempotency_messages() == []


# The database backend (E029) and USE_TZ (W007)


BACKENDS = {
    "postgresql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "sqlite": "django.db.backends.sqlite3",
}


@pytest.mark.parametrize("vendor", sorted(BACKENDS))
def test_supported_backend_is_silent_and_never_connected_to(settings, vendor):
    # Port 1 on loopback: nothing listens, so a check that connected would fail.
    with_database(settings, "records", BACKENDS[vendor], HOST="127.0.0.1", PORT="1")
    assert idempotency_messages() == []


def test_unsupported_backend_is_e029(settings):
    with_database(settings, "legacy", "django.db.backends.dummy")

    message = only(idempotency_messages(), "idempotency.E029")

    assert "'legacy'" in message.msg and "(vendor 'unknown')" in message.msg
    assert "PostgreSQL, MariaDB/MySQL or SQLite" in message.msg


def test_backend_that_does_not_load_is_left_to_django(settings):
    with_database(settings, "broken", "no.such.backend")
    assert idempotency_messages() == []


def test_unsupported_backend_is_silent_with_the_redis_store(settings):
    pytest.importorskip("redis")
    with_database(settings, "legacy", "django.db.backends.dummy")
    settings.IDEMPOTENCY = {**settings.IDEMPOTENCY, "STORE": "redis", "REDIS_URL": "redis://r"}
    assert idempotency_messages() == []


@pytest.mark.parametrize("vendor", ["mysql", "sqlite"])
@pytest.mark.parametrize("zone", ["Europe/Paris", "Europe/London", "America/New_York", None])
def test_use_tz_off_with_mysql_or_sqlite_outside_utc_is_w007(settings, vendor, zone):
    with_database(settings, "records", BACKENDS[vendor])
    settings.USE_TZ = False
    settings.TIME_ZONE = zone

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.W007"]
    assert "'records'" in messages[0].msg and "USE_TZ = True" in messages[0].msg


@pytest.mark.parametrize(
    ("vendor", "use_tz", "zone"),
    [("postgresql", False, "Europe/Paris"), ("mysql", True, "Europe/Paris"),
     ("sqlite", True, "Europe/Paris"), ("sqlite", False, "UTC"), ("mysql", False, "Etc/UTC")],
)  # fmt: skip
def test_use_tz_is_silent_where_record_times_read_right(settings, vendor, use_tz, zone):
    with_database(settings, "records", BACKENDS[vendor])
    settings.USE_TZ = use_tz
    settings.TIME_ZONE = zone
    assert idempotency_messages() == []


# The Redis's eviction policy (W008): asked when it can be, silent otherwise


@pytest.mark.parametrize("policy", ["volatile-ttl", "volatile-lru", "allkeys-random"])
def test_a_redis_that_evicts_keys_with_an_expiry_is_w008(settings, evicting_redis, policy):
    evicting_redis.cli("CONFIG", "SET", "maxmemory-policy", policy)
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": evicting_redis.url}
    try:
        message = only(idempotency_messages(), "idempotency.W008")
    finally:
        evicting_redis.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
    assert repr(policy) in message.msg


def test_a_redis_with_noeviction_is_silent(settings):
    with redis_server("--maxmemory", "64mb", "--maxmemory-policy", "noeviction") as server:
        settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": server.url}
        assert idempotency_messages() == []


def test_a_redis_that_refuses_config_is_silent(settings):
    with redis_server(
        "--maxmemory-policy", "allkeys-lru", "--rename-command", "CONFIG", ""
    ) as server:
        settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": server.url}
        assert idempotency_messages() == []


def test_an_unreachable_redis_is_silent(settings):
    settings.IDEMPOTENCY = {"STORE": "redis", "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    assert idempotency_messages() == []


def test_the_eviction_policy_is_not_asked_with_the_database_store(settings, evicting_redis):
    settings.IDEMPOTENCY = {"REDIS_URL": evicting_redis.url}
    assert idempotency_messages() == []


# Celery's time limits and visibility timeout against LOCK_TIMEOUT (W009)


def with_celery_app(monkeypatch, **conf):
    """A Celery app, current for the test, as a project's celery.py makes it."""
    from celery import Celery, _state

    # Celery's Django fixup makes a new app the process's default: undone with the test.
    monkeypatch.setattr(_state, "default_app", _state.default_app)
    app = Celery("idempotency-checks", set_as_current=False)
    app.conf.update(**conf)
    monkeypatch.setattr(_state._tls, "current_app", app, raising=False)
    return app


def test_a_lock_shorter_than_the_visibility_timeout_is_w009(settings, monkeypatch):
    with_celery_app(monkeypatch, broker_transport_options={"visibility_timeout": 3600})

    message = only(idempotency_messages(), "idempotency.W009")

    assert "visibility_timeout']" in message.msg and "(3600 seconds)" in message.msg
    assert "60 seconds" in message.msg


def test_a_protected_tasks_own_time_limit_is_w009(settings, monkeypatch):
    from idempotency import idempotent_function

    app = with_celery_app(monkeypatch)

    @app.task(name="payments.slow", time_limit=120)
    @idempotent_function(key="order_id")
    def slow(order_id): ...

    @app.task(name="payments.unprotected", time_limit=900)
    def unprotected(order_id): ...

    message = only(idempotency_messages(), "idempotency.W009")

    assert "the time_limit of task 'payments.slow' (120 seconds)" in message.msg


def test_a_lock_longer_than_every_celery_limit_passes(settings, monkeypatch):
    settings.IDEMPOTENCY = {"LOCK_TIMEOUT": 400}
    with_celery_app(
        monkeypatch, task_time_limit=300, broker_transport_options={"visibility_timeout": 360}
    )

    assert idempotency_messages() == []
