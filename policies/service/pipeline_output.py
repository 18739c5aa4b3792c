"""Where a pipeline's filters run, and how ``printenv NAME`` is scrubbed.

A pipeline ``CMD | grep x | sort`` runs only ``CMD`` on the instance; its stdout is
scrubbed here first and then goes through the filter stages (``policies.filters``), so
no filter ever sees a secret and the pipeline's exit status (grep's 0/1) is computed
from the scrubbed text: nothing can serve as a yes/no oracle on a secret.

``printenv NAME`` prints a bare value, which redaction cannot tell from any other text;
when NAME is a secret-looking name (the test ``env`` output gets, by the name asked) the
value is replaced by a marker before anything else sees it.

Filter work is CPU work on ExecGate's event loop, so it is bounded: the caller feeds
output in chunks of at most ``FEED_CHUNK`` bytes (yielding between them), and a chain
that spends more than its CPU budget (the rule's timeout, in CPU seconds) stops
filtering; ``over_budget`` then tells the caller to end the exec as timed out.

``plan_output(argv)`` splits what the service was asked to run into what the instance
runs and an ``OutputPlan``; ``OutputPlan.collector`` puts the plan in front of an
``OutputCollector``, with the same ``feed``/``end``/``finish`` calls.
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from collections.abc import Sequence
from dataclasses import dataclass

from policies.errors import CommandRejected
from policies.filters import FilterChain, compile_filters
from policies.redaction import MAX_LINE, StreamRedactor
from policies.redaction.controls import strip_controls
from policies.redaction.keys import is_secret_key, kind_for_key
from policies.redaction.rules import marker
from policies.rules.commands import build_shell_line, parse_command_text
from policies.service.output import CollectedOutput, OutputCollector
from policies.types import Stream

__all__ = ["OutputPlan", "PlannedCollector", "plan_output"]

# A printenv value is held whole to be judged by its name; past this it is a marker.
MAX_PRINTENV_VALUE = 1024 * 1024
# The most stdout the filters take in one call, so the event loop is never held long.
FEED_CHUNK = 64 * 1024
_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True, slots=True)
class OutputPlan:
    """What happens to the instance's stdout before it is collected."""

    filters: tuple[tuple[str, ...], ...] = ()
    # printenv's names when one of them is secret-looking.
    printenv_names: tuple[str, ...] = ()

    @property
    def plain(self) -> bool:
        return not self.filters and not self.printenv_names

    def collector(
        self, inner: OutputCollector, *, max_bytes: int, cpu_budget: float | None = None
    ) -> PlannedCollector:
        return PlannedCollector(self, inner, max_bytes=max_bytes, cpu_budget=cpu_budget)

    def exit_code(self, chain_status: int | None, first: int | None) -> int | None:
        return first if first is None or not self.filters else chain_status


def pipeline_stages(argv: Sequence[str]) -> tuple[tuple[str, ...], ...] | None:
    """The stages of a pipeline line ExecGate built (``/bin/sh -c 'A | B'``), or None."""
    if len(argv) != 3 or tuple(argv[:2]) != _SHELL:
        return None
    try:
        stages = parse_command_text(argv[2], max_length=len(argv[2]) + 1).stages
    except CommandRejected:
        return None
    if len(stages) < 2 or build_shell_line(stages) != argv[2]:
        return None
    return stages


def _printenv_secret_names(argv: Sequence[str]) -> tuple[str, ...]:
    if not argv or posixpath.basename(argv[0]) != "printenv":
        return ()
    names = tuple(arg for arg in argv[1:] if not arg.startswith("-"))
    return names if any(is_secret_key(name) for name in names) else ()


def plan_output(argv: Sequence[str]) -> tuple[tuple[str, ...], OutputPlan]:
    """What the instance runs for ``argv``, and what ExecGate does with its stdout.

    Raises: CommandRejected (kind ``filter``) for a pipeline stage ExecGate cannot run
    (the decision refuses those already; this keeps a stale approval from running one).
    """
    stages = pipeline_stages(argv)
    if stages is None:
        return tuple(argv), OutputPlan(printenv_names=_printenv_secret_names(argv))
    compile_filters(stages[1:])
    first = stages[0]
    return first, OutputPlan(filters=stages[1:], printenv_names=_printenv_secret_names(first))


