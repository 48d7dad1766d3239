"""`make demo`: the edge-to-cloud scenario on one machine, end to end.

A hub, a Mosquitto broker and three edge agents (two press lines, one paint
line) in a temporary directory. The demo then:
  1. enrolls the three nodes zero-touch with one claim (mTLS from then on);
     each node asks for its line and zone, and the operator promotes what
     it asked for (the hub never selects on labels a node chose itself);
  2. applies a fleet manifest: config for every node, a signed module on the
     press line, and a data-plane pipeline that stops a press when it
     overheats and sends 1 s summaries and every alarm to the cloud;
  3. plays sensors: normal readings, then one overheating press;
  4. shows the fleet, the actuator command the node sent by itself, and the
     telemetry the hub received;
  5. adds a second user, a viewer: it reads the fleet, and its apply is refused (403);
  6. stops one node: the hub raises an offline alert; the node comes back;
  7. prints the console's URL and how to sign in (an operator account it made),
     and keeps the fleet running until Ctrl-C.
Every command it runs is printed first (`$ fogline ...`, paths relative to
its working directory), so you can run them yourself, one by one. Every
process it started is stopped on Ctrl-C (or SIGTERM), agents first.

It ends at once after step 7, without waiting, with `--exit` or
DEMO_EXIT=1 (`make demo DEMO_EXIT=1`), and whenever its standard input is
not a terminal (CI, scripts); `--wait` waits for Ctrl-C even then.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console

console = Console(stderr=True)
FOGLINE = [sys.executable, "-m", "fogline"]
STOP_GRACE_S = 20.0  # for every daemon together, after SIGTERM
AGENTS = [
    ("press-01", "line=press,zone=north"),
    ("press-02", "line=press,zone=south"),
    ("paint-01", "line=paint,zone=north"),
]

FLEET = """\
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: plant-base}
spec:
  selector: {matchLabels: {site: plant-7}}
  config: {sampling: {rate_hz: 10}, site: plant-7}
  pipelines:
    - name: press-guard
      source: {mqtt: "sensors/{device}/{metric}", qos: 1}
      steps:
        - {id: temps, filter: "metric == 'temp'"}
        - id: overheat
          detect: {type: threshold, field: value, max: 90}
        - id: per-second
          window: {type: tumbling, size: 1s, time: processing, key: [device],
                   aggregate: {n: "count()", mean: "mean(value)", max: "max(value)"}}
      outputs:
        - from: overheat
          when: "anomaly"
          action:
            mqtt:
              {topic: "actuators/{device}/cmd", payload: {cmd: stop, reading: "{value}"}, qos: 1}
          rateLimit: {per_s: 5, burst: 5}
        - {from: overheat, when: "anomaly", uplink: {stream: alarms, priority: 9, ttl: 7d}}
        - {from: per-second, uplink: {stream: temps-1s, priority: 5, ttl: 1d}}
---
apiVersion: fogline.dev/v1
kind: Deployment
metadata: {name: press-line}
spec:
  selector: {matchLabels: {line: press}}
  priority: 10
  config: {sampling: {rate_hz: 50}}
  modules:
    - {name: press-monitor, release: press-monitor@1.0.0, config: {greeting: hello}}
