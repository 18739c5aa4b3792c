"""A pipeline's filter stages, chained: lines in, lines out, one exit status."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from policies.filters.base import LineFilter, refuse
from policies.filters.grep import compile_grep
from policies.filters.head import compile_head
from policies.filters.sort import compile_sort
from policies.filters.tail import compile_tail
from policies.filters.uniq import compile_uniq
from policies.filters.wc import compile_wc

_COMPILERS: dict[str, Callable[[Sequence[str]], LineFilter]] = {
    "grep": compile_grep,
    "head": compile_head,
    "sort": compile_sort,
    "tail": compile_tail,
    "uniq": compile_uniq,
    "wc": compile_wc,
}

FILTER_PROGRAMS = frozenset(_COMPILERS)


def compile_stage(stage: Sequence[str]) -> LineFilter:
    """The filter for one pipeline stage after the first.

    The program is named exactly (``grep``, not ``/bin/grep``): the stage never runs on
    an instance, so a path would name nothing.

    Raises: CommandRejected (kind ``filter``) for a program or option ExecGate does not
    implement.
    """
    if not stage:
        raise refuse("filter", "empty stage")
    compiler = _COMPILERS.get(stage[0])
    if compiler is None:
        raise refuse(
            stage[0],
            f"not a filter ExecGate runs (it runs {', '.join(sorted(FILTER_PROGRAMS))})",
        )
    return compiler(stage[1:])


def compile_filters(stages: Sequence[Sequence[str]]) -> FilterChain:
    """The chain of ``stages`` (every stage after a pipeline's first).

    Raises: CommandRejected (kind ``filter``).
    """
    return FilterChain([compile_stage(stage) for stage in stages])


class FilterChain:
    """Feeds each line through every filter in turn. With no filters, lines pass."""

    def __init__(self, filters: Sequence[LineFilter]) -> None:
        self._filters = list(filters)

    @property
    def empty(self) -> bool:
        return not self._filters

    @property
    def done(self) -> bool:
        """No later input can change the output (a ``head`` has all its lines)."""
        return any(f.done for f in self._filters)

    def feed(self, lines: Sequence[str]) -> list[str]:
        """Take lines (each with its newline; the last of the input may lack one)."""
        current = list(lines)
        for stage in self._filters:
            if not current:
                return []
            released: list[str] = []
            for line in current:
                released.extend(stage.feed(line))
            current = released
        return current

    def finish(self) -> list[str]:
        """End of input: flush every stage in order, each into the next."""
        current: list[str] = []
        for stage in self._filters:
            released: list[str] = []
            for line in current:
                released.extend(stage.feed(line))
            released.extend(stage.finish())
            current = released
        return current

    def exit_status(self, first: int | None) -> int | None:
        """The pipeline's status: the last stage's (as ``sh`` reports it), or ``first``
        when there is no filter."""
        if not self._filters:
            return first
        return self._filters[-1].exit_status()

    def notices(self) -> list[str]:
        return [note for f in self._filters if (note := f.notice()) is not None]
