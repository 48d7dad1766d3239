"""An idle agent does not import what only an update needs (issue #18, "Agent memory").

Real hub, real agent process run with `PYTHONPROFILEIMPORTTIME=1`, so its log
lists every module it imported, at start and later: first those of
`fogline agent run`, then, after its exec (same pid), those of the agent's
own interpreter. Until an update comes, none of the update's archive,
signature and TUF code, cryptography (keys, CSRs and certificates: the
enrollment imports it, so the agent is restarted once enrolled, as a node's
usual day starts), the release-building and SBOM libraries, the hub's side of
`fogline.security`, the command line (Typer, Click, Rich, Pygments, the CLI's
modules) nor uvicorn is among the agent's; once an update has come, the
update's code is, and the update worked; restarted with that module
installed, the agent runs it again and still imports none of it (PyYAML
neither: it reads the module file's parsed copy). prometheus_client is
not imported until /metrics is asked, which this test never does; pydantic's
plugin lookup (`importlib.metadata`) never is.
"""

import re
import socket
from pathlib import Path

import pytest

from tests.support.modules import deployment, release
from tests.support.processes import AgentProcess, HubProcess, free_port, wait_until

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)
# Each interpreter prints this once, before its first import.
_HEADER = "import time: self [us] | cumulative | imported package"

# Each costs an idle agent resident memory (BENCHMARKS.md, "Agent idle RSS").
NOT_AT_IDLE = frozenset(
    {
        "cryptography",
        "fogline.security._ca",
        "fogline.security._csr",
        "fogline.artifact._keys",
        "tuf",
        "securesystemslib",
        "urllib3",
        "cyclonedx",
        "packaging",
        "argon2",
        "tarfile",
        "fogline.agent.updater._tuf_client",
        "fogline.artifact._build",
        "fogline.artifact._sbom",
        "fogline.artifact._signing",
        "fogline.artifact._tarread",
        "fogline.artifact._unpack",
        "yaml",  # installed releases' module files are read through their parsed copies
        "fogline.artifact._yaml",
        # Imported at the first /metrics (or module scrape): nothing scrapes this agent.
        "prometheus_client",
        "wsgiref",
        "http.server",
        "fogline.security._passwords",
        "fogline.security._roles",
        "fogline.protocol._models",  # the API's bodies but enrollment's and renewal's
        "fogline.protocol._people",
        "fogline.protocol._columns_decode",  # the hub decodes batches, an agent encodes them
        # pydantic's plugin lookup among the installed distributions: see
        # fogline.cli._agent_main.skip_pydantic_plugins.
        "importlib.metadata",
        "zipfile",
        "csv",
        # idna's tables: httpx needs them for host names that are not ASCII.
        "idna.core",
        "idna.idnadata",
        "unicodedata",
        "fogline.agent.supervisor._memory",  # fakes: tests and the simulator
        "fogline.agent.updater._memory",
        "fogline.cli._app",
        "fogline.sim",
        "fogline.vulns",
        "typer",
        "rich",
        "pygments",
        "click",
        "uvicorn",
        "starlette",
        "multiprocessing",
        "fogline.cli._common",
        "fogline.cli._agent",
    }
)
# What the update below must have imported on the way.
AT_UPDATE = frozenset(
    {
        "cryptography",
        "fogline.artifact._signing",
        "fogline.artifact._tarread",
        "fogline.artifact._unpack",
    }
)


def _imported(agent: AgentProcess, starts: int = 1) -> set[str]:
    """What the agent's own interpreter (the last exec'd) imported."""
    runs = agent.log_path.read_text(errors="replace").split(_HEADER)
    # Before the first header, then for each start `agent run` and the agent.
    assert len(runs) == 1 + 2 * starts, len(runs)
    return set(_IMPORTED.findall(runs[-1]))


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _reported(hub: HubProcess, name: str) -> bool:
    return bool(hub.device(name).get("reported"))


@pytest.mark.timeout(180)
def test_the_update_code_is_imported_when_an_update_comes_not_before(
    hub: HubProcess, tmp_path: Path
) -> None:
    key = hub.trust_new_key(tmp_path / "keys")
    port = free_port()
    release(hub, tmp_path, key, "1.0.0", port)
    agent = AgentProcess(
        tmp_path / "node", hub, "lazy-1", hub.create_claim(), env={"PYTHONPROFILEIMPORTTIME": "1"}
    )
    agent.start()
    try:
        agent.wait_enrolled()
        assert "cryptography" in _imported(agent)  # enrolling needs it: a key, a CSR
        agent.stop()
        agent.start()  # enrolled: a node's usual start
        # This agent's own first report (and with it, its renewer's first look
        # at the certificate's dates).
        wait_until(lambda: (agent.health() or {}).get("hub") == "reachable", 30, "a report")
        assert _reported(hub, "lazy-1")
        idle = _imported(agent, starts=2)
        assert "fogline.agent._agent" in idle  # the log does list the agent's imports
        assert agent.proc is not None  # `agent run` became the lean program, same pid:
        cmdline = Path(f"/proc/{agent.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:6] == [b"-P", b"-m", b"fogline.cli._agent_main", b"agent", b"run"], cmdline
        assert idle & NOT_AT_IDLE == set()

        manifest = tmp_path / "web.yaml"
        manifest.write_text(deployment("1.0.0"))
        hub.cli("apply", "-f", str(manifest))
        wait_until(lambda: hub.device("lazy-1")["sync"]["status"] == "in-sync", 90, "in sync")
        updated = _imported(agent, starts=2)
        assert updated >= AT_UPDATE, AT_UPDATE - updated
        if list((tmp_path / "node").rglob("tuf-root.json")):  # a pinned root: TUF was asked
            assert "tuf" in updated and "fogline.agent.updater._tuf_client" in updated

        # Restarted with the module installed: it runs again, its module file
        # read through the parsed copy the update left, without PyYAML.
        copies = list((tmp_path / "node").rglob("state/web/spec.json"))
        assert len(copies) == 1, copies
        agent.stop()
        wait_until(lambda: not _answers(port), 30, "the module stopped with the agent")
        agent.start()
        wait_until(lambda: _answers(port), 60, "the module running again")
        restarted = _imported(agent, starts=3)
        assert "fogline.agent._agent" in restarted
        assert restarted & NOT_AT_IDLE == set()
    finally:
        agent.stop()
