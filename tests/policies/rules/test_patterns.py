"""Argument patterns: literals, globs, regexes, typed placeholders, the rest marker."""

from __future__ import annotations

import pytest

from policies.rules.patterns import CommandPattern, PatternError, compile_command
from policies.rules.wrappers import guarded_positions, is_wrapper


def grant(pattern: list[str], argv: list[str]) -> bool:
    return compile_command(pattern, grant=True).matches(argv, guarded=guarded_positions(argv))


def deny(pattern: list[str], argv: list[str]) -> bool:
    return compile_command(pattern, grant=False).matches(argv, deny=True)


@pytest.mark.parametrize(
    ("element", "arg", "expected"),
    [
        pytest.param("-h", "-h", True, id="literal-flag"),
        pytest.param("-h", "-H", False, id="literal-is-case-sensitive"),
        pytest.param("*.log", "app.log", True, id="glob"),
        pytest.param("*.log", "a/b.log", False, id="glob-star-stays-in-segment"),
        pytest.param("/var/**.log", "/var/log/a.log", True, id="double-star-crosses-slash"),
        pytest.param("*.log", "-x.log", False, id="glob-never-matches-a-flag"),
        pytest.param("--since=*", "--since=1h", True, id="dash-glob-matches-flag"),
        pytest.param("file[0-9]", "file7", True, id="glob-set"),
        pytest.param("file[!0-9]", "file/", False, id="negated-set-excludes-slash"),
        pytest.param("/[A-Z_]+/", "PATH", True, id="regex-fullmatch"),
        pytest.param("/[A-Z_]+/", "PATH;", False, id="regex-is-anchored"),
        pytest.param("/\\d+/", "\u0663", False, id="regex-is-ascii"),
        pytest.param("/.*/", "-rf", False, id="regex-never-matches-a-flag"),
        pytest.param("/-n[0-9]+/", "-n5", True, id="dash-regex-matches-flag"),
        pytest.param("{x}", "anything", True, id="bare-placeholder-is-str"),
        pytest.param("{x:str}", "--output=/etc/passwd", False, id="str-refuses-flags"),
        pytest.param("{n:int}", "42", True, id="int"),
        pytest.param("{n:int}", "-1", False, id="int-refuses-negative-by-default"),
        pytest.param("{n:int(-5..5)}", "-5", True, id="int-explicit-negative-range"),
        pytest.param("{n:int(1..5)}", "6", False, id="int-range"),
        pytest.param("{n:int(1..)}", "99999", True, id="int-open-range"),
        pytest.param("{n:int}", "+5", False, id="int-no-plus"),
        pytest.param("{n:int}", "\u0665", False, id="int-ascii-digits-only"),
        pytest.param("{n:int}", "1_000", False, id="int-no-underscores"),
        pytest.param("{p:path(/tmp/**)}", "/tmp", True, id="path-double-star-includes-dir"),
        pytest.param("{p:path(/tmp/**)}", "/tmp/a/b", True, id="path-under-prefix"),
        pytest.param("{p:path(/tmp/**)}", "/tmpx", False, id="path-prefix-is-by-segment"),
        pytest.param("{p:path(/tmp/**)}", "/tmp/../etc/shadow", False, id="path-dotdot"),
        pytest.param("{p:path(/tmp/**)}", "/tmp/./x", False, id="path-dot"),
        pytest.param("{p:path(/tmp/**)}", "tmp/x", False, id="path-relative"),
        pytest.param("{p:path(/tmp/**)}", "//tmp//x/", True, id="path-extra-slashes-normalise"),
        pytest.param("{p:path(/tmp/*.cap)}", "/tmp/a.cap", True, id="path-segment-glob"),
        pytest.param("{p:path(/tmp/*.cap)}", "/tmp/a/b.cap", False, id="path-star-one-segment"),
        pytest.param("{p:path(/proc/loadavg)}", "/proc/loadavg", True, id="path-exact"),
        pytest.param("{p:path(/proc/loadavg)}", "/proc/loadavg/x", False, id="path-exact-only"),
        pytest.param("{p:path(/tmp/**)}", "--output=/tmp/x", False, id="path-never-a-flag"),
        pytest.param("{p:path(/**)}", "/", True, id="path-root-under-double-star"),
        pytest.param("{p:path(/)}", "/", True, id="path-root-exact"),
        pytest.param("{p:path(/)}", "/tmp", False, id="path-root-only"),
        pytest.param("{p:path(/tmp/*)}", "/tmp/x/", True, id="path-trailing-slash"),
        pytest.param("{p:path(/tmp/**/x)}", "/tmp/x", True, id="path-double-star-zero-segments"),
        pytest.param("{p:path(/tmp/**/x)}", "/tmp/a/b/x", True, id="path-double-star-segments"),
        pytest.param("{p:path(/tmp/**/x)}", "/tmp/a/bx", False, id="path-double-star-whole"),
        pytest.param("{p:path(/home/*/.ssh/**)}", "/home/b/.ssh/k", True, id="path-hidden-dir"),
        pytest.param("{p:path(/a[/]b)}", "/a/b", False, id="path-set-never-matches-slash"),
        pytest.param("{p:path(/a[!x]b)}", "/a/b", False, id="path-negated-set-no-slash"),
        pytest.param("{p:path(/a?b)}", "/a/b", False, id="path-question-mark-no-slash"),
        pytest.param("{p:path(/t[a-z]p/x)}", "/toop/x", False, id="path-set-one-char"),
        pytest.param("{p:path(/t[a-z]p/x)}", "/tap/x", True, id="path-set"),
        pytest.param("{p:path(/tmp/x,/var/**)}", "/var/log/a", True, id="path-any-location"),
        pytest.param("{p:path(/tmp/*.log)}", "/tmp/a\nb.log", True, id="path-star-any-char"),
        pytest.param("{h:host}", "10.0.0.1", True, id="host-ipv4"),
        pytest.param("{h:host}", "::1", True, id="host-ipv6"),
        pytest.param("{h:host}", "api.example.com", True, id="host-name"),
        pytest.param("{h:host}", "-oProxyCommand=x", False, id="host-refuses-flag"),
        pytest.param("{h:host}", "a_b.com", False, id="host-rfc1123-charset"),
        pytest.param("{h:hostname}", "x" * 64, False, id="hostname-label-too-long"),
        pytest.param("{h:ip}", "010.0.0.1", False, id="ip-no-leading-zeros"),
        pytest.param("{h:ip|hostname}", "db-1", True, id="union-of-types"),
        pytest.param("{f:oneof(-m,-h)}", "-h", True, id="oneof-listed-flag"),
        pytest.param("{f:oneof(-m,-h)}", "-g", False, id="oneof-unlisted"),
        pytest.param("{f:oneof(a, b)}", "b", True, id="oneof-strips-spaces"),
        pytest.param(
            "{u:url(http://127.0.0.1:*/debug/*)}", "http://127.0.0.1:6060/debug/x", True, id="url"
        ),
        pytest.param(
            "{u:url(http://127.0.0.1:*/debug/*)}",
            "http://127.0.0.1:1@evil/debug/x",
            False,
            id="url-userinfo",
        ),
        pytest.param(
            "{u:url(http://127.0.0.1:*/debug/*)}",
            "http://127.0.0.1:x/debug/x",
            False,
            id="url-bad-port",
        ),
        pytest.param(
            "{u:url(http://127.0.0.1:*/debug/*)}",
            "http://127.0.0.1:1/debug/x#y",
            False,
            id="url-fragment",
        ),
        pytest.param("{c:program(rm)}", "/usr/bin/rm", True, id="program-by-basename"),
        pytest.param("{c:program(mkfs*)}", "mkfs.ext4", True, id="program-glob"),
        pytest.param("{c:wrapper}", "/usr/bin/python3.11", True, id="wrapper-type"),
        pytest.param("{c:wrapper}", "ls", False, id="wrapper-type-not-ls"),
    ],
)
def test_one_element_matches_as_documented(element: str, arg: str, expected: bool) -> None:
    assert grant(["cmd", element], ["cmd", arg]) is expected


