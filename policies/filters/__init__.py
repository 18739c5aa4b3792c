"""Pipeline filter stages, run by ExecGate over already-scrubbed output.

When a policy allows ``CMD | grep x | sort``, only ``CMD`` runs on the instance. Every
later stage runs here, as pure code over the lines of ``CMD``'s stdout after redaction,
so no filter ever sees a secret and no filter's output or exit status can answer a
question about one (``grep -c DB_PASSWORD=Wv`` counts scrubbed lines).

Each module is one program: a line transformer that implements exactly the options
listed in its docstring, with the real tool's semantics for them. ``compile_stage``
turns a stage's argv into a filter or refuses it (``CommandRejected``, kind
``filter``): a program or option ExecGate does not implement is refused when the
request is decided, never ignored.
"""

from __future__ import annotations

from policies.filters.base import LineFilter, refuse
from policies.filters.chain import FilterChain, compile_filters, compile_stage

__all__ = ["FilterChain", "LineFilter", "compile_filters", "compile_stage", "refuse"]
