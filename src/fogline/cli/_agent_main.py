"""The agent's process: what `fogline agent run` becomes once its options are parsed.

The agent runs for months on small nodes, and everything in its process
stays resident (BENCHMARKS.md, "Agent idle RSS"). `fogline agent run` parses
its options with Typer and checks what the standard library can
(`check_options`), then replaces itself (`exec`, same pid)
with `python -m fogline.cli._agent_main`, which runs the agent without the
command line's libraries: Typer, Rich, Pygments and the CLI's own modules
(about 6 MB with httpx's CLI, see `fogline.cli.skip_httpx_cli`). The options travel
in FOGLINE_AGENT_OPTIONS (JSON, no secret: the claim stays in FOGLINE_CLAIM
or its file, the broker password in its file); the exec'd program removes
the variable, checks every option (`agent_config`: labels, the module
user, the MQTT URL and files too; a refusal is worded as Click words a usage
error, exit 2) and runs the agent. Signals: SIGTERM and SIGINT are blocked
across the exec and until the agent's handlers are installed, so a stop sent
while it starts is a clean stop (exit 0).

This module is also imported by `fogline.cli._agent` for `--help`: at module
level it imports the standard library and fogline's base only.
"""

import asyncio
import importlib
import logging
import os
import sys
import types
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from fogline._errors import FoglineError
from fogline._log import configure_logging
from fogline._reexec import STOP_SIGNALS, unblock_stop_signals
from fogline._text import visible
from fogline.cli import skip_httpx_cli

from ._options import ExecOptionsError, exec_with_options, options_from_env
from ._options import OptionError as OptionError
from ._options import usage_error as usage_of

if TYPE_CHECKING:
    from fogline.agent import Agent, AgentConfig

log = logging.getLogger("fogline.agent")

OPTIONS_ENV: Final = "FOGLINE_AGENT_OPTIONS"

# pydantic's own switch for its plugins, and the values with which it loads none.
PYDANTIC_PLUGINS_ENV: Final = "PYDANTIC_DISABLE_PLUGINS"
_NO_PLUGINS: Final = ("__all__", "1", "true")
_PLUGIN_LOADER: Final = "pydantic.plugin._loader"


@dataclass(frozen=True)
class AgentOptions:
    """`fogline agent run`'s options as given (paths as given, relative ones too)."""

    hub: str
    ca: Path
    data_dir: Path
    claim_file: Path | None = None
    name: str | None = None
    labels: str = ""
    local_host: str = "127.0.0.1"
    local_port: int = 9271
    mqtt: str | None = None
    mqtt_protocol: str = "3.1.1"
    mqtt_ca: Path | None = None
    mqtt_cert: Path | None = None
    mqtt_key: Path | None = None
    mqtt_username: str | None = None
    mqtt_password_file: Path | None = None
    sensor_password_file: Path | None = None
    sensor_acl_file: Path | None = None
    broker_pid_file: Path | None = None
    outbox_max_mb: int = 256
    drift_interval: float = 30.0
    module_user: str | None = None
    renew_keep_key: bool = False
    log_level: str = "info"
    log_format: str | None = None


def check_options(options: AgentOptions) -> None:
    """The checks of `agent_config` that need the standard library alone.

    `fogline agent run` calls this before its exec: importing the agent's
    package to check the rest cost about 0.45 s of CPU at every start, and
    the exec'd program checks everything again (`agent_config`) anyway.

    Raises:
        OptionError: an option is wrong (named by its flag).
    """
    if os.environ.get("FOGLINE_CLAIM", "").strip() and options.claim_file is not None:
        raise OptionError(
            "--claim-file", "give the claim once: --claim-file or FOGLINE_CLAIM, not both"
        )
    if not options.ca.is_file():
        raise OptionError("--ca", f"{options.ca}: file not found")
    if options.mqtt:
        if options.mqtt_protocol not in ("3.1.1", "5"):
            raise OptionError("--mqtt-protocol", "must be 3.1.1 or 5")
        if options.mqtt_password_file is not None and not options.mqtt_username:
            raise OptionError("--mqtt-password-file", "needs --mqtt-username")
    elif any(
        (
            options.mqtt_ca,
            options.mqtt_cert,
            options.mqtt_key,
            options.mqtt_username,
            options.sensor_password_file,
            options.sensor_acl_file,
        )
    ):
        raise OptionError("--mqtt", "the MQTT options need --mqtt URL")


