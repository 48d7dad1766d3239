"""Contexts: a hub URL, its CA and an operator token, stored once per user.

`fogline login` writes them to `$XDG_CONFIG_HOME/fogline/config.yaml`
(default `~/.config/fogline/config.yaml`; a `config.json` there is read as
well), like kubectl's contexts; every operator command uses the current
context for whatever `--hub`/`FOGLINE_HUB`, `--token`/`FOGLINE_TOKEN` and
`--ca`/`FOGLINE_CA` leave unset. The file holds tokens: it is written 0600
in a 0700 directory, and one that group or others may read is refused.

    current-context: plant7
    contexts:
      - name: plant7
        hub: https://hub.plant7.example:8443
        ca: /home/ops/plant7-ca.pem
        token: fga_...
        user: user:alice  # who the hub took the token for at login (fogline whoami)

Keys this version does not know are kept when the file is rewritten, so an
older `fogline` does not drop what a newer one stored.

ContextError (FoglineError)   the config file is unsafe or malformed, or names no such context
"""

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import orjson
import yaml

from fogline._durable import write_atomic
from fogline._errors import FoglineError

MAX_CONFIG_BYTES: Final = 256 * 1024
NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,62}")
_KNOWN: Final = frozenset({"name", "hub", "ca", "token", "user"})
_HEADER: Final = (
    "# fogline contexts (fogline login, fogline config use). It holds operator\n"
    "# tokens: keep it mode 0600 and out of backups you share.\n"
)


class ContextError(FoglineError):
    """The config file is unsafe or malformed, or has no such context."""


@dataclass(frozen=True, slots=True)
class Context:
    """One hub as an operator reaches it."""

    name: str
    hub: str
    ca: Path | None = None
    token: str | None = None
    user: str | None = None  # the principal the hub named at login: user:alice, admin
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "hub": self.hub}
        data["ca"] = str(self.ca) if self.ca is not None else None
        data["token"] = self.token
        data["user"] = self.user
        data.update(self.extra)
        return data


@dataclass(frozen=True, slots=True)
class ContextFile:
    path: Path
    contexts: tuple[Context, ...] = ()
    current: str | None = None

    def find(self, name: str) -> Context:
        """Raises: ContextError: no context of that name."""
        for context in self.contexts:
            if context.name == name:
                return context
        known = ", ".join(c.name for c in self.contexts) or "none; run `fogline login`"
        raise ContextError(f"no context {name!r} in {self.path} (contexts: {known})")

    def current_context(self) -> Context | None:
        if self.current is None:
            return None
        return next((c for c in self.contexts if c.name == self.current), None)

    def with_context(self, context: Context) -> "ContextFile":
        """This file with `context` added or replacing the one of its name, made current."""
        if any(c.name == context.name for c in self.contexts):
            contexts = tuple(context if c.name == context.name else c for c in self.contexts)
        else:
            contexts = (*self.contexts, context)
        return replace(self, contexts=contexts, current=context.name)

    def without(self, name: str) -> "ContextFile":
        self.find(name)
        current = None if self.current == name else self.current
        contexts = tuple(c for c in self.contexts if c.name != name)
        return replace(self, contexts=contexts, current=current)


