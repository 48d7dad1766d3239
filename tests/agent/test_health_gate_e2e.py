"""An update is done only when its own process is healthy (issue #19).

Real hub, real agent, real module processes. Another process already
answers on the health port of the new version, which therefore fails to
bind and exits: the probe passes, but not for the module. The update must
be rolled back, and reported so.
"""

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from fogline.agent.supervisor import log_path
from tests.support.modules import deployment, release
from tests.support.processes import AgentProcess, HubProcess, free_port, wait_until


class _Impostor(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def impostor_on(port: int) -> Iterator[list[str]]:
    """An HTTP server answering 200 to everything on `port`; yields the paths it served."""
    served: list[str] = []

    class Handler(_Impostor):
        def do_GET(self) -> None:
            served.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="impostor", daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _served(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def _update(hub: HubProcess, device: str) -> dict | None:
    modules = hub.device(device).get("reported", {}).get("modules") or {}
    update = (modules.get("updates") or {}).get("web")
    return update if update and update["version"] == "2.0.0" else None


@pytest.mark.timeout(240)
def test_an_update_whose_health_port_is_answered_by_another_process_is_rolled_back(
    hub: HubProcess, tmp_path: Path
) -> None:
    key = hub.trust_new_key(tmp_path / "keys")
    good_port, taken_port = free_port(), free_port()
    release(hub, tmp_path, key, "1.0.0", good_port)
    # A grace long enough for a loaded machine to run v2 into its failed bind.
    release(hub, tmp_path, key, "2.0.0", taken_port, start_grace="3s")
    agent = AgentProcess(tmp_path / "node", hub, "gate-1", hub.create_claim())
    agent.start()
    manifest = tmp_path / "web.yaml"
    try:
        agent.wait_enrolled()
        manifest.write_text(deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: (s := _served(good_port)) and s["version"] == "1.0.0", 60, "v1")
        wait_until(lambda: hub.device("gate-1")["sync"]["status"] == "in-sync", 15, "in-sync v1")

        with impostor_on(taken_port) as impostor_served:
            manifest.write_text(deployment("2.0.0"))
            hub.cli("apply", "-f", str(manifest))
            update = wait_until(
                lambda: (u := _update(hub, "gate-1")) and u["state"] in ("done", "failed") and u,
                90,
                "the update of web to 2.0.0 to end",
            )
            assert update["state"] == "failed", update  # not `done`: the pass was not its own
            assert update["failed_in"] == "health", update
            # The record names the release; its error does not say it again.
            assert update["version"] == "2.0.0" and "web 2.0.0" not in update["error"], update
            sync = wait_until(
                lambda: (s := hub.device("gate-1")["sync"])["status"] == "error" and s,
                30,
                "the failure reported",
            )
            assert "web 2.0.0" in sync["error"]
            # Rolled back per the updater's table: v1 runs again.
            wait_until(lambda: (s := _served(good_port)) and s["version"] == "1.0.0", 30, "v1")
            stderr = log_path(tmp_path / "node" / "logs", "web", "stderr")
            assert "Address already in use" in stderr.read_text(errors="replace")
        # Nobody was fooled because nobody asked in the grace: the one new
        # version exited before its first probe was due.
        assert "/healthz" not in impostor_served
    finally:
        agent.stop()
