"""`fogline agent ...`: run the edge node."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from fogline._log import configure_logging

from ._common import ClaimFileOpt, LogFormatOpt

app = typer.Typer(help="Run the edge agent (one per node).", no_args_is_help=True)


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
    from ._agent_main import (
        AgentOptions,
        OptionError,
        agent_config,
        check_options,
        exec_agent,
        run_agent,
    )

    options = AgentOptions(
        hub=hub,
        ca=ca,
        data_dir=data_dir,
        claim_file=claim_file,
        name=name,
        labels=labels,
        local_host=local_host,
        local_port=local_port,
        mqtt=mqtt,
        mqtt_protocol=mqtt_protocol,
        mqtt_ca=mqtt_ca,
        mqtt_cert=mqtt_cert,
        mqtt_key=mqtt_key,
        mqtt_username=mqtt_username,
        mqtt_password_file=mqtt_password_file,
        sensor_password_file=sensor_password_file,
        sensor_acl_file=sensor_acl_file,
        broker_pid_file=broker_pid_file,
        outbox_max_mb=outbox_max_mb,
        drift_interval=drift_interval,
        module_user=module_user,
        renew_keep_key=renew_keep_key,
        log_level=log_level,
        log_format=log_format.value if log_format is not None else None,
    )
    configure_logging(log_level, options.log_format)
    try:
        # What the standard library can check; the exec'd program checks
        # everything (agent_config): importing the agent here to do it
        # cost about 0.45 s of CPU at every start (BENCHMARKS.md).
        check_options(options)
    except OptionError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.hint) from None
    # The agent runs in a fresh, lean interpreter (same pid): see _agent_main.
    exec_agent(options, sys.argv[1:])
    try:  # the exec failed: run here
        config = agent_config(options)
    except OptionError as exc:
        raise typer.BadParameter(exc.message, param_hint=exc.hint) from None
    run_agent(config)
