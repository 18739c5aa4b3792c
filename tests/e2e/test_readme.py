"""The README's terminal examples run, in order, against a real `execgate serve`.

A fenced ``sh``/``bash``/``console`` block whose lines start with ``$ `` is an example:
each ``$ `` line is a command, the lines under it the output it shows. A command must
exit 0, unless the next command is ``echo $?``, whose shown value it must exit with. Shown
output lines must appear in what the command printed, where ``…`` or ``...`` stand for
anything, numbers for any number, runs of spaces for any spacing (table columns), and a
trailing ``# comment`` is not output.

Placeholders are filled in as a reader would: ``demo-api/c-5f0c…`` with the live
instance, ``ap_…`` and ``ex_…`` with the last approval and audit ids printed. An HTML
comment right before a fence marks the block:
``<!-- readme-test: skip (why) -->`` is not run (it needs Slack, the cloud, or minutes);
``<!-- readme-test: exit-varies -->`` accepts the instance command's own exit code, but
not ExecGate's (usage, unavailable, internal or configuration errors).
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import pytest

from server.cli.exits import EXIT_CONFIG, EXIT_INTERNAL, EXIT_UNAVAILABLE, EXIT_USAGE
from tests.e2e.conftest import Served

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
VENV = Path(sys.executable).parent.parent
EXECGATE_FAILURES = {EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_INTERNAL, EXIT_CONFIG}
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARK = re.compile(r"^<!--\s*readme-test:\s*(skip|exit-varies)\b.*-->\s*$")


@dataclass
class Step:
    command: str
    shown: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    mark: str | None
    steps: list[Step]


def examples(text: str) -> list[Block]:
    """The README's runnable examples, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence or fence[1] not in ("sh", "bash", "console", "shell"):
            i += 1
            continue
        mark_line = lines[i - 1] if i else ""
        mark = _MARK.match(mark_line)
        start, i = i, i + 1
        steps: list[Step] = []
        while i < len(lines) and not lines[i].startswith("```"):
            if lines[i].startswith("$ "):
                steps.append(Step(lines[i][2:].strip()))
            elif steps and lines[i].strip():
                steps[-1].shown.append(lines[i])
            i += 1
        i += 1
        if steps:
            blocks.append(Block(start + 1, mark[1] if mark else None, steps))
    return blocks


def shown_pattern(line: str) -> re.Pattern[str]:
    """A shown output line as a pattern: ``…``/``...`` match anything, digits any number."""
    line = re.sub(r"\s+#\s.*$", "", line).strip()
    parts = re.split(r"(…|\.\.\.|\d+|\s+)", line)
    out = []
    for part in parts:
        if part in ("…", "..."):
            out.append(".*")
        elif part.isdigit():
            out.append(r"\d+")
        elif part.isspace():
            out.append(r"\s+")
        else:
            out.append(re.escape(part))
    return re.compile("".join(out))


class Reader:
    """Runs the examples as a reader in a scratch directory would."""

    def __init__(self, served: Served, cwd: Path) -> None:
        self.served = served
        self.cwd = cwd
        self.approval_id = ""
        self.audit_id = ""

    def fill(self, command: str) -> str:
        command = re.sub(r"demo-api/c-[0-9a-f]*…", self.served.instance, command)
        command = command.replace("ap_…", self.approval_id).replace("ex_…", self.audit_id)
        return command

    async def run(self, command: str) -> tuple[int, str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EXECGATE_")}
        environ["EXECGATE_CONFIG"] = str(self.served.config)
        proc = await asyncio.create_subprocess_exec(
            "/bin/bash",
            "-c",
            command,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=environ,
        )
        with anyio.fail_after(120):
            out, _ = await proc.communicate()
        assert proc.returncode is not None
        text = out.decode(errors="replace")
        for found in re.findall(r"\b(ap_[0-9a-z]+)", text):
            self.approval_id = found
        for found in re.findall(r"\b(ex_[0-9a-z]+)", text):
            self.audit_id = found
        return proc.returncode, text


def test_the_readme_has_runnable_examples_and_every_mark_is_known() -> None:
    text = README.read_text()
    blocks = examples(text)
    assert len([b for b in blocks if b.mark != "skip"]) >= 5
    marks = [line for line in text.splitlines() if line.startswith("<!-- readme-test:")]
    assert all(_MARK.match(line) for line in marks), marks


async def test_the_readme_examples_run_against_a_real_server(
    served: Served, tmp_path: Path
) -> None:
    cwd = tmp_path / "clone"
    cwd.mkdir()
    for name in ("tests", "policies"):
        (cwd / name).symlink_to(ROOT / name)
    (cwd / ".venv").symlink_to(VENV)
    # The file the collect example fetches, as a capture would have left it.
    (served.state_tmp() / "capture.cap").write_bytes(b"\xd4\xc3\xb2\xa1 capture")
    reader = Reader(served, cwd)
    ran = 0
    for block in examples(README.read_text()):
        if block.mark == "skip":
            continue
        previous: tuple[str, int] | None = None
        for step in block.steps:
            where = f"README.md block at line {block.line}: $ {step.command}"
            if step.command == "echo $?":
                assert previous is not None, where
                assert [str(previous[1])] == step.shown, f"{where} after {previous[0]}"
                previous = None
                continue
            if previous is not None:
                _check_exit(block, *previous)
            command = reader.fill(step.command)
            code, output = await reader.run(command)
            ran += 1
            for line in step.shown:
                pattern = shown_pattern(line)
                assert any(pattern.fullmatch(got.strip()) for got in output.splitlines()), (
                    f"{where}\nshown: {line}\nprinted:\n{output}"
                )
            previous = (command + "\n" + output, code)
        if previous is not None:
            _check_exit(block, *previous)
    assert ran >= 10


def _check_exit(block: Block, what: str, code: int) -> None:
    if block.mark == "exit-varies":
        assert code not in EXECGATE_FAILURES, f"block at line {block.line}: {what}"
    else:
        assert code == 0, f"block at line {block.line} exited {code}: {what}"


@pytest.mark.parametrize(
    ("shown", "printed", "matches"),
    [
        pytest.param(
            "[execgate] exit 0 · 14 ms · audit id ex_…",
            "[execgate] exit 0 · 3 ms · audit id ex_9z",
            True,
            id="numbers-and-ellipsis",
        ),
        pytest.param(
            "http://127.0.0.1:8765/artifacts/…        # a link",
            "http://127.0.0.1:4101/artifacts/t",
            True,
            id="comment-and-port",
        ),
        pytest.param("APP_ENV=demo", "APP_ENV=prod", False, id="literal-text"),
    ],
)
def test_a_shown_line_matches_what_a_reader_would_accept(
    shown: str, printed: str, matches: bool
) -> None:
    assert bool(shown_pattern(shown).fullmatch(printed)) is matches