class PlannedCollector:
    """An ``OutputCollector`` behind the plan: stdout is scrubbed, then filtered."""

    def __init__(
        self,
        plan: OutputPlan,
        inner: OutputCollector,
        *,
        max_bytes: int,
        cpu_budget: float | None = None,
    ) -> None:
        self._plan = plan
        self._cpu_budget = cpu_budget
        self._cpu_used = 0.0
        self._over_budget = False
        self._inner = inner
        self._max_bytes = max_bytes
        self._chain: FilterChain = compile_filters(plan.filters)
        self._redactor = StreamRedactor(prepare=strip_controls)
        self._pending = ""
        self._value: list[str] = []
        self._value_chars = 0
        self._raw = 0
        self._processed = 0
        self._capped = False
        self._stdout_ended = False

    def feed(self, stream: Stream, data: bytes) -> str:
        if stream != "stdout" or self._plan.plain:
            return self._inner.feed(stream, data)
        self._raw += len(data)
        room = self._max_bytes - (self._raw - len(data))
        if len(data) > room:
            self._capped = True
            data = data[: max(room, 0)]
        self._processed += len(data)
        if not data or self._chain.done or self._over_budget:
            return ""
        return self._release(self._redactor.feed(data), final=False)

    def end(self, stream: Stream) -> str:
        if stream != "stdout" or self._plan.plain:
            return self._inner.end(stream)
        if self._stdout_ended:
            raise RuntimeError("stdout has already ended")
        self._stdout_ended = True
        text = self._release(self._redactor.flush(), final=True)
        notes = self._chain.notices()
        if self._over_budget:
            notes.append(
                f"the pipeline's filters used their CPU budget of {self._cpu_budget:g}s "
                "and were stopped"
            )
        for note in notes:
            self._inner.feed("stderr", f"execgate: {note}\n".encode())
        return text + self._inner.end(stream)

    def finish(self) -> CollectedOutput:
        if not self._plan.plain and not self._stdout_ended:
            self.end("stdout")
        out = self._inner.finish()
        if self._plan.plain:
            return out
        # Past the cap, stdout bytes are dropped before the filters. The byte counts
        # stay the inner collector's: of the output shown, after the filters.
        return dataclasses.replace(
            out,
            capped=out.capped or self._capped,
            dropped_bytes=out.dropped_bytes + self._raw - self._processed,
        )

    @property
    def over_budget(self) -> bool:
        """The filters spent their CPU budget and stopped: the exec is to end as timed
        out."""
        return self._over_budget

    def exit_code(self, first: int | None) -> int | None:
        if self._over_budget:
            return None
        return self._plan.exit_code(self._chain.exit_status(first), first)

    def _release(self, scrubbed: str, *, final: bool) -> str:
        text = self._printenv(scrubbed, final=final)
        lines = self._lines(text, final=final)
        if self._over_budget:
            return ""
        started = time.thread_time()
        out = self._chain.feed(lines)
        if final:
            out.extend(self._chain.finish())
        self._cpu_used += time.thread_time() - started
        if self._cpu_budget is not None and self._cpu_used > self._cpu_budget:
            self._over_budget = True
            return ""
        if not out:
            return ""
        return self._inner.feed("stdout", "".join(out).encode())

    def _printenv(self, text: str, *, final: bool) -> str:
        names = self._plan.printenv_names
        if not names:
            return text
        if self._value_chars <= MAX_PRINTENV_VALUE:
            self._value.append(text)
            self._value_chars += len(text)
        if not final:
            return ""
        value = "".join(self._value)
        self._value = []
        if not value:
            return ""
        bare = value[:-1] if value.endswith("\n") else value
        too_long = self._value_chars > MAX_PRINTENV_VALUE
        if too_long or any(is_secret_key(name, bare) for name in names):
            kind = kind_for_key(next(n for n in names if is_secret_key(n)))
            return marker(kind) + "\n"
        return value

    def _lines(self, text: str, *, final: bool) -> list[str]:
        text = self._pending + text
        self._pending = ""
        lines = [line + "\n" for line in text.split("\n")]
        last = lines.pop()[:-1]  # what follows the last newline
        if last and (final or len(last) > MAX_LINE):
            lines.append(last)
        elif last:
            self._pending = last
        return lines
