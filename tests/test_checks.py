"""System checks: every id triggers on a bad value, stays silent on a good one, never raises."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.checks import Error, Warning
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from idempotency.checks import CHECKS, LEDGER
from idempotency.conf import DEFAULTS


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
    "idempotency.W001": ({"IDEMPOTENCY": {"TTL": 30, "LOCK_TIMEOUT": 60}}, "60"),
    "idempotency.W002": ({"IDEMPOTENCY": {"KEY_MAX_LENGTH": 300}}, "300"),
    "idempotency.W003": ({"CORS_ALLOW_HEADERS": ("content-type",)}, "('content-type',)"),
    "idempotency.W004": ({"CORS_EXPOSE_HEADERS": ["X-Cost"]}, "['X-Cost']"),
    "idempotency.W005": ({"IDEMPOTENCY": {"REPLAY_HEADERS": ["set-cookie"]}}, "'set-cookie'"),
    "idempotency.W006": ({"IDEMPOTENCY": {"HEADER": "Idempotency_Key"}}, "'Idempotency_Key'"),
}
CORS_IDS = {"idempotency.W003", "idempotency.W004"}

GOOD = {
    "HEADER": ["X-Idempotency-Key", "idempotency-key"],
    "REQUIRED": [True, False],
    "TTL": [3600, 86400.5, timedelta(days=7)],
    "LOCK_TIMEOUT": [1, 0.25, timedelta(seconds=1)],
    "KEY_MAX_LENGTH": [1, 64, 255],
    "SCOPE": ["idempotency.scope.user_scope", lambda request: "tenant"],
    "REPLAY_HEADERS": [(), ["X-Request-Cost"], ("Cache-Control", "X-Cost")],
    "RELEASE_STATUSES": [(), [408, 423], frozenset({100, 599})],
    "FINGERPRINT": ["idempotency.fingerprint.request_fingerprint", lambda request: "f"],
    "MAX_STORED_RESPONSE_BYTES": [0, 1024],
    "DATABASE": ["default"],
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


@pytest.mark.parametrize("check_id", sorted(BAD))
def test_bad_value_is_reported_with_its_value_and_a_hint(settings, check_id):
    overrides, quoted = BAD[check_id]
    if check_id in CORS_IDS:
        with_corsheaders(settings)
    for name, value in overrides.items():
        setattr(settings, name, value)

    message = only(idempotency_messages(), check_id)

    assert quoted in message.msg
    assert message.hint
    assert message.msg.endswith((".", "?"))
    assert "\n" not in message.msg


@pytest.mark.parametrize("check_id", sorted(BAD))
def test_e_ids_are_errors_and_w_ids_are_warnings(settings, check_id):
    overrides, _ = BAD[check_id]
    if check_id in CORS_IDS:
        with_corsheaders(settings)
    for name, value in overrides.items():
        setattr(settings, name, value)

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


def test_key_max_length_hint_says_longer_keys_are_refused(settings):
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": 1000}
    message = only(idempotency_messages(), "idempotency.W002")
    assert "refused" in message.hint and "255" in message.hint


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


def test_every_credential_header_in_replay_headers_is_reported(settings):
    settings.IDEMPOTENCY = {"REPLAY_HEADERS": ("X-Cost", "Authorization", "SET-COOKIE")}

    messages = idempotency_messages()

    assert [m.id for m in messages] == ["idempotency.W005", "idempotency.W005"]
    assert "'Authorization'" in messages[0].msg
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
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": 512}
    out, err = StringIO(), StringIO()

    call_command("check", stdout=out, stderr=err)

    assert "idempotency.W002" in err.getvalue()
    assert "HINT:" in err.getvalue()


def test_manage_py_check_fail_level_warning_fails_on_a_warning(settings):
    settings.IDEMPOTENCY = {"KEY_MAX_LENGTH": 512}

    with pytest.raises(SystemCheckError, match="idempotency.W002"):
        call_command("check", fail_level="WARNING")


def test_manage_py_check_is_clean_with_the_default_settings(settings):
    del settings.IDEMPOTENCY
    out = StringIO()

    call_command("check", fail_level="WARNING", stdout=out)

    assert "no issues" in out.getvalue()