def test_optional_elements_may_be_absent() -> None:
    pattern = ["ls", "{f:oneof(-l,-la)}?", "{d:path(/tmp/**)}"]
    assert grant(pattern, ["ls", "/tmp"])
    assert grant(pattern, ["ls", "-la", "/tmp"])
    assert not grant(pattern, ["ls", "-la"])
    assert not grant(pattern, ["ls", "-la", "-l", "/tmp"])


def _backtracking(pattern: CommandPattern, argv: list[str], deny: bool) -> bool:
    """The plain reading of a pattern, tried every way: each optional element either
    takes the next argument or is skipped; the rest marker takes what is left."""
    guarded = frozenset() if deny else guarded_positions(argv)

    def match(i: int, j: int) -> bool:
        if i == len(pattern.elements):
            if j == len(argv):
                return True
            return pattern.rest and (deny or all(p < j for p in guarded))
        element = pattern.elements[i]
        took = (
            j < len(argv) and element.accepts(argv[j], deny, j in guarded) and match(i + 1, j + 1)
        )
        return took or (element.optional and match(i + 1, j))

    return match(0, 0)


OPTIONAL_PATTERNS = [
    ["cat", "{o1:/.*/}?", "{o2:/.*/}?", "{f:path(/etc/shadow,/root/**)}", "..."],
    ["grep", "{f:oneof(-i,-v,-c)}?", "{p:str}"],
    ["head", "{f:oneof(-n)}?", "{n:int(1..100)}?"],
    ["{w:oneof(timeout,nice)}", "{n:int}?", "{c:oneof(sh,ps)}", "..."],
    ["{x:/.*/}?", "{c:program(curl)}", "..."],
    ["ls", "{a:oneof(-l,-a)}?", "{b:oneof(-l,-a)}?", "{d:path(/tmp/**)}?"],
]
ARGS = [
    "-i",
    "-l",
    "-a",
    "-n",
    "5",
    "500",
    "x",
    "/etc/shadow",
    "/tmp/a",
    "/root/../etc/shadow",
    "sh",
]


