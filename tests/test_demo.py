"""`make demo` (scripts/demo.py) end to end, as a newcomer runs it: it walks
the scenario, shows an offline alert and a rollout, prints the console URL
and how to sign in, keeps the fleet running, and on Ctrl-C stops every
process it started and exits 0. `--wait` makes it wait without a terminal
(a test has none; without a terminal, or with --exit or DEMO_EXIT=1, it ends
by itself as before)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ENV, tls, wait_until

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


@pytest.mark.slow
@pytest.mark.mosquitto
@pytest.mark.timeout(600)
def test_the_demo_keeps_its_fleet_running_until_ctrl_c_then_stops_it(tmp_path: Path) -> None:
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        demo = subprocess.Popen(
            [sys.executable, str(DEMO), "--wait"],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**ENV, "COLUMNS": "200"},
        )
    try:

        def said() -> str:
            return out.read_text(errors="replace")

        def ready() -> bool:
            if demo.poll() is not None:
                raise AssertionError(f"the demo exited {demo.returncode}:\n{said()[-3000:]}")
            return "Press Ctrl-C to stop everything" in said()

        wait_until(ready, 480, "the demo to finish its scenario", interval_s=1)
        text = said()
        console = re.search(r"Console: (https://127\.0\.0\.1:(\d+)/console)", text)
        assert console, text[-3000:]
        assert "Sign in as demo (an operator) with the password in" in text
        password_file = Path(re.search(r"password in (\S+demo-password)", text)[1])  # type: ignore[index]
        assert password_file.stat().st_mode & 0o777 == 0o600
        assert len(password_file.read_text().strip()) >= 12
        assert re.search(r"offline\s.*paint-01", text), "the offline alert was not shown"
        assert "plant-base" in text  # the rollout's status

        # The fleet still runs: the hub answers, and the demo user can sign in.
        hub = f"https://127.0.0.1:{console[2]}"
        ca = password_file.parent / "hub" / "ca.pem"
        session = httpx.post(
            f"{hub}/v1/sessions",
            json={"user": "demo", "password": password_file.read_text().strip()},
            verify=tls(ca),
            timeout=10,
        )
        assert session.status_code in (200, 201), session.text

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(timeout=90) == 0
        text = said()
        assert re.search(r"stopped \d+ processes", text), text[-2000:]
        with pytest.raises(OSError):  # the hub is gone
            socket.create_connection(("127.0.0.1", int(console[2])), timeout=3).close()
        assert not password_file.parent.exists()  # its temporary directory is removed
    finally:
        if demo.poll() is None:  # a failed test: still the clean stop, its daemons with it
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=90)
            except subprocess.TimeoutExpired:
                demo.kill()
                demo.wait()
