"""Imports flow downward only (docs/architecture.md, Layout).

    base      fogline itself: _errors, _log, _lifetime, _text, _durable, _duration, _size,
              _statetable, _lazy, _malloc, _reexec, _hub_parent (the program a multi-worker hub's
              parent becomes: it must import no daemon)
    core      protocol, manifest, security, artifact, tuf, pipeline, hubclient, launcher: base and
              core only (the launcher imports base alone: it must be hard to break)
    daemons   hub, agent: base, core and their own package; never each other
    edges     sim, cli (and __main__): anything

Every import in every module counts, lazy and TYPE_CHECKING ones included:
a layer broken only inside a function is still broken.
"""

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

SRC: Final = Path(__file__).parents[1] / "src"
BASE: Final = "base"
BASE_MODULES: Final = frozenset(
    {
        "_errors",
        "_log",
        "_lifetime",
        "_text",
        "_durable",
        "_duration",
        "_size",
        "_statetable",
        "_lazy",
        "_malloc",
        "_hub_parent",
        "_reexec",
        "__init__",
    }
)
CORE: Final = frozenset(
    {
        "protocol",
        "manifest",
        "security",
        "artifact",
        "tuf",
        "vulns",
        "pipeline",
        "hubclient",
        "launcher",
    }
)
EDGES: Final = frozenset({"sim", "cli", "__main__"})
DAEMONS: Final = frozenset({"hub", "agent"})


def _part(module: str) -> str:
    """The part of fogline a dotted module name belongs to (`base` for fogline's own modules)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in BASE_MODULES:
        return BASE
    return parts[1]


def _allowed(importer: str) -> frozenset[str] | None:
    """The parts `importer` may import; None: anything."""
    if importer in EDGES:
        return None
    if importer == BASE:
        return frozenset({BASE})
    if importer in CORE:
        return CORE | {BASE}
    assert importer in DAEMONS, f"{importer} is in no layer: add it to this test"
    return frozenset({BASE, *CORE, importer})


def _module_name(path: Path, src: Path) -> str:
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, src: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in `path`, relative ones resolved."""
    module = _module_name(path, src)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "fogline":  # `from fogline import x` / `from .. import x`
                for alias in node.names:
                    where = src / "fogline" / alias.name
                    is_module = where.is_dir() or where.with_suffix(".py").is_file()
                    yield node.lineno, f"fogline.{alias.name}" if is_module else "fogline"
            else:
                yield node.lineno, target


def _violations(src: Path) -> list[str]:
    """Every import in src/fogline that goes up or sideways, as `file:line: what`."""
    found = []
    for path in sorted((src / "fogline").rglob("*.py")):
        importer = _part(_module_name(path, src))
        allowed = _allowed(importer)
        for line, target in _imports(path, src):
            if allowed is None or not (target == "fogline" or target.startswith("fogline.")):
                continue
            if _part(target) not in allowed:
                found.append(f"{path.relative_to(src)}:{line}: {importer} imports {target}")
    return found


def test_imports_flow_downward_only() -> None:
    assert _violations(SRC) == []


@pytest.mark.parametrize(
    ("where", "line", "expected"),
    [
        ("hub/_x.py", "from fogline.agent import Agent", "hub imports fogline.agent"),
        ("agent/_x.py", "from ..hub import create_app", "agent imports fogline.hub"),
        ("pipeline/expr/_x.py", "import fogline.hub._app", "pipeline imports fogline.hub._app"),
        ("protocol/_x.py", "from fogline import cli", "protocol imports fogline.cli"),
        ("_log.py", "from .manifest import Selector", "base imports fogline.manifest"),
        ("manifest/_x.py", "def f():\n    from fogline.sim import rehearse", "manifest imports"),
    ],
)
def test_the_walk_finds_an_upward_import(
    tmp_path: Path, where: str, line: str, expected: str
) -> None:
    for package in ("cli", "hub", "agent", "sim", "manifest"):
        (tmp_path / "fogline" / package).mkdir(parents=True)
        (tmp_path / "fogline" / package / "__init__.py").write_text("")
    path = tmp_path / "fogline" / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(line + "\n")
    found = _violations(tmp_path)
    assert len(found) == 1 and expected in found[0], found


def test_edges_and_own_package_imports_are_allowed(tmp_path: Path) -> None:
    for where, line in [
        ("cli/_x.py", "from fogline.hub import create_app\nfrom fogline.agent import Agent"),
        ("sim/_x.py", "from fogline.agent.modules import ModuleManager"),
        ("hub/routes/_x.py", "from .._auth import x\nfrom ...protocol import Report"),
        ("pipeline/_x.py", "from .._errors import FoglineError"),
    ]:
        path = tmp_path / "fogline" / where
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(line + "\n")
    assert _violations(tmp_path) == []


def _private_agent_imports(src: Path) -> list[str]:
    """Every import in fogline.sim of a private module of fogline.agent
    (`fogline.agent._x`, `fogline.agent.<sub>._x`, `from fogline.agent import _x`)."""
    found = []
    for path in sorted((src / "fogline" / "sim").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        names = {
            (node.lineno, f"{node.module}.{alias.name}")
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and not node.level
            for alias in node.names
        }
        bad: dict[int, str] = {}  # one finding per import statement
        for line, target in sorted([*_imports(path, src), *names]):
            parts = target.split(".")
            if parts[:2] == ["fogline", "agent"] and any(p.startswith("_") for p in parts[2:]):
                bad.setdefault(line, target)
        found += [f"{path.relative_to(src)}:{line}: {target}" for line, target in bad.items()]
    return found


def test_the_simulator_uses_only_the_agents_public_names() -> None:
    # The simulator drives the agent through its public seam (NodeParts and
    # the packages' __all__): a private import would let the two drift apart.
    assert _private_agent_imports(SRC) == []


@pytest.mark.parametrize(
    "line",
    [
        "from fogline.agent._hublink import HubLink",
        "from fogline.agent.updater._verify import verify_release",
        "import fogline.agent._sync",
        "from fogline.agent import _agent",
        "from ..agent._sync import SyncLoop",
    ],
)
def test_a_private_agent_import_in_the_simulator_is_found(tmp_path: Path, line: str) -> None:
    path = tmp_path / "fogline" / "sim" / "_x.py"
    path.parent.mkdir(parents=True)
    path.write_text(line + "\n")
    assert len(_private_agent_imports(tmp_path)) == 1


def test_public_agent_imports_in_the_simulator_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "fogline" / "sim" / "_x.py"
    path.parent.mkdir(parents=True)
    path.write_text(
        "from fogline.agent import NodeParts\nfrom fogline.agent.updater import Updater\n"
        "from ._faults import Faults\n"
    )
    assert _private_agent_imports(tmp_path) == []