@pytest.mark.parametrize("items", OPTIONAL_PATTERNS, ids=lambda items: " ".join(items))
def test_optional_elements_match_exactly_as_trying_every_way(items: list[str]) -> None:
    program = items[0] if not items[0].startswith("{") else "timeout"
    argvs = [[program]]
    argvs += [[program, a] for a in ARGS]
    argvs += [[program, a, b] for a in ARGS for b in ARGS]
    argvs += [[program, a, b, c] for a in ARGS[::2] for b in ARGS[1::2] for c in ARGS]
    argvs += [["curl", *argv[1:]] for argv in argvs] + [["x", "curl", "y"], ["curl"]]
    for is_deny in (False, True):
        pattern = compile_command(items, grant=not is_deny)
        for argv in argvs:
            guarded = frozenset() if is_deny else guarded_positions(argv)
            expected = _backtracking(pattern, argv, is_deny)
            assert pattern.matches(argv, deny=is_deny, guarded=guarded) is expected, argv


def test_rest_marker_takes_zero_or_more_arguments() -> None:
    assert grant(["ls", "..."], ["ls"])
    assert grant(["ls", "..."], ["ls", "-la", "/x"])


def test_without_rest_marker_extra_arguments_do_not_match() -> None:
    assert not grant(["df", "-h"], ["df", "-h", "/"])


@pytest.mark.parametrize(
    ("pattern", "argv"),
    [
        pytest.param(["{c:str}", "..."], ["sh", "-c", "id"], id="placeholder-program"),
        pytest.param(["*", "..."], ["bash"], id="glob-program"),
        pytest.param(["/.*/", "..."], ["python3", "-c", "x"], id="regex-program"),
        pytest.param(["{c:oneof(py*)}"], ["python"], id="oneof-glob-is-not-naming"),
        pytest.param(
            ["timeout", "{n:int}", "..."], ["timeout", "5", "sh"], id="rest-under-wrapper"
        ),
        pytest.param(
            ["timeout", "{n:int}", "{c:str}"], ["timeout", "5", "bash"], id="str-under-wrapper"
        ),
        pytest.param(["find", "..."], ["find", "/", "-exec", "id", ";"], id="find-exec-via-rest"),
        pytest.param(
            ["find", "{d:str}", "{a:/-.*/}", "..."],
            ["find", "/", "-delete"],
            id="find-delete-via-regex",
        ),
        pytest.param(["tcpdump", "..."], ["tcpdump", "-z", "/tmp/x"], id="tcpdump-z"),
        pytest.param(["tcpdump", "{f:/-.*/}"], ["tcpdump", "-nzx"], id="tcpdump-z-in-cluster"),
        pytest.param(["ip", "..."], ["ip", "netns", "exec", "x", "sh"], id="ip-netns-exec"),
        pytest.param(
            ["{c:program(env)}", "..."], ["/usr/bin/env"], id="program-type-is-not-naming"
        ),
    ],
)
def test_grants_reach_wrappers_only_through_literals(pattern: list[str], argv: list[str]) -> None:
    assert not grant(pattern, argv)
    assert deny(pattern, argv)