def agent_config(options: AgentOptions) -> "AgentConfig":
    """The agent's configuration from its options, each checked.

    Raises:
        OptionError: an option is wrong (named by its flag).
    """
    from fogline.agent import AgentConfig
    from fogline.agent.dataplane import MqttSettings
    from fogline.agent.supervisor import resolve_module_user
    from fogline.protocol import parse_labels
    from fogline.security import TokenFileError, read_token_file

    check_options(options)
    claim = os.environ.get("FOGLINE_CLAIM", "").strip() or None
    try:
        labels = parse_labels(options.labels)
    except ValueError as exc:
        raise OptionError("--labels", str(exc)) from None
    try:
        modules_as = resolve_module_user(options.module_user)
    except ValueError as exc:
        raise OptionError("--module-user", str(exc)) from None
    mqtt_settings = None
    if options.mqtt:
        password = None
        if options.mqtt_password_file is not None:
            try:
                password = read_token_file(options.mqtt_password_file)
            except TokenFileError as exc:
                raise OptionError("--mqtt-password-file", str(exc)) from None
        mqtt_settings = MqttSettings(
            url=options.mqtt,
            protocol=5 if options.mqtt_protocol == "5" else 4,
            client_id=f"fogline-{options.name or 'agent'}",
            username=options.mqtt_username,
            password=password,
            ca_file=options.mqtt_ca,
            cert_file=options.mqtt_cert,
            key_file=options.mqtt_key,
            sensor_password_file=options.sensor_password_file,
            sensor_acl_file=options.sensor_acl_file,
            broker_pid_file=options.broker_pid_file,
        )
        try:
            mqtt_settings.check()  # the URL and the TLS files, before starting
        except ValueError as exc:
            raise OptionError("--mqtt", str(exc)) from None
    return AgentConfig(
        hub_url=options.hub,
        ca_path=options.ca,
        data_dir=options.data_dir,
        claim=claim,
        claim_file=options.claim_file,
        name=options.name,
        labels=labels,
        local_host=options.local_host,
        local_port=options.local_port,
        mqtt=mqtt_settings,
        outbox_max_bytes=options.outbox_max_mb * 1024 * 1024,
        drift_interval_s=options.drift_interval,
        module_user=modules_as,
        renew_new_key=not options.renew_keep_key,
    )


def usage_error(exc: OptionError) -> str:
    """`exc` as Click words a usage error of `fogline agent run`."""
    return usage_of("fogline agent run", exc)


def exec_agent(options: AgentOptions, shown: list[str]) -> None:
    """Replace this process by `python -m fogline.cli._agent_main` running the
    agent with `options`; returns only if the exec failed (then run in process).

    `shown` follows the module's name on the new command line, for `ps`
    (the options as given: never a secret, see `fogline agent run`).
    """
    module = __spec__.name if __spec__ else __name__
    exec_with_options(module, shown, OPTIONS_ENV, options, log)


async def _run_until_signalled(agent: "Agent") -> None:
    """Run the agent; SIGTERM or SIGINT stops it cleanly (exit code 0)."""
    current = asyncio.current_task()
    agent_task = asyncio.create_task(agent.run(), name="agent")
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, agent_task.cancel)
    # Blocked across the exec (exec_agent): delivered now, to the handlers,
    # before the agent starts anything (a child would inherit the mask).
    unblock_stop_signals()
    try:
        await agent_task
    except asyncio.CancelledError:
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves: not ours to swallow
        # else: the agent task was cancelled by a signal, a requested stop


