"""Attacks on redaction through pipeline filters and printenv, through the real CLI
against `execgate serve` with the shipped default policy."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import anyio

from server.cli.exits import EXIT_DENIED
from server.settings import DEMO_ENV
from tests.e2e.conftest import Served


def _pem_body() -> list[str]:
    material = b"".join(hashlib.sha512(bytes([i])).digest() for i in range(20))
    text = base64.b64encode(b"\x30\x82\x04\xbd" + material).decode()
    return [text[i : i + 64] for i in range(0, len(text), 64)]


BODY = _pem_body()
KEY = "\n".join(["-----BEGIN PRIVATE KEY-----", *BODY, "-----END PRIVATE KEY-----", ""])


def _leaked(text: str) -> list[str]:
    return [line for line in BODY if line[:24] in text]


async def test_sorting_a_private_key_does_not_bring_its_body_back(shared_served: Served) -> None:
    (shared_served.state_tmp() / "key.pem").write_text(KEY)
    plain = await shared_served.cli("exec", shared_served.instance, "tail -n 100 /tmp/key.pem")
    assert plain.code == 0, plain.stderr
    assert "[REDACTED:private-key]" in plain.stdout  # the key was read, and scrubbed
    assert not _leaked(plain.stdout)
    for command in (
        "tail -n 100 /tmp/key.pem | sort",
        "tail -n 100 /tmp/key.pem | sort -r",
        "tail -n 100 /tmp/key.pem | grep -v BEGIN",
        "tail -n 100 /tmp/key.pem | uniq -c",
        "tail -n 100 /tmp/key.pem | tail -n 5",
        "tail -n 2 /tmp/key.pem",  # the BEGIN line cut off: the short last line stays
        "tail -n 100 /tmp/key.pem | tail -n 2",
    ):
        result = await shared_served.cli("exec", shared_served.instance, command)
        assert result.code == 0, (command, result.stderr)
        assert not _leaked(result.stdout + result.stderr), command


# Config and env output with short or uncommon secret names, and the near misses that
# must stay readable. Every value is fake.
_SHORT_NAMES = {
    "OSS_AK=": "Ak4nQ7vLw2Zp",
    "OSS_SK=": "Sk9mR3tYx8Hq",
    "KEY=": "Ky2wE3rT4yU5",
    "SALT=": "Sa1tQ2wE3rT4",
    "WEBHOOK_HMAC_KEY=": "Hm9sD0fG1hJ2",
    "OTP_SEED=": "JBSWY3DPEHPK3PXP",
    "  pwd: ": "Pw3zX4cV5bN6",
    "db.password ": "Pw1yU2iO3pA4",
    "spring.datasource.password: ": "Pw9kL0zX1cV2",
    "OPENAI_KEY ": "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb7cDe0fGh3iJk6lMn9oPq2rSt5",
    "aws_credentials AKIAIOSFODNN7EXAMPLE ": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
}
_NEAR_MISSES = ("TASK=build", "DISK=/dev/vda1", "SKU=ecs.g7.large", "PWD=/code", "KEYBOARD=us")


async def test_short_secret_names_in_config_output_are_scrubbed(shared_served: Served) -> None:
    lines = [name + value for name, value in _SHORT_NAMES.items()] + list(_NEAR_MISSES)
    (shared_served.state_tmp() / "app.conf").write_text("\n".join(lines) + "\n")
    for command in ("tail -n 100 /tmp/app.conf", "tail -n 100 /tmp/app.conf | sort"):
        result = await shared_served.cli("exec", shared_served.instance, command)
        assert result.code == 0, (command, result.stderr)
        shown = result.stdout + result.stderr
        assert [v for v in _SHORT_NAMES.values() if v in shown] == [], command
        assert [line for line in _NEAR_MISSES if line not in result.stdout] == [], command
        assert "OSS_SK=[REDACTED:" in result.stdout


# Secret lines in shapes the scrubber once missed (each value is fake), and every
# filter and option the default policy allows after the first stage.
_SHAPED_SECRETS = {
    "dbPASS=": "Pw4kQ8zN2xLm",
    "appSK=": "Sk2jH7wQ5nRt",
    "ENV DB_PASSWORD ": "Pw6tY1uI4oPa",
    "setenv OSS_AK ": "Ak3sD6fG9hJk",
    "GET /v1/geo?key=": "Kq8wE3rT6yUi",
    "12:db.password ": "Pw2aS5dF8gHj",
    "      3 OSS_SK ": "Sk6zX9cV2bNm",
    "API_KEYS=": "Ky3eD6cR9fVt",
    "machine api.example.com login bob password ": "Pw9oI2uY5tRe",
    '{"db": {"host": "db", "password":\n  ': "Pw5qA8sZ1xWe",
}
_GREP_FLAGS = ("-i", "-v", "-c", "-E", "-F", "-w", "-iv", "-ic", "-vi", "-ci", "-iE", "-Ei")
_SORT_FLAGS = ("-n", "-r", "-nr", "-rn", "-u", "-h", "-hr", "-rh", "-k1", "-k2")
_FILTERS = (
    "grep a",
    *(f"grep {flag} {'zzz' if 'v' in flag else '2'}" for flag in _GREP_FLAGS),
    "head",
    "head -n 50",
    "tail",
    "tail -n 50",
    "sort",
    *(f"sort {flag}" for flag in _SORT_FLAGS),
    "uniq",
    "uniq -c",
    "sort | uniq -c | sort -rn | head -n 20",
)


async def test_no_allowed_filter_brings_back_a_secret_the_scrubber_hid(
    shared_served: Served,
) -> None:
    text = "".join(f"{name}{value}\n" for name, value in _SHAPED_SECRETS.items())
    (shared_served.state_tmp() / "shapes.conf").write_text(text)
    for stage in _FILTERS:
        command = f"tail -n 100 /tmp/shapes.conf | {stage}"
        result = await shared_served.cli("exec", shared_served.instance, command)
        assert result.code in (0, 1), (command, result.stderr)
        shown = result.stdout + result.stderr
        assert [v for v in _SHAPED_SECRETS.values() if v in shown] == [], command


async def test_grep_count_and_exit_status_are_no_oracle_on_a_secret(shared_served: Served) -> None:
    secret = DEMO_ENV["DB_PASSWORD"]
    (shared_served.state_tmp() / "app.env").write_text(f"APP_ENV=demo\nDB_PASSWORD={secret}\n")
    # The positive control: grep sees the line and counts it.
    named = await shared_served.cli(
        "exec", shared_served.instance, "tail -n 5 /tmp/app.env | grep -c DB_PASSWORD="
    )
    assert (named.code, named.stdout) == (0, "1\n")
    right = await shared_served.cli(
        "exec", shared_served.instance, f"tail -n 5 /tmp/app.env | grep -c DB_PASSWORD={secret[:3]}"
    )
    wrong = await shared_served.cli(
        "exec", shared_served.instance, "tail -n 5 /tmp/app.env | grep -c DB_PASSWORD=xyz"
    )
    # A right guess and a wrong one answer the same, in output and in exit status.
    assert (right.code, right.stdout) == (wrong.code, wrong.stdout) == (1, "0\n")


async def test_printenv_of_a_secret_name_prints_a_marker(shared_served: Served) -> None:
    shown = await shared_served.cli("exec", shared_served.instance, "printenv APP_ENV")
    assert (shown.code, shown.stdout) == (0, "demo\n")
    secret = await shared_served.cli("exec", shared_served.instance, "printenv DB_PASSWORD")
    assert secret.code == 0, secret.stderr
    assert secret.stdout.startswith("[REDACTED:")
    assert DEMO_ENV["DB_PASSWORD"] not in secret.stdout + secret.stderr


async def test_a_filter_option_execgate_does_not_run_is_refused(shared_served: Served) -> None:
    result = await shared_served.cli(
        "exec", "--json", shared_served.instance, "ps aux | grep -P java"
    )
    assert result.code == EXIT_DENIED
    assert result.json()["effect"] == "deny"


async def test_a_backtracking_grep_pattern_neither_hangs_nor_freezes_the_server(
    shared_served: Served,
) -> None:
    served = shared_served
    (served.state_tmp() / "long.txt").write_text("a" * 20000 + "\nshort line\n")
    slow = asyncio.create_task(
        served.cli_process(
            "exec", "--json", served.instance, "tail -n 5 /tmp/long.txt | grep -E '(a*)*Q'"
        )
    )
    # While the pathological filter runs, another request is served.
    with anyio.fail_after(60):
        other = await served.cli_process("exec", served.instance, "printenv APP_ENV")
    assert (other.code, other.stdout) == (0, "demo\n")
    with anyio.fail_after(60):
        result = await slow
    body = result.json()
    assert body["status"] == "completed", body
    assert body["exit_code"] == 1  # nothing matched: grep's status, computed to the end
    control = await served.cli(
        "exec", served.instance, "tail -n 5 /tmp/long.txt | grep -E '(s*)*h(o)*rt'"
    )
    assert (control.code, control.stdout) == (0, "short line\n")


async def test_byte_counts_are_of_the_scrubbed_output_not_of_the_secret(
    shared_served: Served,
) -> None:
    served = shared_served
    secret = DEMO_ENV["DB_PASSWORD"]
    (served.state_tmp() / "counted.env").write_text(f"APP_ENV=demo\nDB_PASSWORD={secret}\n")
    for command in ("printenv DB_PASSWORD", "tail -n 5 /tmp/counted.env", "printenv APP_ENV"):
        result = await served.cli("exec", "--json", served.instance, command)
        body = result.json()
        assert body["status"] == "completed", (command, body)
        stdout = body["stdout"]
        assert isinstance(stdout, str) and stdout, command  # the command printed
        assert secret not in stdout
        sizes = body["bytes"]
        assert isinstance(sizes, dict)
        assert sizes["stdout"] == len(stdout.encode()), command