"""

MODULE_SERVER = """\
import http.server, json, os
PORT = int(os.environ["PORT"])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        version = os.environ["FOGLINE_MODULE_VERSION"]
        body = json.dumps({"module": "press-monitor", "version": version}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
print("press-monitor up", flush=True)
http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
"""


# An invented advisory in the OSV format, and a policy that blocks it at push.
DEMO_ADVISORY = {
    "id": "DEMO-2026-0001",
    "modified": "2026-11-01T00:00:00Z",
    "published": "2026-11-01T00:00:00Z",
    "summary": "urllib3: an invented critical flaw, for the demo",
    "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
    "affected": [
        {
            "package": {"ecosystem": "PyPI", "name": "urllib3"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.0.0"}]}],
        }
    ],
}
DEMO_POLICY = """\
apiVersion: fogline.dev/v1
kind: VulnerabilityPolicy
metadata: {name: plant}
spec: {blockAt: high, onPush: refuse}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("demo: mosquitto is missing; run scripts/setup-system.sh")


class Demo:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.named: dict[str, subprocess.Popen[bytes]] = {}
        self.port = free_port()
        # Each edge node has its own broker of record, as on real sites.
        self.mqtt_ports = {name: free_port() for name, _ in AGENTS}
        self.hub_dir = root / "hub"
        self.hub_url = f"https://127.0.0.1:{self.port}"
        # `fogline login` stores its context here, not in your ~/.config.
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FOGLINE_")},
            "XDG_CONFIG_HOME": str(root / "config"),
            "PYTHONUNBUFFERED": "1",
            "COLUMNS": "140",
        }

    def show(self, command: str) -> None:
        """Print a command as you would type it, in the demo's working directory."""
        console.print(f"[dim]$[/dim] [bold]{command}[/bold]", highlight=False, soft_wrap=True)

    def spawn(
        self,
        name: str,
        *args: str,
        command: list[str] | None = None,
        env: dict[str, str] | None = None,
        shown_env: str = "",
    ) -> None:
        """Start a daemon in the background, its output in NAME.log; it blocks
        its terminal, so by hand: a terminal of its own, or `&` as shown."""
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        argv, full_env = command or [*FOGLINE, *args], {**self.env, **(env or {})}
        shown = shlex.join(command) if command else shlex.join(["fogline", *args])
        self.show(f"{shown_env}{shown} > {name}.log 2>&1 &")
        # A process group of its own: Ctrl-C reaches the demo alone, which
        # then stops every daemon in order (agents before their hub).
        proc = subprocess.Popen(
            argv, stdout=log, stderr=log, env=full_env, cwd=self.root, process_group=0
        )
        self.procs.append(proc)
        self.named[name] = proc

    def fogline(
        self,
        *args: str,
        stdin: str | None = None,
        shown: str | None = None,
        token: str | None = None,
    ) -> str:
        """Run `fogline ARGS` and return its stdout; `shown` is how to print the
        command (None: as run, "": not at all, for the demo's own polling);
        `token` runs it with that token instead of the login's."""
        result = self._run(args, stdin, shown, token)
        if result.returncode not in (0, 2):  # plan exits 2 when changes are pending
            raise SystemExit(f"demo: fogline {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def fogline_refused(
        self, *args: str, shown: str | None, token: str | None, status: str = "403"
    ) -> str:
        """Run a command the hub must refuse; returns its one-line error."""
        result = self._run(args, None, shown, token)
        if result.returncode != 1 or status not in result.stderr:
            raise SystemExit(f"demo: fogline {' '.join(args)} was not refused: {result.stderr}")
        return result.stderr.strip()

    def _run(
        self, args: tuple[str, ...], stdin: str | None, shown: str | None, token: str | None
    ) -> subprocess.CompletedProcess[str]:
        if shown is None:
            shown = shlex.join(["fogline", *args])
        if shown:
            self.show(shown)
        return subprocess.run(
            [*FOGLINE, *args],
            env={**self.env, "FOGLINE_TOKEN": token} if token else self.env,
            text=True,
            capture_output=True,
            input=stdin,
            cwd=self.root,
        )

    def wait_for(self, what: str, check, timeout_s: float = 60) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.25)
        raise SystemExit(f"demo: timed out waiting for {what}; logs in {self.root}")

    def hub_up(self) -> bool:
        try:
            ca = self.hub_dir / "ca.pem"
            return (
                ca.exists()
                and (self.hub_dir / "admin-token").exists()
                and httpx.get(f"{self.hub_url}/healthz", verify=str(ca)).status_code == 200
            )
        except httpx.HTTPError:
            return False

    def devices(self) -> list[dict]:  # type: ignore[type-arg]
        return json.loads(self.fogline("devices", "ls", "-o", "json", shown=""))  # type: ignore[no-any-return]

    def step(self, text: str) -> None:
        console.print(f"\n[bold cyan]▶ {text}[/bold cyan]")

    def run(self) -> None:
        console.rule("[bold]Fogline demo: edge to cloud on one machine")
        console.print(
            f"working directory: {self.root}\n"
            "Each command is printed before it runs ($ ...); run them yourself in an empty "
            "directory to redo the demo by hand. Daemons (mosquitto, hub, agents) block their "
            "terminal: give each one a terminal of its own, or end the line with & as shown.",
            highlight=False,
        )
        for node, port in self.mqtt_ports.items():
            conf = self.root / f"mosquitto-{node}.conf"
            conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
            self.spawn(f"mosquitto-{node}", command=[mosquitto(), "-c", conf.name])
        console.print(
            "  (each mosquitto-NODE.conf the demo wrote: listener PORT 127.0.0.1, "
            "allow_anonymous true)",
            highlight=False,
        )
        self.spawn(
            "hub",
            "hub",
            "serve",
            "--data-dir",
            "hub",
            "--port",
            str(self.port),
            "--report-interval",
            "2",
            "--alert-offline-after",
            "10s",
        )
        self.wait_for("the hub", self.hub_up)
        console.print(f"hub at {self.hub_url}; one Mosquitto per node")
        self.step("Log in once: the hub, its CA and the admin token become the current context")
        self.fogline(
            "login", "--hub", self.hub_url, "--ca", "hub/ca.pem", "--token-file", "hub/admin-token"
        )

        self.step("Zero-touch enrollment: one claim, three nodes, each with its own key (mTLS)")
        claim_args = ("claim", "create", "--labels", "site=plant-7", "--max-uses", "3")
        claim = self.fogline(
            *claim_args,
            "--expires",
            "1h",
            shown=f"export FOGLINE_CLAIM=$(fogline {shlex.join(claim_args)} --expires 1h)",
        ).strip()
        for name, labels in AGENTS:
            # The claim not on the command line: every user can read it.
            self.spawn(*self.agent_args(name, labels), env={"FOGLINE_CLAIM": claim})
        self.wait_for(
            "three agents online", lambda: sum(d["status"] == "online" for d in self.devices()) == 3
        )
        print(self.fogline("devices", "ls", "-o", "table"), flush=True)

        self.step("Each node asked for its line and zone; the operator promotes what it asked for")
        print(self.fogline("devices", "show", "press-01", "-o", "table"), flush=True)
        for name, _labels in AGENTS:
            self.fogline("devices", "promote", name, "line", "zone")
        print(self.fogline("devices", "ls", "-o", "table"), flush=True)

        self.step("A signed module release: keys create, release build, sign, push")
        self.fogline(
            "apply",
            "-f",
            "-",
            stdin=self.fogline("keys", "create", "plant", "--dir", "keys", shown=""),
            shown="fogline keys create plant --dir keys | fogline apply -f -",
        )
        module = self.root / "press-monitor"
        module.mkdir()
        module_port = free_port()
        (module / "server.py").write_text(MODULE_SERVER)
        (module / "fogline-module.yaml").write_text(
            textwrap.dedent(f"""\
            name: press-monitor
            version: 1.0.0
            command: [python3, server.py]
            env: {{PORT: "{module_port}"}}
            health: {{http: "http://127.0.0.1:{module_port}/", timeout: 2s, interval: 1s}}
            startGrace: 2s
            architectures: [any]
            """)
        )
        console.print(
            "  (the demo wrote press-monitor/fogline-module.yaml and press-monitor/server.py)",
            highlight=False,
        )
        archive = "press-monitor-1.0.0.tar.zst"
        self.fogline("release", "build", "press-monitor", "-o", archive)
        self.fogline("release", "sign", archive, "--key", "keys/plant.key")
        self.fogline("release", "push", archive)
        print(self.fogline("release", "ls", "-o", "table"), flush=True)

        self.step("The fleet as code: fogline plan, then fogline apply")
        # Only press-01 runs the module (the two press nodes would share its port here).
        (self.root / "fleet.yaml").write_text(
            FLEET.replace("matchLabels: {line: press}", "matchLabels: {line: press, zone: north}")
        )
        console.print("  (the demo wrote fleet.yaml)", highlight=False)
        print(self.fogline("plan", "-f", "fleet.yaml"), flush=True)
        print(self.fogline("apply", "-f", "fleet.yaml"), flush=True)
        self.wait_for(
            "every node in sync",
            lambda: all((d.get("sync") or {}).get("status") == "in-sync" for d in self.devices()),
            90,
        )
        print(self.fogline("rollout", "status", "plant-base", "-o", "table"), flush=True)
        print(self.fogline("devices", "ls", "-o", "table"), flush=True)

        self.step("Sensors publish; press-02 overheats; its node stops it locally")
        port = self.mqtt_ports["press-02"]
        self.show(f"mosquitto_sub -p {port} -t 'actuators/#' -v &")
        self.show(
            f"mosquitto_pub -p {port} -q 1 -t sensors/press-b2/temp -m '{{\"value\": 97.5}}'"
            "   # the demo publishes 60 readings, one of them too hot"
        )
        commands: list[str] = []
        listener = mqtt.Client(CallbackAPIVersion.VERSION2)
        listener.on_message = lambda _c, _u, m: commands.append(f"{m.topic} {m.payload.decode()}")
        listener.connect("127.0.0.1", port)
        listener.subscribe("actuators/#", 1)
        listener.loop_start()
        sensors = mqtt.Client(CallbackAPIVersion.VERSION2)
        sensors.connect("127.0.0.1", port)
        sensors.loop_start()
        time.sleep(1)
        for i in range(30):
            for press in ("press-b1", "press-b2"):  # two presses on press-02's line
                reading = 70.0 + (i % 5)
                if press == "press-b2" and i == 20:
                    reading = 97.5
                sensors.publish(f"sensors/{press}/temp", json.dumps({"value": reading}), qos=1)
            time.sleep(0.05)
        self.wait_for("the actuator command", lambda: bool(commands), 15)
        for command in commands:
            console.print(f"  actuator received: {command}")
        listener.loop_stop()
        sensors.loop_stop()

        self.step("What the cloud received: summaries and the alarm, not raw readings")
        self.wait_for(
            "the alarm at the hub",
            lambda: json.loads(
                self.fogline("telemetry", "query", "--stream", "alarms", "-o", "json", shown="")
            ),
            30,
        )
        print(self.fogline("telemetry", "query", "--stream", "alarms", "-o", "table"), flush=True)
        summaries = json.loads(
            self.fogline("telemetry", "query", "--stream", "temps-1s", "-o", "json")
        )
        console.print(f"  {len(summaries)} one-second summaries stored for 60 raw readings")
        self.step("The module runs on press-01; its logs reached the hub")
        print(self.fogline("devices", "show", "press-01", "-o", "table"), flush=True)
        self.wait_for(
            "module logs",
            lambda: (
                "press-monitor up" in self.fogline("logs", "press-01", "press-monitor", shown="")
            ),
            30,
        )
        print(
            self.fogline("logs", "press-01", "press-monitor", "--tail", "20", "--timestamps"),
            flush=True,
        )

        self.step("A second person: a viewer reads the fleet, and the hub refuses its apply")
        self.fogline("users", "add", "ann", "--role", "viewer")
        ann = self.fogline(
            *("tokens", "create", "--user", "ann", "--name", "demo", "--expires", "1h"),
            shown="fogline tokens create --user ann --name demo --expires 1h > ann.token",
        ).strip()
        token_file = self.root / "ann.token"
        token_file.write_text(ann + "\n")
        token_file.chmod(0o600)
        as_ann = "FOGLINE_TOKEN=$(cat ann.token) "
        print(self.fogline("whoami", "-o", "table", token=ann, shown=as_ann + "fogline whoami"))
        print(
            self.fogline(
                "devices", "ls", "-o", "table", token=ann, shown=as_ann + "fogline devices ls"
            ),
            flush=True,
        )
        refused = self.fogline_refused(
            "apply", "-f", "fleet.yaml", token=ann, shown=as_ann + "fogline apply -f fleet.yaml"
        )
        console.print(f"  {refused}", highlight=False, soft_wrap=True, markup=False)
        self.vulnerability_gate()
        print(self.fogline("audit", "ls", "-o", "table"), flush=True)

        self.step("A node goes dark: the hub raises an alert by itself (offline after 10 s)")
        self.show("kill %paint-01   # the demo stops paint-01's agent")
        self.stop_one("paint-01")
        self.wait_for("the offline alert", lambda: self.active_alert("offline", "paint-01"), 90)
        print(self.fogline("alerts", "ls", "--active", "-o", "table"), flush=True)
        console.print("  back up, it reports again and the alert clears by itself")
        self.spawn(*self.agent_args("paint-01", dict(AGENTS)["paint-01"]))
        self.wait_for("paint-01 online", lambda: self.online("paint-01"))

        self.step("The console: the fleet, its health, alerts and rollouts in a browser")
        password = secrets.token_urlsafe(12)
        self.fogline(
            "users",
            "add",
            "demo",
            "--role",
            "operator",
            "--password-stdin",
            stdin=password + "\n",
            shown="fogline users add demo --role operator --password-stdin < demo-password",
        )
        secret = self.root / "demo-password"
        secret.touch(mode=0o600)
        secret.write_text(password + "\n")
        console.rule("[bold green]demo complete")
        console.print(
            f"Console: [bold]{self.hub_url}/console[/bold]\n"
            f"Sign in as [bold]demo[/bold] (an operator) with the password in {secret}\n"
            f"  cat {secret}\n"
            "or with a token: the admin token is in "
            f"{self.hub_dir / 'admin-token'}, the viewer ann's in {token_file}.\n"
            f"The browser warns about the hub's certificate: its CA is {self.hub_dir / 'ca.pem'}.",
            highlight=False,
            soft_wrap=True,
        )

    def online(self, name: str) -> bool:
        return any(d["name"] == name and d["status"] == "online" for d in self.devices())

    def active_alert(self, kind: str, device: str) -> bool:
        alerts = json.loads(self.fogline("alerts", "ls", "--active", "-o", "json", shown=""))
        return any(a["kind"] == kind and a["device"] == device for a in alerts)

    def agent_args(self, name: str, labels: str) -> tuple[str, ...]:
        return (
            name,
            "agent",
            "run",
            "--hub",
            self.hub_url,
            "--ca",
            "hub/ca.pem",
            "--data-dir",
            name,
            "--name",
            name,
            "--labels",
            labels,
            "--local-port",
            "0",
            "--mqtt",
            f"mqtt://127.0.0.1:{self.mqtt_ports[name]}",
            # The demo's module is Python from this venv, which `nobody` may not reach.
            "--module-user",
            pwd.getpwuid(os.geteuid()).pw_name,
        )

    def stop_one(self, name: str) -> None:
        proc = self.named.pop(name)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.procs.remove(proc)

    def keep_running(self) -> None:
        """Until Ctrl-C (or SIGTERM); returns early if the hub exits."""
        console.print(
            f"\nThe fleet keeps running (hub, {len(AGENTS)} agents, {len(AGENTS)} brokers; "
            f"logs in {self.root}). Press Ctrl-C to stop everything.",
            highlight=False,
        )
        hub = self.named["hub"]
        while hub.poll() is None:
            time.sleep(0.5)
        console.print(f"the hub exited ({hub.returncode}); see {self.root / 'hub.log'}")

    def vulnerability_gate(self) -> None:
        self.step("The vulnerability gate: offline OSV data, a policy, a release it refuses")
        osv = self.root / "osv"
        osv.mkdir()
        (osv / "DEMO-2026-0001.json").write_text(json.dumps(DEMO_ADVISORY))
        print(self.fogline("vulndb", "import", "osv", "-o", "table"), flush=True)
        (self.root / "policy.yaml").write_text(DEMO_POLICY)
        console.print("  (the demo wrote osv/DEMO-2026-0001.json and policy.yaml)", highlight=False)
        self.fogline("apply", "-f", "policy.yaml")
        module = self.root / "press-monitor"
        spec = (module / "fogline-module.yaml").read_text()
        (module / "fogline-module.yaml").write_text(spec.replace("1.0.0", "1.1.0"))
        (module / "requirements.txt").write_text("urllib3==1.26.4\n")  # pinned, affected
        archive = "press-monitor-1.1.0.tar.zst"
        self.fogline("release", "build", "press-monitor", "-o", archive)
        self.fogline("release", "sign", archive, "--key", "keys/plant.key")
        print(
            self.fogline("release", "sbom", "press-monitor@1.0.0", "--files", "-o", "table"),
            flush=True,
        )
        refused = self.fogline_refused(
            "release", "push", archive, shown=None, token=None, status="422 vulnerable"
        )
        console.print(f"  {refused}", highlight=False, soft_wrap=True, markup=False)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        # One deadline for all: a loaded machine must not make Ctrl-C wait
        # 15 s per daemon in turn.
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        console.print(f"stopped {len(self.procs)} processes")


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same clean stop as Ctrl-C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--exit", action="store_true", help="end at once, without waiting")
    group.add_argument("--wait", action="store_true", help="wait for Ctrl-C, even with no terminal")
    args = parser.parse_args()
    wait = args.wait or (
        not args.exit and os.environ.get("DEMO_EXIT", "") in ("", "0") and sys.stdin.isatty()
    )
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    # Ctrl-C stops the fleet even when the demo started with SIGINT ignored
    # (a shell's background job, a test runner's worker): Python then
    # installs no KeyboardInterrupt handler of its own.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="fogline-demo-") as tmp:
        demo = Demo(Path(tmp))
        try:
            demo.run()
            if wait:
                demo.keep_running()
        except KeyboardInterrupt:
            console.print("interrupted")
        finally:
            demo.stop()


if __name__ == "__main__":
    main()
