"""`fogline agent ...`: run the edge node."""

import asyncio
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fogline._log import configure_logging

from ._common import ClaimFileOpt, LogFormatOpt, claim_from_env

if TYPE_CHECKING:
    from fogline.agent import Agent

app = typer.Typer(help="Run the edge agent (one per node).", no_args_is_help=True)


async def _run_until_signalled(agent: "Agent") -> None:
    """Run the agent; SIGTERM or SIGINT stops it cleanly (exit code 0)."""
    current = asyncio.current_task()
    agent_task = asyncio.create_task(agent.run(), name="agent")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent_task.cancel)
    try:
        await agent_task
    except asyncio.CancelledError:
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves: not ours to swallow
        # else: the agent task was cancelled by a signal, a requested stop
        return


@app.command("run")
def run(
    hub: Annotated[str, typer.Option("--hub", envvar="FOGLINE_HUB", help="Hub URL.")],
    ca: Annotated[
        Path,
        typer.Option(
            "--ca",
            envvar="FOGLINE_CA",
            help="The fleet CA certificate to trust for the first enrollment.",
        ),
    ],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", help="The node's state: identity, desired state, outbox.")
    ],
    claim_file: ClaimFileOpt = None,
    name: Annotated[str | None, typer.Option(help="Device name (default: the hostname).")] = None,
    labels: Annotated[str, typer.Option(help="Labels the node asks for: k=v,k2=v2.")] = "",
    local_host: Annotated[
        str, typer.Option(help="Address of the local /healthz, /metrics endpoint.")
    ] = "127.0.0.1",
    local_port: Annotated[
        int,
        typer.Option(
            help="Port of the local endpoint (0: any free port, written to DATA_DIR/local-port)."
        ),
    ] = 9271,
    mqtt: Annotated[
        str | None,
        typer.Option(
            "--mqtt",
            envvar="FOGLINE_MQTT",
            help="The node's MQTT broker, e.g. mqtt://127.0.0.1:1883 "
            "(for pipelines with MQTT sources or actions).",
        ),
    ] = None,
    mqtt_protocol: Annotated[str, typer.Option(help="MQTT protocol: 3.1.1 or 5.")] = "3.1.1",
    mqtt_ca: Annotated[
        Path | None,
        typer.Option(help="mqtts://: the CA that signed the broker's certificate."),
    ] = None,
    mqtt_cert: Annotated[
        Path | None, typer.Option(help="mqtts://: the agent's client certificate (PEM).")
    ] = None,
    mqtt_key: Annotated[
        Path | None, typer.Option(help="mqtts://: the key of --mqtt-cert (PEM).")
    ] = None,
    mqtt_username: Annotated[
        str | None, typer.Option(help="The agent's user name on the broker.")
    ] = None,
    mqtt_password_file: Annotated[
        Path | None,
        typer.Option(help="A file (mode 0600) holding the agent's password on the broker."),
    ] = None,
    sensor_password_file: Annotated[
        Path | None,
        typer.Option(
            help="The broker's password_file: the agent writes the sensor accounts the "
            "deployment declares (spec.sensors.mqtt.users) and its own account into it."
        ),
    ] = None,
    sensor_acl_file: Annotated[
        Path | None,
        typer.Option(
            help="The broker's acl_file: the agent writes where each sensor may publish "
            "(spec.sensors.mqtt.users[].publish, default sensors/USERNAME/#)."
        ),
    ] = None,
    broker_pid_file: Annotated[
        Path | None,
        typer.Option(
            help="The broker's pid_file: sent SIGHUP when --sensor-password-file changes."
        ),
    ] = None,
    outbox_max_mb: Annotated[
        int, typer.Option(min=1, help="Disk quota of the store-and-forward outbox, MiB.")
    ] = 256,
    drift_interval: Annotated[
        float, typer.Option(min=0.5, help="Seconds between drift checks.")
    ] = 30.0,
    module_user: Annotated[
        str | None,
        typer.Option(
            "--module-user",
            help="The user modules run as (name or uid). Default: nobody when the agent "
            "runs as root, else the agent's own user, which gives modules no isolation "
            "from the agent (they can read its private key).",
            show_default=False,
        ),
    ] = None,
    renew_keep_key: Annotated[
        bool,
        typer.Option(
            help="Renew the certificate for the same key (default: a new key at each renewal)."
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    log_format: LogFormatOpt = None,
) -> None:
    """Run the agent: enroll on first start, then report to the hub forever.

    The agent keeps running while the hub is unreachable, retrying with
    exponential backoff and jitter. The claim for the first start comes
    from FOGLINE_CLAIM or --claim-file, never the command line (every user
    on the machine can read a command line).
    """
    from fogline.protocol import parse_labels

    claim = claim_from_env(claim_file)
    try:
        parsed = parse_labels(labels)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--labels") from None
    if not ca.is_file():
        raise typer.BadParameter(f"{ca}: file not found", param_hint="--ca")
    configure_logging(log_level, log_format)
    # Imported here: operator commands should not pay for the agent's imports.
    from fogline.agent import Agent, AgentConfig
    from fogline.agent.dataplane import MqttSettings
    from fogline.agent.supervisor import resolve_module_user
    from fogline.security import TokenFileError, read_token_file

    try:
        modules_as = resolve_module_user(module_user)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--module-user") from None

    mqtt_settings = None
    if mqtt:
        if mqtt_protocol not in ("3.1.1", "5"):
            raise typer.BadParameter("must be 3.1.1 or 5", param_hint="--mqtt-protocol")
        password = None
        if mqtt_password_file is not None:
            if not mqtt_username:
                raise typer.BadParameter("needs --mqtt-username", param_hint="--mqtt-password-file")
            try:
                password = read_token_file(mqtt_password_file)
            except TokenFileError as exc:
                raise typer.BadParameter(str(exc), param_hint="--mqtt-password-file") from None
        mqtt_settings = MqttSettings(
            url=mqtt,
            protocol=5 if mqtt_protocol == "5" else 4,
            client_id=f"fogline-{name or 'agent'}",
            username=mqtt_username,
            password=password,
            ca_file=mqtt_ca,
            cert_file=mqtt_cert,
            key_file=mqtt_key,
            sensor_password_file=sensor_password_file,
            sensor_acl_file=sensor_acl_file,
            broker_pid_file=broker_pid_file,
        )
        try:
            mqtt_settings.check()  # the URL and the TLS files, before starting
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--mqtt") from None
    elif any((mqtt_ca, mqtt_cert, mqtt_key, mqtt_username, sensor_password_file, sensor_acl_file)):
        raise typer.BadParameter("the MQTT options need --mqtt URL", param_hint="--mqtt")
    config = AgentConfig(
        hub_url=hub,
        ca_path=ca,
        data_dir=data_dir,
        claim=claim,
        claim_file=claim_file,
        name=name,
        labels=parsed,
        local_host=local_host,
        local_port=local_port,
        mqtt=mqtt_settings,
        outbox_max_bytes=outbox_max_mb * 1024 * 1024,
        drift_interval_s=drift_interval,
        module_user=modules_as,
        renew_new_key=not renew_keep_key,
    )
    # Everything the agent writes is its own (identity, desired state with
    # every module's config, outbox) unless it opens a path on purpose.
    os.umask(0o077)
    asyncio.run(_run_until_signalled(Agent(config)))
