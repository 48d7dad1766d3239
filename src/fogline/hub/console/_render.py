"""Pages from the package's Jinja2 templates, with the console's headers.

Templates autoescape everything; only `Markup` (the SVG charts, built from
escaped parts in _svg.py) goes in as is. Each page forbids framing, inline
script and every origin but the hub's (Content-Security-Policy), and is not
cached: it shows one person's view of the fleet.
"""

import datetime as dt
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fastapi.responses import HTMLResponse

from fogline import __version__
from fogline.security import Permission

if TYPE_CHECKING:
    import jinja2

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
SECURITY_HEADERS: Final = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def _when(value: dt.datetime | str | None) -> str:
    if value is None:
        return "never"
    if isinstance(value, str):
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
        return parsed.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _size(value: int | float | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


@functools.cache
def environment() -> "jinja2.Environment":
    # Jinja2 on the first page an operator opens: a hub serving devices only
    # never loads it (about 2 MB resident per process).
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["size"] = _size
    env.globals["version"] = __version__
    env.globals["permissions"] = Permission
    return env


def render_text(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    return HTMLResponse(
        render_text(template, **context), status_code=status, headers=SECURITY_HEADERS
    )
