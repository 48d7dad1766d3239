"""Names a package exports but imports only when first used (PEP 562).

For what the agent, which runs for months on small nodes, needs only now
and then (an update's archive, signature and TUF code) or never (release
building and SBOMs): each unused import costs it resident memory for good.
"""

import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` for `package` that imports `name` from its
    submodule `where[name]` (relative, e.g. `._build`) on first use and keeps it.

    Raises (the returned function):
        AttributeError: `name` is not one of `where`'s.
    """

    def __getattr__(name: str) -> Any:
        submodule = where.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        # The import statement's machinery, not importlib.import_module: only
        # it is seen by `python -X importtime`, which is how this is checked.
        module = __import__(package + submodule, fromlist=[name])
        value = getattr(module, name)
        setattr(sys.modules[package], name, value)  # once: later lookups skip this
        return value

    return __getattr__
