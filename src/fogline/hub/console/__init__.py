"""The operator console: server-rendered pages at /console on the hub's TLS port.

    _session  the session cookie, CSRF, the role of who is looking
    _routes   install_console: the page modules' routers, refusals as pages
    _entry, _device_pages, _fleet_pages   the pages and their forms
    _live     live sections (server-sent events)
    _deps     the routes' shared router and parameters
    _render   Jinja2 templates (templates/) and the pages' security headers
    _svg      line charts as SVG, drawn by the hub

Static files (static/) and templates ship in the wheel: `pip install` gives
a working console, without a front-end build.
"""

from ._routes import install_console

__all__ = ["install_console"]
