"""The agent's process imports idna when a host name needs it, not with httpx
(issue #18, "Agent memory"; `fogline.cli._agent_main.defer_idna`).

Each case is a fresh interpreter that prepares its imports as the agent's
does, then uses httpx as it does.
"""

import json
import subprocess
import sys

from tests.support.processes import ENV

_PROBE = """
import json, sys
from fogline.cli import skip_httpx_cli
from fogline.cli._agent_main import defer_idna, skip_pydantic_plugins
skip_httpx_cli()
skip_pydantic_plugins()
deferred = defer_idna()
import httpx, anyio
import fogline.agent
out = {"deferred": deferred, "again": defer_idna()}
url = httpx.URL("https://hub.example:8443/v1/desired?wait=30")
out["ascii"] = [url.host, "idna.core" in sys.modules]
for host in sys.argv[1:]:
    try:
        out[host] = httpx.URL(f"https://{host}/").raw_host.decode()
    except httpx.InvalidURL as exc:
        out[host] = f"invalid: {exc}"
out["loaded"] = "idna.core" in sys.modules
import idna
out["real"] = idna.encode("bücher").decode()
print(json.dumps(out))
"""


def _probe(*hosts: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, *hosts], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ascii_hosts_need_no_idna() -> None:
    result = _probe()
    assert result["deferred"] is True and result["again"] is True
    assert result["ascii"] == ["hub.example", False]
    assert result["loaded"] is False
    assert result["real"] == "xn--bcher-kva"


def test_a_host_that_is_not_ascii_imports_it_and_is_encoded_as_before() -> None:
    result = _probe("BÜcher.example", "a\u200db.example")
    assert result["loaded"] is True
    assert result["BÜcher.example"] == "xn--bcher-kva.example"
    # idna's own error, caught by httpx through the stand-in: as without it.
    assert result["a\u200db.example"] == "invalid: Invalid IDNA hostname: 'a\\u200db.example'"
