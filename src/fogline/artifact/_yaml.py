"""A strict YAML reader for module files: safe types only, no aliases, no duplicate keys."""

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node


class StrictYamlError(ValueError):
    """The text is not YAML we accept; the message carries line and column."""


class _StrictLoader(yaml.SafeLoader):
    # Aliases let a small file expand into a huge document (billion laughs);
    # a module file has no use for them.
    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise StrictYamlError(f"line {mark.line + 1}: YAML aliases (*name) are not allowed")
        return super().compose_node(parent, index)

    # PyYAML keeps the last of two equal keys silently; in a module file that
    # hides a mistake (two `env:` blocks, one of them ignored).
    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                duplicate = False  # unhashable key: SafeLoader reports it below
            if duplicate:
                line = key_node.start_mark.line + 1
                raise StrictYamlError(f"line {line}: key {key!r} appears twice")
        return super().construct_mapping(node, deep=deep)


def load_strict_yaml(text: str) -> Any:
    """Parse one YAML document with the strict rules above.

    Raises:
        StrictYamlError: not valid YAML, an alias, a duplicate key, or several documents.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except StrictYamlError:
        raise
    except yaml.YAMLError as exc:
        raise StrictYamlError(_describe(exc)) from exc


def _describe(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)
