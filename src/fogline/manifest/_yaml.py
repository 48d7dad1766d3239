"""Reading manifest files and composing their YAML with every value's position.

PyYAML's composer keeps a node tree with marks; we turn it into plain JSON
values plus a `path -> (line, column)` index, so later checks can point at
the exact spot. Scalars follow the YAML 1.2 core schema (only `true`/`false`
are booleans, so `country: NO` stays a string), mapping keys are always
strings, and everything that can make a small file expensive is refused:
aliases (the "billion laughs"), deep nesting, oversized input.
"""

import math
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import yaml
from yaml.composer import Composer, ComposerError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from ._errors import ManifestError, Problem
from ._paths import render_path

MAX_SOURCE_BYTES: Final = 1024 * 1024
MAX_TOTAL_BYTES: Final = 16 * 1024 * 1024
MAX_SOURCES: Final = 1000
MAX_DOCUMENTS: Final = 1000
# Real manifests nest a dozen levels; the bound keeps the recursive composer
# and everything after it far from Python's recursion limit.
MAX_DEPTH: Final = 64

Position = tuple[int, int]  # 1-based line, column

_PLAIN: Final = "fogline:plain"  # tag for untagged plain scalars; resolved by _scalar()
_YAML: Final = "tag:yaml.org,2002:"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

