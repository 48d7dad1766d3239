"""Fenced code blocks of the Markdown pages, and the check each one gets.

A YAML block is checked as what it is. By default it holds whole manifest
documents; anything else says so with an HTML comment on the line right
before its fence, which readers of the rendered page do not see:

    <!-- doc-check: spec -->
    ```yaml
    modules: [...]
    ```

Kinds: `spec` (the body of a Deployment's spec), `deployment` (a Deployment
without its apiVersion, kind and metadata, e.g. `spec: {rollout: ...}`),
`pipeline` (one entry of `spec.pipelines`), `output` (one entry of a
pipeline's `outputs`), `module-file` (a `fogline-module.yaml`).

Shell blocks (and plain blocks, which show commands too) are read line by
line for `fogline ...` commands, as a shell would split them: pipes,
`$(...)`, `&`, redirections and `VAR=value` prefixes. Usage notation is
understood: `[--opt VALUE]` is optional, `pause|resume` are alternatives.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import typer
import yaml

ROOT: Final = Path(__file__).resolve().parents[2]
_FENCE: Final = re.compile(r"^```(\S*)\s*$")
_MARKER: Final = re.compile(r"^<!--\s*doc-check:\s*([a-z][a-z-]*)\s*-->\s*$")
YAML_KINDS: Final = ("spec", "deployment", "pipeline", "output", "module-file")
SHELL_LANGS: Final = ("sh", "bash", "shell", "console", "")
_SUBSHELL: Final = re.compile(r"\$\(([^()]*)\)")
_SEPARATORS: Final = frozenset({"|", "||", "&&", ";", "&"})
_REDIRECT: Final = re.compile(r"^\d*(>>?|<)(&\d+)?$")
_ASSIGNMENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_DEPLOYMENT_HEADER: Final = (
    "apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata: {name: doc-fragment}\n"
)


def doc_pages() -> list[Path]:
    """Every page the doc test covers: README.md, docs/*.md, examples/README.md."""
    return [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        ROOT / "examples" / "README.md",
    ]


@dataclass(frozen=True, slots=True)
class DocBlock:
    page: Path
    line: int  # of the opening fence, from 1
    lang: str  # "" for a plain ``` block
    kind: str | None  # what the doc-check marker says it is; None: no marker
    text: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page.name}:{self.line}"

    @property
    def is_yaml(self) -> bool:
        return self.lang in ("yaml", "yml")


def doc_blocks(page: Path) -> list[DocBlock]:
    """Every fenced block of `page`, in order.

    Raises:
        AssertionError: a fence is never closed, or a marker is not followed by a block.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[DocBlock] = []
    i = 0
    while i < len(lines):
        marker = _MARKER.match(lines[i])
        if marker and not (i + 1 < len(lines) and _FENCE.match(lines[i + 1])):
            raise AssertionError(f"{page.name}:{i + 1}: a doc-check marker must precede a fence")
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{page.name}:{i + 1}: the code block is never closed")
        previous = _MARKER.match(lines[i - 1]) if i > 0 else None
        blocks.append(
            DocBlock(
                page=page,
                line=i + 1,
                lang=opening.group(1),
                kind=previous.group(1) if previous else None,
                text="\n".join(lines[i + 1 : end]) + "\n",
            )
        )
        i = end + 1
    return blocks


# -- YAML --------------------------------------------------------------------------


def _mapping(block: DocBlock) -> dict[str, Any]:
    fragment = yaml.safe_load(block.text)
    assert isinstance(fragment, dict), f"{block.where}: a {block.kind} fragment must be a mapping"
    return fragment


def as_manifest(block: DocBlock) -> str:
    """The block as manifest text: a fragment is wrapped into the document it belongs to.

    Raises:
        AssertionError: an unknown kind, or a fragment that is not a mapping.
    """
    if block.kind is None:
        return block.text
    if block.kind == "spec":
        selector = "" if "selector" in _mapping(block) else "  selector: {}\n"
        return _DEPLOYMENT_HEADER + "spec:\n" + selector + textwrap.indent(block.text, "  ")
    if block.kind == "deployment":
        spec = _mapping(block).get("spec")
        assert isinstance(spec, dict), f"{block.where}: a deployment fragment has a spec: mapping"
        text = _DEPLOYMENT_HEADER + block.text
        return text if "selector" in spec else text.replace("spec:\n", "spec:\n  selector: {}\n", 1)
    if block.kind == "pipeline":
        _mapping(block)
        entry = textwrap.indent(block.text, "      ").replace("      ", "    - ", 1)
        return _DEPLOYMENT_HEADER + "spec:\n  selector: {}\n  pipelines:\n" + entry
    if block.kind == "output":
        _mapping(block)
        entry = textwrap.indent(block.text, "          ").replace("          ", "        - ", 1)
        return (
            _DEPLOYMENT_HEADER
            + "spec:\n  selector: {}\n  pipelines:\n    - name: doc-fragment\n"
            + "      source: {http: {}}\n      outputs:\n"
            + entry
        )
    raise AssertionError(
        f"{block.where}: unknown doc-check kind {block.kind!r} (known: {', '.join(YAML_KINDS)})"
    )


# -- shell ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DocCommand:
    block: DocBlock
    line: int  # in the page, from 1
    argv: tuple[str, ...]  # starting with "fogline"

    @property
    def where(self) -> str:
        return f"{self.block.where.rsplit(':', 1)[0]}:{self.line}"

    def __str__(self) -> str:
        return " ".join(self.argv)


def _logical_lines(block: DocBlock) -> Iterator[tuple[int, str]]:
    """Lines with `\\` continuations joined, numbered by the page line they start on."""
    pending, start = "", 0
    for offset, line in enumerate(block.text.splitlines(), start=block.line + 1):
        if not pending:
            start = offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _segments(line: str) -> Iterator[list[str]]:
    """The simple commands of one shell line, each as its words (redirections dropped)."""
    inner = [match.group(1) for match in _SUBSHELL.finditer(line)]
    for text in [_SUBSHELL.sub("VALUE", line), *inner]:
        try:
            words = shlex.split(text, comments=True)
        except ValueError:
            continue  # not shell (an output sample with a stray quote)
        current: list[str] = []
        skip_next = False
        for word in words:
            if skip_next:
                skip_next = False
                continue
            if word in _SEPARATORS:
                yield current
                current = []
            elif _REDIRECT.match(word):
                skip_next = not word.endswith(("&1", "&2"))  # `> file` takes the next word
            elif re.match(r"^\d*(>>?|<)\S", word):
                continue  # `>file`, `2>/dev/null`
            else:
                current.append(word)
        yield current


def fogline_commands(block: DocBlock) -> list[DocCommand]:
    """The `fogline ...` commands a shell or plain block shows."""
    if block.lang not in SHELL_LANGS:
        return []
    found = []
    for line, text in _logical_lines(block):
        for words in _segments(text):
            while words and (_ASSIGNMENT.match(words[0]) or words[0] in ("export", "sudo")):
                words = words[1:]
            if words and words[0] == "fogline":
                found.append(DocCommand(block, line, tuple(words)))
    return found


def _root_command() -> Any:
    """The CLI's command tree, as `--help` shows it (typer's own click)."""
    from fogline.cli import app

    return typer.main.get_command(app)


def _is_group(command: Any) -> bool:
    return hasattr(command, "list_commands") and hasattr(command, "get_command")


def _unbracketed(word: str) -> str:
    return word.lstrip("[").rstrip("]")


def _check_options(command: Any, words: Sequence[str], path: str) -> list[str]:
    """Problems with the options in `words` (everything after the command path)."""
    options = {
        name: param for param in command.params for name in (*param.opts, *param.secondary_opts)
    }
    problems, i = [], 0
    while i < len(words):
        word = _unbracketed(words[i])
        i += 1
        if word == "--":
            break  # what follows is another command's (`launcher run -- agent run ...`)
        if not word.startswith("-") or word == "-":
            continue  # an argument, a value, a placeholder
        name = word.split("=", 1)[0]
        if name == "--help":
            continue
        param = options.get(name)
        if param is None:
            known = ", ".join(sorted(o for o in options if o.startswith("--")))
            problems.append(f"`{path}` has no option {name} (it has: {known})")
            continue
        is_option = param.param_type_name == "option"
        if is_option and not (param.is_flag or param.count) and "=" not in word:
            i += 1  # its value, whatever it looks like
    return problems


def check_command(command: DocCommand) -> list[str]:
    """What is wrong with a documented command: an unknown command or option ([] if none).

    `pause|resume` in a command's place is checked as each alternative.
    """
    todo: list[tuple[Any, str, list[str]]] = [(_root_command(), "fogline", list(command.argv[1:]))]
    problems: list[str] = []
    while todo:
        current, path, words = todo.pop()
        if not _is_group(current):
            problems += _check_options(current, words, path)
            continue
        while words and _unbracketed(words[0]).startswith("-"):
            # A group's own options (fogline --version) come before its subcommand.
            problems += _check_options(current, [words[0]], path)
            words = words[1:]
        if not words:
            continue  # a group alone prints its help
        context = typer.Context(current)
        for name in _unbracketed(words[0]).split("|"):
            sub = current.get_command(context, name)
            if sub is None:
                known = ", ".join(current.list_commands(context))
                problems.append(f"`{path}` has no command {name} (it has: {known})")
            else:
                todo.append((sub, f"{path} {name}", words[1:]))
    return problems