def config_dir() -> Path:
    """`$XDG_CONFIG_HOME/fogline`, or `~/.config/fogline` (the XDG default)."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".config"
    return root / "fogline"


def config_path() -> Path:
    """The config file in use: config.yaml, or config.json when only that exists."""
    directory = config_dir()
    yaml_path, json_path = directory / "config.yaml", directory / "config.json"
    if not yaml_path.exists() and json_path.exists():
        return json_path
    return yaml_path


def _read_private(path: Path) -> bytes | None:
    """The file's bytes; None when it does not exist.

    Raises:
        ContextError: not a regular file, readable by group or others, too large.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ContextError(f"{path}: cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ContextError(f"{path}: not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise ContextError(
                f"{path}: mode {mode:04o} lets group or others read the tokens in it; "
                f"chmod 600 {path}"
            )
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ContextError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes")
    return data


def _text(entry: Mapping[str, Any], key: str, where: str, *, required: bool) -> str | None:
    value = entry.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ContextError(f"{where}.{key}: expected text, got {type(value).__name__}")
    return value.strip()


def _parse_context(entry: Any, where: str) -> Context:
    if not isinstance(entry, Mapping):
        raise ContextError(f"{where}: expected a mapping with name and hub")
    name = _text(entry, "name", where, required=True)
    hub = _text(entry, "hub", where, required=True)
    assert name is not None and hub is not None
    if not NAME_RE.fullmatch(name):
        raise ContextError(f"{where}.name: {name[:80]!r} is not a context name")
    ca = _text(entry, "ca", where, required=False)
    return Context(
        name=name,
        hub=hub,
        ca=Path(ca) if ca else None,
        token=_text(entry, "token", where, required=False),
        user=_text(entry, "user", where, required=False),
        extra={k: v for k, v in entry.items() if k not in _KNOWN},
    )


def load_contexts(path: Path | None = None) -> ContextFile:
    """The contexts stored in `path` (default: `config_path()`); none if it is absent.

    Raises:
        ContextError: the file is unsafe (see `_read_private`) or malformed.
    """
    path = path or config_path()
    data = _read_private(path)
    if data is None:
        return ContextFile(path)
    try:
        document = orjson.loads(data) if path.suffix == ".json" else yaml.safe_load(data)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        raise ContextError(f"{path}: not valid {path.suffix.lstrip('.')}: {exc}") from exc
    if document is None:
        return ContextFile(path)
    if not isinstance(document, Mapping):
        raise ContextError(f"{path}: expected a mapping with contexts and current-context")
    entries = document.get("contexts") or []
    if not isinstance(entries, Sequence) or isinstance(entries, str):
        raise ContextError(f"{path}: contexts: expected a list")
    contexts = tuple(_parse_context(e, f"{path}: contexts[{i}]") for i, e in enumerate(entries))
    current = document.get("current-context")
    if current is not None and not isinstance(current, str):
        raise ContextError(f"{path}: current-context: expected a context name")
    return ContextFile(path, contexts, current)


def save_contexts(contexts: ContextFile) -> None:
    """Write the file atomically: 0600, in a 0700 directory.

    Raises:
        ContextError: the file cannot be written.
    """
    path = contexts.path
    document = {
        "current-context": contexts.current,
        "contexts": [c.to_data() for c in contexts.contexts],
    }
    if path.suffix == ".json":
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
    else:
        data = (_HEADER + yaml.safe_dump(document, sort_keys=False)).encode()
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)  # tokens live here: owner only, even if it existed
        write_atomic(path, data, mode=0o600)
    except OSError as exc:
        raise ContextError(f"{path}: cannot write: {exc.strerror or exc}") from exc


@dataclass(frozen=True, slots=True)
class Connection:
    """Where an operator command goes, and what it came from."""

    hub: str | None
    token: str | None
    ca: Path | None
    context: str | None  # the context that filled something in, if any


def _same_hub(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def resolve_connection(
    hub: str | None, token: str | None, ca: Path | None, contexts: ContextFile
) -> Connection:
    """Options and environment first; the current context fills in the rest.

    A context's token and CA go only to that context's own hub: with
    `--hub`/`FOGLINE_HUB` naming another hub, the context is not used at all,
    so its token is never sent to a hub it was not issued by.
    """
    context = contexts.current_context()
    if context is None or (hub and not _same_hub(hub, context.hub)):
        return Connection(hub or None, token or None, ca, None)
    used = not hub or not token or ca is None
    return Connection(
        hub or context.hub,
        token or context.token,
        ca if ca is not None else context.ca,
        context.name if used else None,
    )