def run_agent(config: "AgentConfig") -> None:
    """Run the agent until SIGTERM or SIGINT."""
    from fogline.agent import Agent

    # Everything the agent writes is its own (identity, desired state with
    # every module's config, outbox) unless it opens a path on purpose.
    os.umask(0o077)
    asyncio.run(_run_until_signalled(Agent(config)))


def _no_plugins() -> Iterable[object]:
    return ()


def skip_pydantic_plugins() -> bool:
    """Keep pydantic's plugin loader, and `importlib.metadata` with it, out of
    the agent's process, unless its environment asks for plugins; True if kept out.

    At the first model it builds, pydantic imports `pydantic.plugin._loader`,
    which imports `importlib.metadata` (with `zipfile`, `csv` and
    `importlib.resources`) to look up plugins among the installed
    distributions' entry points: 1.1 MB resident in the agent, which uses
    none (BENCHMARKS.md, "Agent idle RSS"). With PYDANTIC_DISABLE_PLUGINS
    unset, or set to one of the values with which pydantic loads no plugin
    (`__all__`, `1`, `true`), the loader is a stand-in whose `get_plugins`
    gives none, as pydantic's own would with that setting. Any other value
    (plugin names to leave out, or empty) is pydantic's to read: its loader
    runs as pydantic documents. The environment is left as it was. Done only
    before pydantic's loader is first imported.
    """
    if os.environ.get(PYDANTIC_PLUGINS_ENV, "__all__") not in _NO_PLUGINS:
        return False
    if _PLUGIN_LOADER in sys.modules:
        return getattr(sys.modules[_PLUGIN_LOADER], "get_plugins", None) is _no_plugins
    loader = types.ModuleType(_PLUGIN_LOADER, "No pydantic plugins: see fogline.cli._agent_main.")
    loader.get_plugins = _no_plugins  # type: ignore[attr-defined]
    loader.__getattr__ = _real_plugin_loader_attr  # type: ignore[method-assign]
    sys.modules[_PLUGIN_LOADER] = loader
    return True


def _real_plugin_loader_attr(name: str) -> object:
    """Anything of the loader but `get_plugins` (a pydantic newer than this
    code asking it for more): the real loader is imported and answers, so a
    change in pydantic costs the memory back, never a failed import."""
    if name.startswith("__"):  # the import system's probes: not a real need
        raise AttributeError(name)
    sys.modules.pop(_PLUGIN_LOADER, None)
    return getattr(importlib.import_module(_PLUGIN_LOADER), name)


class _Deferred(types.ModuleType):
    """Stands in for a module until something asks it for a name: then the
    module is imported (replacing this in sys.modules) and answers."""

    def __getattr__(self, name: str) -> object:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), name)


def defer_idna() -> bool:
    """Import idna (its tables: 0.2-0.3 MB resident) when first used, not
    when httpx is imported; True if deferred.

    httpx imports idna at module level and calls it only for a host name
    that is not ASCII (or starts with `xn--`); the hub, the modules' health
    and metrics endpoints the agent calls are ASCII names or addresses
    (BENCHMARKS.md, "Agent idle RSS"). Its first use imports it as before.
    Done only before anything imports idna.
    """
    if "idna" in sys.modules:
        return isinstance(sys.modules["idna"], _Deferred)
    sys.modules["idna"] = _Deferred("idna")
    return True


def main() -> int:
    """`python -m fogline.cli._agent_main ...`, run by `exec_agent` only."""
    skip_httpx_cli()  # before anything imports httpx
    skip_pydantic_plugins()  # before pydantic builds a model
    defer_idna()  # before httpx is imported
    try:
        options = options_from_env(AgentOptions, OPTIONS_ENV, "the agent with `fogline agent run`")
    except ExecOptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(options.log_level, options.log_format)
    try:
        run_agent(agent_config(options))
    except OptionError as exc:  # one `fogline agent run` left to this check, or changed since
        print(usage_error(exc), file=sys.stderr)
        return 2
    except FoglineError as exc:
        print(f"error: {visible(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