_NULL: Final = re.compile(r"~|null|Null|NULL|")
_BOOL: Final = {"true": True, "True": True, "TRUE": True}
_BOOL.update({"false": False, "False": False, "FALSE": False})
_DEC_INT: Final = re.compile(r"[-+]?[0-9]+")
_OCT_INT: Final = re.compile(r"0o[0-7]+")
_HEX_INT: Final = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT: Final = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")
_SPECIAL_FLOAT: Final = re.compile(r"[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)")
# Characters YAML forbids in a stream. Checked up front so the position we
# report is in characters whichever parser (C or Python) runs.
_NOT_PRINTABLE: Final = re.compile(
    "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


@dataclass(frozen=True, slots=True)
class ManifestSource:
    """The text of one manifest file (or stdin, or an API request body)."""

    name: str
    text: str

    @classmethod
    def from_bytes(cls, name: str, data: bytes) -> "ManifestSource":
        """Decode UTF-8 manifest bytes (a leading BOM is allowed).

        Raises:
            ManifestError: larger than MAX_SOURCE_BYTES, or not valid UTF-8.
        """
        if len(data) > MAX_SOURCE_BYTES:
            raise ManifestError([_too_large(name)])
        data = data.removeprefix(b"\xef\xbb\xbf")
        try:
            return cls(name, data.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line_start = data.rfind(b"\n", 0, exc.start) + 1
            line = data.count(b"\n", 0, exc.start) + 1
            column = len(data[line_start : exc.start].decode("utf-8", "replace")) + 1
            reason = f"not valid UTF-8 (byte 0x{data[exc.start]:02x})"
            raise ManifestError([Problem(name, line, column, "", reason)]) from None


def _too_large(name: str) -> Problem:
    return Problem(name, None, None, "", f"larger than {MAX_SOURCE_BYTES} bytes")


def read_sources(target: str, *, stdin: IO[bytes] | None = None) -> list[ManifestSource]:
    """Read the manifests named on a command line: a file, a directory or "-".

    A directory contributes its *.yaml and *.yml files sorted by name (not
    recursive); "-" reads stdin (or `stdin` when given).

    Raises:
        ManifestError: a file is missing, unreadable, too large or not UTF-8,
            or a directory holds no manifest file. Every such file is listed.
    """
    if target == "-":
        stream = stdin if stdin is not None else sys.stdin.buffer
        return [ManifestSource.from_bytes("<stdin>", stream.read(MAX_SOURCE_BYTES + 1))]
    root = Path(target)
    if root.is_dir():
        files = sorted(
            (p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()),
            key=lambda p: p.name,
        )
        if not files:
            raise ManifestError([Problem(target, None, None, "", "no *.yaml or *.yml files")])
        if len(files) > MAX_SOURCES:
            reason = f"more than {MAX_SOURCES} manifest files"
            raise ManifestError([Problem(target, None, None, "", reason)])
    else:
        files = [root]
    sources: list[ManifestSource] = []
    problems: list[Problem] = []
    total = 0
    for path in files:
        name = str(path)
        try:
            with path.open("rb") as fh:
                data = fh.read(MAX_SOURCE_BYTES + 1)
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                reason = f"manifests larger than {MAX_TOTAL_BYTES} bytes in total"
                problems.append(Problem(name, None, None, "", reason))
                break
            sources.append(ManifestSource.from_bytes(name, data))
        except OSError as exc:
            problems.append(Problem(name, None, None, "", exc.strerror or str(exc)))
        except ManifestError as exc:
            problems.extend(exc.problems)
    if problems:
        raise ManifestError(problems)
    return sources


@dataclass(slots=True)
class LocatedDocument:
    """One YAML document as plain JSON values, with the position of every node."""

    file: str
    start: Position
    value: Any
    marks: dict[tuple[str | int, ...], Position] = field(default_factory=dict)
    key_marks: dict[tuple[str | int, ...], Position] = field(default_factory=dict)
    # False when composing found problems inside the document (a bad
    # scalar, a duplicate key): its value is then incomplete.
    is_sound: bool = True

    def locate(self, path: Sequence[str | int], *, at_key: bool = False) -> Position:
        """Return the position of `path`, or of its nearest existing ancestor."""
        parts = tuple(path)
        if at_key and parts in self.key_marks:
            return self.key_marks[parts]
        while parts not in self.marks and parts:
            parts = parts[:-1]
        return self.marks.get(parts, self.start)


class _Composer(Composer, BaseResolver):
    """The composer, refusing aliases and deep nesting, with no implicit typing.

    Mixed with a parser (pure Python or libyaml's) that supplies the events.
    """

    check_event: Any
    peek_event: Any

    def __init__(self) -> None:
        Composer.__init__(self)
        BaseResolver.__init__(self)
        self._depth = 0

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        if kind is ScalarNode and implicit[0]:
            return _PLAIN
        return str(super().resolve(kind, value, implicit))  # type: ignore[no-untyped-call]

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            # Refused outright: an alias is how a 1 KiB file expands to
            # gigabytes, and manifests kept in git gain little from them.
            raise ComposerError(
                None, None, "YAML aliases (*name) are not allowed", self.peek_event().start_mark
            )
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            node = super().compose_node(parent, index)
            assert node is not None  # only None at the end of the stream
            return node
        finally:
            self._depth -= 1


class _PyLoader(Reader, Scanner, Parser, _Composer):
    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        _Composer.__init__(self)


_LOADERS: list[type[Any]] = [_PyLoader]
if yaml.__with_libyaml__:  # libyaml scans and parses about 3x faster
    from yaml._yaml import CParser

    class _CLoader(_Composer, CParser):
        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            _Composer.__init__(self)

    _LOADERS.insert(0, _CLoader)


def compose_documents(
    sources: Sequence[ManifestSource], *, loader: type[Any] | None = None
) -> tuple[list[LocatedDocument], list[Problem]]:
    """Compose every document of every source; empty documents are skipped."""
    documents: list[LocatedDocument] = []
    problems: list[Problem] = []
    sizes = [len(source.text.encode("utf-8", "surrogatepass")) for source in sources]
    # Checked before parsing anything: parsing 16 MiB only to refuse it would
    # hand an attacker the CPU time the limit is there to deny.
    if sum(sizes) > MAX_TOTAL_BYTES:
        reason = f"manifests larger than {MAX_TOTAL_BYTES} bytes in total"
        return documents, [Problem(sources[0].name, None, None, "", reason)]
    for source, size in zip(sources, sizes, strict=True):
        if size > MAX_SOURCE_BYTES:
            problems.append(_too_large(source.name))
            continue
        bad = _NOT_PRINTABLE.search(source.text)
        if bad:
            line, column = _position_of(source.text, bad.start())
            reason = f"character U+{ord(bad.group()):04X} is not allowed in YAML"
            problems.append(Problem(source.name, line, column, "", reason))
            continue
        for node in _compose_all(source, loader or _LOADERS[0], problems):
            document = LocatedDocument(source.name, _mark(node), None)
            document.value = _convert(node, (), document, problems)
            if document.value is None:  # an empty document, e.g. after a final ---
                continue
            if len(documents) == MAX_DOCUMENTS:
                reason = f"more than {MAX_DOCUMENTS} documents in total"
                problems.append(Problem(source.name, *document.start, "", reason))
                return documents, problems
            documents.append(document)
    return documents, problems


def _compose_all(
    source: ManifestSource, loader_type: type[Any], problems: list[Problem]
) -> Iterator[Node]:
    loader = loader_type(source.text)
    try:
        while loader.check_node():
            yield loader.get_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        reason = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        problems.append(Problem(source.name, line, column, "", f"invalid YAML: {reason}"))
    except yaml.YAMLError as exc:  # e.g. a ReaderError the pre-check missed
        problems.append(Problem(source.name, None, None, "", f"invalid YAML: {exc}"))
    finally:
        loader.dispose()


def _position_of(text: str, index: int) -> Position:
    line_start = text.rfind("\n", 0, index) + 1
    return text.count("\n", 0, index) + 1, index - line_start + 1


def _mark(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _convert(
    node: Node, path: tuple[str | int, ...], doc: LocatedDocument, problems: list[Problem]
) -> Any:
    doc.marks[path] = _mark(node)

    def problem(reason: str, at: Node = node) -> None:
        line, column = _mark(at)
        problems.append(Problem(doc.file, line, column, render_path(path), reason))
        doc.is_sound = False

    if isinstance(node, ScalarNode):
        try:
            return _scalar(node)
        except ValueError as exc:
            problem(str(exc))
            return node.value
    if node.tag not in (_YAML + "seq", _YAML + "map"):
        problem(f"unsupported YAML tag {node.tag!r}")
    if isinstance(node, SequenceNode):
        return [_convert(item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, MappingNode)
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode):
            problem("mapping keys must be strings, not a list or mapping", key_node)
            continue
        # The key as written: `1:` or `on:` is the string "1" or "on", as in JSON.
        key: str = key_node.value
        key_path = (*path, key)
        if key in out:
            first_line, first_column = doc.key_marks[key_path]
            line, column = _mark(key_node)
            reason = f"duplicate key {key!r} (first at line {first_line}, column {first_column})"
            problems.append(Problem(doc.file, line, column, render_path(key_path), reason))
            doc.is_sound = False
            continue
        doc.key_marks[key_path] = _mark(key_node)
        out[key] = _convert(value_node, key_path, doc, problems)
    return out


def _scalar(node: ScalarNode) -> Any:
    text: str = node.value
    tag = node.tag
    if tag == _YAML + "str":
        return text
    if tag == _PLAIN:
        if _NULL.fullmatch(text):
            return None
        if text in _BOOL:
            return _BOOL[text]
        if _DEC_INT.fullmatch(text) or _OCT_INT.fullmatch(text) or _HEX_INT.fullmatch(text):
            return _int(text)
        if _FLOAT.fullmatch(text) or _SPECIAL_FLOAT.fullmatch(text):
            return _float(text)
        return text
    if tag == _YAML + "null" and _NULL.fullmatch(text):
        return None
    if tag == _YAML + "bool" and text in _BOOL:
        return _BOOL[text]
    if tag == _YAML + "int" and (
        _DEC_INT.fullmatch(text) or _OCT_INT.fullmatch(text) or _HEX_INT.fullmatch(text)
    ):
        return _int(text)
    if tag == _YAML + "float" and (_FLOAT.fullmatch(text) or _SPECIAL_FLOAT.fullmatch(text)):
        return _float(text)
    if tag.startswith(_YAML) and tag[len(_YAML) :] in ("null", "bool", "int", "float"):
        raise ValueError(f"{text!r} is not a valid {tag[len(_YAML) :]}")
    raise ValueError(f"unsupported YAML tag {tag!r}")


def _int(text: str) -> int:
    # Checked before int(): a 100,000-digit literal would cost real CPU time.
    if len(text.lstrip("+-")) > 20:
        raise ValueError(f"integer {text[:24]}... is out of range (64-bit)")
    if text.startswith(("0o", "0x")):
        value = int(text[2:], 8 if text[1] == "o" else 16)
    else:
        value = int(text, 10)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise ValueError(f"integer {text} is out of range (64-bit)")
    return value


def _float(text: str) -> float:
    value = math.inf if _SPECIAL_FLOAT.fullmatch(text) else float(text)
    if math.isinf(value):  # 1e999 overflows to infinity too
        raise ValueError(f"number {text} is not allowed: JSON has no NaN or infinity")
    return value
