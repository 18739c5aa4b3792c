"""Secret redaction: the corpus of shapes, ordinary output, chunk boundaries, PEM blocks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from policies.redaction import MAX_LINE, StreamRedactor, redact_text
from policies.redaction.controls import strip_controls
from policies.redaction.fastscan import HitFinder, compile_scanner
from policies.redaction.keys import Bare, is_secret_key
from policies.redaction.lines import ENV_NAME_LINE, PEM_BEGIN, YAML_BLOCK_KEY, Redactor
from policies.redaction.rules import TRIGGER, apply_rules

_CORPUS: dict[str, list[dict[str, Any]]] = yaml.safe_load(
    Path(__file__).with_name("redaction_corpus.yaml").read_text(encoding="utf-8")
)
SECRET_CASES = _CORPUS["secrets"]
BENIGN_CASES = _CORPUS["benign"]


def _params(cases: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(case, id=case["id"]) for case in cases]


def _names_a_secret(match: re.Match[str] | None, bare: Bare) -> bool:
    return match is not None and is_secret_key(match["key"], bare=bare)


def _stream(chunks: list[bytes], **kwargs: Any) -> tuple[str, int]:
    stream = StreamRedactor(**kwargs)
    out = "".join(stream.feed(chunk) for chunk in chunks) + stream.flush()
    return out, stream.redactions


def test_corpus_holds_at_least_forty_secret_shapes_and_fifteen_benign_samples() -> None:
    ids = [case["id"] for case in SECRET_CASES + BENIGN_CASES]
    assert len(SECRET_CASES) >= 40
    assert len(BENIGN_CASES) >= 15
    assert len(ids) == len(set(ids))


def test_fast_scan_flags_every_corpus_line_that_a_rule_acts_on() -> None:
    # Lines the RE2 scan does not flag skip every rule, so it must flag all of these.
    trigger = compile_scanner(TRIGGER)
    lines = [line for case in SECRET_CASES + BENIGN_CASES for line in case["text"].splitlines()]
    acted_on = [
        line
        for line in lines
        if apply_rules(line)[0] != line
        or PEM_BEGIN.search(line)
        or _names_a_secret(ENV_NAME_LINE.fullmatch(line), Bare.ANY)
        or _names_a_secret(YAML_BLOCK_KEY.fullmatch(line), Bare.STRONG)
    ]

    assert len(acted_on) >= 40
    assert [line for line in acted_on if trigger.search(line) is None] == []


@pytest.mark.parametrize("case", _params(SECRET_CASES))
def test_secret_shape_is_replaced_by_a_marker(case: dict[str, Any]) -> None:
    out, count = Redactor().redact(case["text"])

    assert count >= 1
    for secret in case["secrets"]:
        assert secret not in out
    for kind in case.get("kinds", []):
        assert f"[REDACTED:{kind}]" in out
    for kept in case.get("keep", []):
        assert kept in out


@pytest.mark.parametrize("case", _params(SECRET_CASES))
def test_secret_shape_is_scrubbed_when_streamed_in_small_chunks(case: dict[str, Any]) -> None:
    data = case["text"].encode()
    out, count = _stream([data[i : i + 7] for i in range(0, len(data), 7)])

    assert (out, count) == Redactor().redact(case["text"])


@pytest.mark.parametrize("case", _params(SECRET_CASES))
def test_redacting_scrubbed_output_again_changes_nothing(case: dict[str, Any]) -> None:
    once, _ = Redactor().redact(case["text"])

    assert Redactor().redact(once) == (once, 0)


@pytest.mark.parametrize("case", _params(BENIGN_CASES))
def test_ordinary_output_passes_unchanged(case: dict[str, Any]) -> None:
    assert Redactor().redact(case["text"]) == (case["text"], 0)


@pytest.mark.parametrize("case", _params(BENIGN_CASES))
def test_ordinary_output_passes_unchanged_through_the_stripping_stream(
    case: dict[str, Any],
) -> None:
    data = case["text"].encode()
    chunks = [data[i : i + 11] for i in range(0, len(data), 11)]

    assert _stream(chunks, prepare=strip_controls) == (case["text"], 0)


def test_redact_text_returns_only_the_scrubbed_text() -> None:
    assert redact_text("DB_PASSWORD=hunter2") == "DB_PASSWORD=[REDACTED:password]"


def test_function_instance_env_output_keeps_names_and_hides_credentials() -> None:
    env = (
        "FC_FUNCTION_NAME=demo-api\n"
        "ALIBABA_CLOUD_ACCESS_KEY_ID=STS.NUfakeAccessKeyId1234\n"
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET=8dKLzdocJ2isAjIhKtJ0RlgLKOmxgJ\n"
        "ALIBABA_CLOUD_SECURITY_TOKEN=CAISfakeStsToken0123456789abcdefghijklmnopqrstuvwxyz==\n"
        "PWD=/code\n"
    )

    out, count = Redactor().redact(env)

    assert count == 3
    assert out == (
        "FC_FUNCTION_NAME=demo-api\n"
        "ALIBABA_CLOUD_ACCESS_KEY_ID=[REDACTED:alibaba-access-key-id]\n"
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET=[REDACTED:alibaba-secret]\n"
        "ALIBABA_CLOUD_SECURITY_TOKEN=[REDACTED:alibaba-sts-token]\n"
        "PWD=/code\n"
    )


_SPLIT_SAMPLES = {
    "env-secret": (
        "HOME=/root\nALIBABA_CLOUD_ACCESS_KEY_SECRET=8dKLzdocJ2isAjIhKtJ0RlgLKOmxgJ\nX=1\n"
    ),
    "jwt-in-log": (
        "09:41 auth eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok\n"
    ),
    "url-password": "dsn postgres://app:s3cr3t-Pa55@db:5432/app\n",
    "pem-block": (
        "a\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
        "BKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\nb\n"
    ),
    "multibyte-around-secret": "密码: é DB_PASSWORD=pässwörd-ß\n日志\n",
    "yaml-block-scalar": "a:\n  password: |\n    Tr0ub4dor&3\n    line-two\n  b: 1\n",
}


@pytest.mark.parametrize("text", list(_SPLIT_SAMPLES.values()), ids=list(_SPLIT_SAMPLES))
def test_secret_split_at_any_byte_is_scrubbed_as_if_whole(text: str) -> None:
    data = text.encode()
    expected = Redactor().redact(text)

    for split in range(len(data) + 1):
        assert _stream([data[:split], data[split:]]) == expected, f"split at byte {split}"


@pytest.mark.parametrize("text", list(_SPLIT_SAMPLES.values()), ids=list(_SPLIT_SAMPLES))
def test_feeding_one_byte_at_a_time_matches_the_whole_text(text: str) -> None:
    data = text.encode()

    assert _stream([data[i : i + 1] for i in range(len(data))]) == Redactor().redact(text)


def test_private_key_spread_over_many_chunks_is_dropped_whole() -> None:
    body = "\n".join(
        "Vw5HanSBeVRsfAGeAbP0VxNjAe9i0mYtluYI0KN1gNT11cUzYZAa3u2olZU6uqb" for _ in range(30)
    )
    data = (
        f"before\n-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----\nafter\n"
    )
    raw = data.encode()

    out, count = _stream([raw[i : i + 13] for i in range(0, len(raw), 13)])

    assert out == "before\n[REDACTED:private-key]\nafter\n"
    assert count == 1


def test_private_key_without_end_line_ends_at_the_first_line_that_is_not_key_material() -> None:
    text = (
        "key.pem: -----BEGIN EC PRIVATE KEY-----\n"
        "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oGnO9OZ1cOcnoAoGCCqGSM49\n"
        "grep: other.pem: Permission denied\n"
    )

    out, count = Redactor().redact(text)

    assert out == "key.pem: [REDACTED:private-key]\ngrep: other.pem: Permission denied\n"
    assert count == 1


def test_crlf_line_endings_neither_end_a_private_key_early_nor_hide_an_env_value() -> None:
    text = (
        "a\r\n-----BEGIN RSA PRIVATE KEY-----\r\nMIIEpAIBAAKCAQEA1234\r\nabcd==\r\n"
        "-----END RSA PRIVATE KEY-----\r\n- name: DB_PASSWORD\r\n  value: hunter2\r\nb"
    )

    out, count = Redactor().redact(text)

    assert out == (
        "a\r\n[REDACTED:private-key]\r\n- name: DB_PASSWORD\r\n  value: [REDACTED:password]\r\nb"
    )
    assert count == 2


def test_invalid_utf8_is_replaced_instead_of_failing() -> None:
    out, count = _stream([b"ok \xff\xfe bytes\n", b"\xe6\x97"])

    assert out == "ok \ufffd\ufffd bytes\n\ufffd"
    assert count == 0


def test_an_endless_line_is_flushed_in_pieces_so_memory_stays_bounded() -> None:
    stream = StreamRedactor()
    pair = b"user=bob db_password=hunter2x "
    emitted: list[str] = []

    for _ in range(400):
        emitted.append(stream.feed(pair * 100))
        assert stream.buffered_chars <= MAX_LINE
    emitted.append(stream.flush())

    out = "".join(emitted)
    assert "hunter2x" not in out
    # A piece that starts with a key reads as a line start and loses its whole rest:
    # more is hidden than needed, never less.
    assert out.startswith("user=bob db_password=[REDACTED:password] user=bob")


def test_a_long_identifier_run_with_a_trigger_is_handled_in_linear_time() -> None:
    # A quadratic rule would not finish on this line; the test would hang.
    line = "a_" * 30_000 + "token=" + "b" * 30_000

    out, _ = Redactor().redact(line)

    assert out.endswith("[REDACTED:token]")


def test_detect_secrets_pass_catches_a_comparison_against_a_secret_name() -> None:
    line = 'if ("Hunter2Value" === password) { grant() }'

    with_plugins, found = Redactor().redact(line)
    without_plugins, none = Redactor(second_pass=False).redact(line)

    assert "Hunter2Value" not in with_plugins
    assert found == 1
    assert (without_plugins, none) == (line, 0)


def test_stream_counts_every_redaction() -> None:
    data = b"A_TOKEN=x1\nB_TOKEN=x2\nnothing here\nAKIAIOSFODNN7EXAMPLE\n"

    _, count = _stream([data])

    assert count == 3


_KEY_NAMES = {
    "DB_PASSWORD": True,
    "SECRET_KEY_BASE": True,
    "DB_PASSWORD_FILE_CONTENT": True,
    "PGPASSWORD": True,
    "REDIS_AUTH": True,
    "GPG_PASSPHRASE": True,
    "SENTRY_DSN": True,
    "x-api-key": True,
    "API_KEY_2": True,
    "ALIBABA_CLOUD_ACCESS_KEY_ID": True,
    "identitytoken": True,
    "DbPassword": True,
    "pass": True,
    "auth": True,
    "DB_PASSWORD_FILE": False,
    "TOKEN_TTL": False,
    "secretName": False,
    "sort_key": False,
    "cacheKey": False,
    "public_key": False,
    "KEYBOARD_LAYOUT": False,
    "OLDPWD": False,
    "monkey": False,
    "key": False,
    "API_KEYS": True,
    "DB_PASSWORDS": True,
    "webhook_secrets": True,
    "primary_keys": False,
    "dbPASS": True,
    "appSK": True,
    "PASS_2": False,
    "OSS_AK": True,
    "OSS_SK": True,
    "AK": True,
    "sk": True,
    "appSk": True,
    "KEY": True,
    "ACCESS_KEY": True,
    "SALT": True,
    "PASSWORD_SALT": True,
    "HMAC": True,
    "WEBHOOK_HMAC_KEY": True,
    "OTP_SEED": True,
    "SEED": True,
    "db.password": True,
    "TASK": False,
    "DISK": False,
    "ASK": False,
    "MASK": False,
    "SKU": False,
    "AKS_CLUSTER": False,
    "BASALT": False,
    "SEED_FILE": False,
    "SEEDS": False,
    "MONKEY": False,
    "KEYBOARD": False,
    "HOSTNAME": False,
}


@pytest.mark.parametrize(
    ("name", "secret"), list(_KEY_NAMES.items()), ids=[f"{k}-{v}" for k, v in _KEY_NAMES.items()]
)
def test_key_name_is_read_as_words_to_decide_whether_its_value_is_secret(
    name: str, secret: bool
) -> None:
    assert is_secret_key(name, "v") is secret


@pytest.mark.parametrize(
    ("name", "bare", "secret"),
    [
        pytest.param("pass", Bare.ANY, True, id="pass-in-an-assignment"),
        pytest.param("pass", Bare.STRONG, False, id="pass-before-a-colon-is-test-output"),
        pytest.param("password", Bare.STRONG, True, id="password-before-a-colon"),
        pytest.param("password", Bare.NONE, False, id="password-as-a-word-mid-line"),
        pytest.param("db_password", Bare.NONE, True, id="identifier-mid-line"),
        pytest.param("pwd", Bare.STRONG, True, id="pwd-before-a-colon-is-a-config-password"),
        pytest.param("ak", Bare.STRONG, True, id="ak-before-a-colon"),
        pytest.param("salt", Bare.NONE, False, id="salt-as-a-word-mid-line"),
        pytest.param("KEY", Bare.ANY, True, id="upper-case-key-is-an-environment-variable"),
        pytest.param("key", Bare.ANY, False, id="lower-case-key-is-a-data-key"),
        pytest.param("db.password", Bare.SPACED, True, id="property-name-before-a-blank"),
        pytest.param("password", Bare.SPACED, False, id="a-word-before-a-blank-is-prose"),
        pytest.param("server.key", Bare.SPACED, False, id="a-key-file-name-before-a-blank"),
        pytest.param("api.key", Bare.SPACED, True, id="a-qualified-key-before-a-blank"),
        pytest.param("OPENAI_KEY", Bare.SPACED, True, id="an-env-style-key-before-a-blank"),
    ],
)
def test_a_one_word_key_counts_only_where_the_syntax_makes_it_a_setting(
    name: str, bare: Bare, secret: bool
) -> None:
    assert is_secret_key(name, "v", bare=bare) is secret


def test_a_number_under_a_plural_secret_word_is_a_count_and_stays() -> None:
    assert is_secret_key("max_tokens", "4096") is False
    assert is_secret_key("completion_tokens", " 64") is False
    assert is_secret_key("API_KEYS", "Ky3eD6cR9fVt") is True
    assert is_secret_key("DB_PASSWORD", "123456") is True


def test_pwd_holding_a_path_is_the_working_directory_and_stays() -> None:
    assert is_secret_key("PWD", "/code") is False
    assert is_secret_key("pwd", "hunter2") is True
    assert is_secret_key("pwd", "/srv/app", bare=Bare.STRONG) is False
    assert is_secret_key("pwd", "hunter2", bare=Bare.STRONG) is True


_GENERATED_WORDS = (
    "secret token password passphrase dsn key keyid pass pwd auth apikey api sort db file 2"
    " ak sk salt hmac seed task"
)
_KEY_FORMS = (
    "{k}=v1",
    "{k}: v1",
    '"{k}": "v1"',
    "--{k} v1",
    "<{k}>v1</{k}>",
    'key="{k}" value="v1"',
    "x {k}: v1",
    "x {k}=v1",
    '{{"name":"{k}","value":"v1"}}',
    "  - name: {k}",
    "{k}: |",
    '\\"{k}\\":\\"v1\\"',
    "{k} v1",
    "  {k}\tv1",
)


def _generated_names() -> list[str]:
    names: set[str] = set()
    for first in _GENERATED_WORDS.split():
        for second in ("", *_GENERATED_WORDS.split()):
            words = [first, second] if second else [first]
            for sep in ("_", "-", "."):
                names.add(sep.join(words))
                names.add(sep.join(words).upper())
            names.add(words[0] + "".join(w.capitalize() for w in words[1:]))
    return sorted(names)


@pytest.mark.parametrize("form", _KEY_FORMS)
def test_fast_scan_flags_every_generated_key_shape_that_a_rule_acts_on(form: str) -> None:
    trigger = compile_scanner(TRIGGER)
    lines = [form.format(k=name) for name in _generated_names()]
    acted_on = [
        line
        for line in lines
        if apply_rules(line)[0] != line
        or _names_a_secret(ENV_NAME_LINE.fullmatch(line), Bare.ANY)
        or _names_a_secret(YAML_BLOCK_KEY.fullmatch(line), Bare.STRONG)
    ]

    assert acted_on
    assert [line for line in acted_on if trigger.search(line) is None] == []


def test_yaml_block_scalar_under_a_secret_key_becomes_one_marker() -> None:
    text = (
        "db:\n"
        "  password: |\n"
        "    Tr0ub4dor&3\n"
        "\n"
        "    second-line\n"
        "  pool: 10\n"
        "  token: >-\n"
        "    tok-123\n"
        "next: 1\n"
    )

    out, count = Redactor().redact(text)

    assert out == (
        "db:\n"
        "  password: |\n"
        "    [REDACTED:password]\n"
        "\n"
        "  pool: 10\n"
        "  token: >-\n"
        "    [REDACTED:token]\n"
        "next: 1\n"
    )
    assert count == 2


def test_yaml_block_value_line_longer_than_max_line_is_scrubbed_whole() -> None:
    text = "a:\n  password: |\n    " + "Zq8Rk3Vn1 " * 10 + "\n    more\n  b: 1\n"
    data = text.encode()

    out, count = _stream([data[i : i + 5] for i in range(0, len(data), 5)], max_line=16)

    assert out == "a:\n  password: |\n    [REDACTED:password]\n  b: 1\n"
    assert count == 1


def test_flags_after_a_secret_flag_at_line_start_keep_their_names() -> None:
    out, count = Redactor().redact("--db-password=x --api-key y --port 8080")

    assert out == "--db-password=[REDACTED:password] --api-key [REDACTED:key] --port 8080"
    assert count == 2


def test_refused_key_names_do_not_hide_secrets_in_what_follows_them() -> None:
    out, count = Redactor().redact("sort_key=db_password=hunter2 cache_key=x")

    assert out == "sort_key=db_password=[REDACTED:password] cache_key=x"
    assert count == 1


@pytest.mark.parametrize(
    "text",
    ["ab token c\ntoken", "äé token ß\n日志 token", "\ud800 token"],
    ids=["ascii", "multibyte", "lone-surrogate"],
)
def test_hit_finder_reports_character_offsets_while_skipping_ahead(text: str) -> None:
    hits = HitFinder(compile_scanner("token"), text)
    first = hits.next_start(0)
    assert first is not None

    second = hits.next_start(first + 1)

    assert first == text.index("token")
    assert second == (text.index("token", first + 1) if text.count("token") > 1 else None)


def test_hit_finder_refuses_to_move_backwards() -> None:
    hits = HitFinder(compile_scanner("token"), "äé token")
    hits.next_start(5)

    with pytest.raises(ValueError):
        hits.next_start(1)


@pytest.mark.parametrize(
    ("line", "held"),
    [
        ("started\n", False),
        ("OK\n", False),
        ("0205\n", False),
        ("DFV9zvom3l/Ut9aREQyMaOxHqA==\n", True),
        ("aB3xY9kQ\n", True),
    ],
    ids=["word", "upper-word", "number", "key-tail", "mixed-base64"],
)
def test_only_a_line_that_could_end_a_key_waits_for_the_next_line(line: str, held: bool) -> None:
    stream = StreamRedactor()
    released = stream.feed(line.encode())
    assert (released == "") is held
    assert released + stream.flush() == line
