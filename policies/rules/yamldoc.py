"""YAML documents that remember where each value came from.

Policy files and golden case files are read here. Every failure becomes a
``PolicyLoadError(file, line, reason)`` whose line is the 1-based line of the offending
node, so an author can go straight to it.

Reading rules:
- safe loading only (``yaml.SafeLoader``): no Python objects, one document per file;
- every plain scalar is read as a string and typed by the schema afterwards, so ``no``,
  ``on``, ``010`` or ``1e3`` inside a command stay exactly what the author wrote; only
  ``~``, ``null`` and an empty value mean "nothing";
- a key repeated in the same mapping is an error (YAML would silently keep the last);
- the document may hold at most ``MAX_NODES`` nodes after anchors are expanded, so an
  alias bomb is refused before validation walks it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import pydantic
import yaml

from policies.errors import PolicyLoadError

MAX_BYTES = 1 << 20
MAX_NODES = 100_000

M = TypeVar("M", bound=pydantic.BaseModel)


class _StringLoader(yaml.SafeLoader):
    """SafeLoader whose only implicit type is null."""

    yaml_implicit_resolvers: dict[Any, Any] = {}  # noqa: RUF012 - PyYAML reads this class attribute


_StringLoader.add_implicit_resolver(
    "tag:yaml.org,2002:null",
    re.compile(r"^(?:~|null|Null|NULL|)$"),
    ["~", "n", "N", ""],
)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed document: the plain data plus the node tree for line lookups."""

    source: str
    data: object
    root: yaml.Node

    def line_of(self, loc: Sequence[str | int]) -> int:
        """The 1-based line of the node at ``loc`` (keys and list indexes from the root).

        Steps that do not resolve (a missing key, a schema-internal name) are skipped, so
        the answer is the deepest node that exists on the path.
        """
        node = self.root
        line = node.start_mark.line + 1
        for step in loc:
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(step):
                        scalar = isinstance(value_node, yaml.ScalarNode)
                        line = (value_node if scalar else key_node).start_mark.line + 1
                        node = value_node
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(step, int)
                and 0 <= step < len(node.value)
            ):
                node = node.value[step]
                line = node.start_mark.line + 1
        return line

    def reject_duplicates(self, section: str, ids: Sequence[str], what: str) -> None:
        """Raises: PolicyLoadError at the second use of an id in ``section``."""
        seen: set[str] = set()
        for index, ident in enumerate(ids):
            if ident in seen:
                self.fail((section, index, "id"), f"duplicate {what} id {ident!r}")
            seen.add(ident)

    def fail(self, loc: Sequence[str | int], reason: str) -> NoReturn:
        """Raises: PolicyLoadError at the line of ``loc``, the reason prefixed by its path."""
        where = ".".join(str(step) for step in loc)
        raise PolicyLoadError(
            self.source, self.line_of(loc), f"{where}: {reason}" if where else reason
        )


def parse_yaml(text: str, source: str) -> YamlDocument:
    """Parse one YAML document with the reading rules above.

    Raises: PolicyLoadError (syntax error, several documents, duplicate key, empty or
    oversized file).
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise PolicyLoadError(source, None, f"the file is larger than {MAX_BYTES} bytes")
    loader = _StringLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise PolicyLoadError(source, 1, "the file is empty")
        _check_nodes(root, source)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyLoadError(source, line, _yaml_reason(exc)) from None
    except yaml.YAMLError:
        raise PolicyLoadError(source, None, "the file is not valid YAML") from None
    except RecursionError:
        raise PolicyLoadError(source, None, "the document is nested too deeply") from None
    finally:
        loader.dispose()
    return YamlDocument(source=source, data=data, root=root)


def validate_document(model: type[M], doc: YamlDocument) -> M:
    """Validate ``doc.data`` against a pydantic model; the first error names its line.

    Raises: PolicyLoadError.
    """
    try:
        return model.model_validate(doc.data)
    except pydantic.ValidationError as exc:
        found = exc.errors(include_url=False)
        # A failed item also fails its container (e.g. "too short" after the item was
        # dropped); report the item, which is where the author has to look.
        locs = [_loc(err) for err in found]
        specific = [
            err
            for err, loc in zip(found, locs, strict=True)
            if not any(len(other) > len(loc) and other[: len(loc)] == loc for other in locs)
        ]
        errors = sorted(specific, key=lambda err: doc.line_of(_loc(err)))
        first = errors[0]
        loc = _loc(first)
        reason = schema_reason(first)
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more problem(s))"
        doc.fail(loc, reason)


def schema_reason(error: Any) -> str:
    """A reason for one pydantic error, in ExecGate's words.

    Messages from our own validators (``ValueError`` raised by ExecGate code) pass
    through; library messages are replaced by fixed sentences.
    """
    kind: str = error["type"]
    loc = _loc(error)
    last = loc[-1] if loc else ""
    ctx = error.get("ctx") or {}
    if kind == "value_error" and isinstance(ctx.get("error"), ValueError):
        return str(ctx["error"])
    if kind == "extra_forbidden":
        return f"unknown key {last!r}"
    if kind == "missing":
        return f"missing required key {last!r}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', 'the allowed values')}"
    if kind == "too_short":
        return "must not be empty"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    for prefix, sentence in _TYPE_SENTENCES:
        if kind.startswith(prefix):
            return sentence
    return "invalid value"


_TYPE_SENTENCES = (
    ("string", "expected a string"),
    ("bool", "expected true or false"),
    ("int", "expected a whole number"),
    ("float", "expected a number"),
    ("list", "expected a list"),
    ("tuple", "expected a list"),
    ("set", "expected a list"),
    ("dict", "expected a mapping (key: value)"),
    ("model", "expected a mapping (key: value)"),
    ("dataclass", "expected a mapping (key: value)"),
)


def _loc(error: Any) -> tuple[str | int, ...]:
    return tuple(step for step in error["loc"] if isinstance(step, str | int))


def _yaml_reason(exc: yaml.MarkedYAMLError) -> str:
    # The problem text of PyYAML is a fixed phrase such as "mapping values are not
    # allowed here"; the context and snippets (which quote the file) are dropped.
    problem = exc.problem or "invalid YAML"
    return f"YAML syntax: {problem}"


def _check_nodes(root: yaml.Node, source: str) -> None:
    """Refuse duplicate keys and documents that expand past MAX_NODES."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        sizes[id(node)] = MAX_NODES + 1  # a cycle counts as too large
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    if key_node.value in seen:
                        raise PolicyLoadError(
                            source,
                            key_node.start_mark.line + 1,
                            f"duplicate key {key_node.value!r}",
                        )
                    seen.add(key_node.value)
                total += size(key_node) + size(value_node)
                if total > MAX_NODES:
                    break
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                total += size(item)
                if total > MAX_NODES:
                    break
        sizes[id(node)] = total
        return total

    if size(root) > MAX_NODES:
        raise PolicyLoadError(
            source, 1, f"the document has more than {MAX_NODES} values once anchors are expanded"
        )
