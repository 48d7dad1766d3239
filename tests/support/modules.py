"""Small module releases built by tests: a Python HTTP server whose health can fail."""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.support.processes import HubProcess

SERVER = textwrap.dedent("""\
    import http.server, json, os, pathlib

    PORT = int(os.environ["PORT"])
    VERSION = os.environ["FOGLINE_MODULE_VERSION"]
    BROKEN = os.environ.get("BROKEN") == "1"
    FAIL_FILE = pathlib.Path(os.environ.get("FAIL_FILE", "/nonexistent/fail"))
    CONFIG = os.environ.get("FOGLINE_CONFIG")
    # A module that exits at start while this file exists: a crash loop on demand.
    if os.environ.get("CRASH_FILE") and os.path.exists(os.environ["CRASH_FILE"]):
        raise SystemExit(3)


    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/healthz":
                code = 500 if BROKEN or FAIL_FILE.exists() else 200
                body = b"bad" if code == 500 else b"ok"
            else:
                code = 200
                config = json.loads(open(CONFIG).read()) if CONFIG else None
                home = sorted(os.listdir(os.environ["HOME"]))  # fails if HOME names nothing here
                body = json.dumps(
                    {"version": VERSION, "config": config, "pid": os.getpid(), "home": home}
                ).encode()
            self.send_response(code)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass


    print(f"web {VERSION} listening on {PORT}", flush=True)
    print(f"web {VERSION} warming up", file=__import__("sys").stderr, flush=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
    """)


def write_module(
    root: Path,
    version: str,
    port: int,
    *,
    broken: bool = False,
    fail_file: Path | None = None,
    crash_file: Path | None = None,
    start_grace: str = "1s",
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    env = {"PORT": str(port)}
    if broken:
        env["BROKEN"] = "1"
    if fail_file is not None:
        env["FAIL_FILE"] = str(fail_file)
    if crash_file is not None:
        env["CRASH_FILE"] = str(crash_file)
    env_text = ", ".join(f'{k}: "{v}"' for k, v in env.items())
    (root / "fogline-module.yaml").write_text(
        textwrap.dedent(f"""\
        name: web
        version: {version}
        command: [python3, server.py]
        env: {{{env_text}}}
        health: {{http: "http://127.0.0.1:{port}/healthz", timeout: 2s, interval: 500ms}}
        startGrace: {start_grace}
        stopGrace: 2s
        restart: {{policy: always, backoff: {{initial: 200ms, max: 2s}}}}
        architectures: [any]
        """)
    )
    (root / "server.py").write_text(SERVER)
    return root


def release(hub, tmp_path: Path, key: Path, version: str, port: int, **kwargs: object) -> Path:
    """Build, sign and push one version of the `web` module; returns the archive."""
    source = write_module(tmp_path / f"src-{version}", version, port, **kwargs)  # type: ignore[arg-type]
    archive = tmp_path / f"web-{version}.tar.zst"
    hub.cli("release", "build", str(source), "-o", str(archive))
    hub.cli("release", "sign", str(archive), "--key", str(key))
    hub.cli("release", "push", str(archive))
    return archive


def deployment(version: str, *, drift: str = "correct", config: str = "{greeting: hi}") -> str:
    return textwrap.dedent(f"""\
        apiVersion: fogline.dev/v1
        kind: Deployment
        metadata: {{name: web}}
        spec:
          selector: {{}}
          drift: {drift}
          modules:
            - name: web
              release: web@{version}
              config: {config}
        """)


def calibration_payload(version: str) -> str:
    """A module file of ~300 KB that differs between versions in one line:
    the hub can make a small delta between two releases that carry it."""
    lines = [f"calibration_{i} = {i * 7919 % 10007}\n" for i in range(15_000)]
    lines[42] = f"release = {version!r}\n"
    return "".join(lines)


def push_calibrated_releases(
    hub: HubProcess, root: Path, versions: Sequence[str], port: int
) -> dict[str, str]:
    """Trust a new release key `ci` and push module `web` at each version,
    each carrying `calibration_payload`; returns version -> archive digest."""
    key = hub.trust_new_key(root / "keys")
    digests = {}
    for version in versions:
        src = write_module(root / f"src-{version}", version, port)
        (src / "calibration.py").write_text(calibration_payload(version))
        archive = root / f"web-{version}.tar.zst"
        hub.cli("release", "build", str(src), "-o", str(archive))
        hub.cli("release", "sign", str(archive), "--key", str(key))
        hub.cli("release", "push", str(archive))
        digests[version] = "sha256:" + hashlib.sha256(archive.read_bytes()).hexdigest()
    return digests