@pytest.mark.parametrize(
    ("pattern", "argv"),
    [
        pytest.param(["env"], ["env"], id="literal-program"),
        pytest.param(
            ["{c:oneof(bash,sh)}", "-c", "{s:str}"], ["bash", "-c", "x"], id="oneof-literal"
        ),
        pytest.param(
            ["find", "{d:path(/tmp/**)}", "-delete"],
            ["find", "/tmp/x", "-delete"],
            id="literal-action",
        ),
        pytest.param(["timeout", "{n:int}", "sh"], ["timeout", "5", "sh"], id="literal-nested"),
    ],
)
def test_literally_named_wrappers_can_be_granted(pattern: list[str], argv: list[str]) -> None:
    assert grant(pattern, argv)


def test_deny_patterns_normalise_dotdot_paths() -> None:
    pattern = ["cat", "{f:path(/etc/shadow)}"]
    assert deny(pattern, ["cat", "/code/../etc/shadow"])
    assert not grant(pattern, ["cat", "/code/../etc/shadow"])


def test_deny_patterns_match_flags_with_any_type() -> None:
    assert deny(["rm", "{x:str}", "..."], ["rm", "-rf", "/"])


@pytest.mark.parametrize(
    "program",
    [
        "sh",
        "/bin/bash",
        "./busybox",
        "BASH",
        "python3.11",
        "perl5.36",
        "bash-5.2",
        "env",
        "/usr/bin/env",
        "xargs",
        "nsenter",
        "ld-linux-x86-64.so.2",
        "x86_64",
        "node18",
    ],
)
def test_wrapper_names_are_recognised(program: str) -> None:
    assert is_wrapper(program)


@pytest.mark.parametrize("program", ["ls", "cat", "ps", "shred", "shutdown", "sha256sum"])
def test_ordinary_programs_are_not_wrappers(program: str) -> None:
    assert not is_wrapper(program)


@pytest.mark.parametrize(
    ("pattern", "index"),
    [
        pytest.param(["ls", "...", "-l"], 1, id="rest-not-last"),
        pytest.param(["..."], 0, id="grant-must-name-program"),
        pytest.param(["ls", "{d:path()}"], 1, id="path-without-locations"),
        pytest.param(["ls", "{d:path(tmp)}"], 1, id="path-relative-location"),
        pytest.param(["ls", "{d:path(/tmp/../etc)}"], 1, id="path-location-dotdot"),
        pytest.param(["ls", "{d:path(/tmp/a**)}"], 1, id="double-star-partial-segment"),
        pytest.param(["ls", "{n:int(5..1)}"], 1, id="empty-int-range"),
        pytest.param(["ls", "{n:int(x)}"], 1, id="bad-int-range"),
        pytest.param(["ls", "{x:nosuchtype}"], 1, id="unknown-type"),
        pytest.param(["ls", "{x:oneof()}"], 1, id="empty-oneof"),
        pytest.param(["ls", "{x:str(a)}"], 1, id="str-takes-no-args"),
        pytest.param(["ls", "{x"], 1, id="unclosed-brace"),
        pytest.param(["ls", "a{b}"], 1, id="brace-in-literal"),
        pytest.param(["ls", "{1x:str}"], 1, id="bad-placeholder-name"),
        pytest.param(["ls", "{x:str}", "{x:int}"], 2, id="duplicate-placeholder-name"),
        pytest.param(["ls", "/(unclosed/"], 1, id="bad-regex"),
        pytest.param(["ls", "{x:/[/}"], 1, id="bad-regex-placeholder"),
        pytest.param([], 0, id="empty-pattern"),
    ],
)
def test_bad_patterns_name_the_element(pattern: list[str], index: int) -> None:
    with pytest.raises(PatternError) as caught:
        compile_command(pattern, grant=True)
    assert caught.value.index == index


def test_deny_rules_may_match_any_program() -> None:
    assert compile_command(["..."], grant=False).matches(["anything", "at", "all"], deny=True)


def test_pattern_prints_as_written() -> None:
    assert str(compile_command(["ps", "{f:oneof(aux,-ef)}"], grant=True)) == (
        "[ps, {f:oneof(aux,-ef)}]"
    )
