"""`pip install` gives a working console: every template and static file of
fogline.hub.console matches pyproject.toml's package-data (a wheel built
from this tree was checked to hold them; this keeps the globs in step)."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "fogline"


def test_every_console_file_that_is_not_python_is_package_data() -> None:
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["fogline"]
    console = PACKAGE / "hub" / "console"
    files = [
        path.relative_to(PACKAGE).as_posix()
        for path in console.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert any(name.endswith(".html") for name in files) and any(
        name.endswith(".js") for name in files
    )
    missing = [name for name in files if not any(fnmatch.fnmatch(name, g) for g in globs)]
    assert not missing, f"not in package-data: {missing}"
