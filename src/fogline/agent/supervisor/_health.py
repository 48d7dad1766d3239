"""Health probes against real processes: http, tcp, command, uptime.

Each probe returns a verdict and never raises; the caller bounds it with the
check's timeout (command probes also bound themselves, and kill what they
started when cancelled, so a hung probe command cannot pile up).
"""

import asyncio
import contextlib
import os
import signal
import ssl

import httpx

from ._runtime import HealthVerdict, module_env
from ._spec import HealthCheck, RunSpec
from ._user import ModuleUser, spawn_as

# A liveness probe checks that the module answers, not who it is: like a
# kubelet https probe, certificates are not verified (modules on loopback
# typically use self-signed ones). Built once: creating contexts costs CPU.
# Without `create_default_context`, which loads the system's CA store: about
# 1 MB resident in every agent for certificates this context never checks.
_NO_VERIFY = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
_NO_VERIFY.minimum_version = ssl.TLSVersion.TLSv1_2
_NO_VERIFY.check_hostname = False
_NO_VERIFY.verify_mode = ssl.CERT_NONE


async def probe_http(url: str, timeout_s: float) -> HealthVerdict:
    try:
        # trust_env=False: an HTTP_PROXY in the agent's environment must not
        # route a loopback probe elsewhere.
        async with (
            httpx.AsyncClient(timeout=timeout_s, verify=_NO_VERIFY, trust_env=False) as client,
            client.stream("GET", url) as response,
        ):
            status = response.status_code  # the body is never read: it may be huge
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return HealthVerdict(False, f"GET {url}: {type(exc).__name__}: {exc}"[:300])
    if 200 <= status < 300:
        return HealthVerdict(True, f"GET {url}: {status}")
    return HealthVerdict(False, f"GET {url}: HTTP {status}")


async def probe_tcp(port: int, timeout_s: float) -> HealthVerdict:
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
    except (OSError, TimeoutError) as exc:
        return HealthVerdict(False, f"tcp 127.0.0.1:{port}: {exc or type(exc).__name__}")
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return HealthVerdict(True, f"tcp 127.0.0.1:{port}: connected")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


async def probe_command(
    argv: tuple[str, ...], spec: RunSpec, timeout_s: float, user: ModuleUser | None = None
) -> HealthVerdict:
    """Run `argv` as the module would run it: its user, workdir and environment."""
    what = f"health command {argv[0]!r}"
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=spec.workdir,
            env=module_env(spec),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,  # so a timeout kills what the command started too
            **spawn_as(user),
        )
    except (OSError, ValueError) as exc:
        return HealthVerdict(False, f"{what}: cannot run: {exc}")
    try:
        async with asyncio.timeout(timeout_s):
            code = await process.wait()
    except TimeoutError:
        return HealthVerdict(False, f"{what}: timed out after {timeout_s:g}s")
    finally:
        if process.returncode is None:  # timeout or cancellation: leave nothing behind
            _kill_group(process.pid)
            await process.wait()
    if code == 0:
        return HealthVerdict(True, f"{what}: exit 0")
    return HealthVerdict(False, f"{what}: exit {code}")


def probe_uptime(required_s: float, uptime_s: float, returncode: int | None) -> HealthVerdict:
    if returncode is not None:
        return HealthVerdict(False, f"not running (exit {returncode})")
    if uptime_s >= required_s:
        return HealthVerdict(True, f"up {uptime_s:.1f}s")
    return HealthVerdict(False, f"up {uptime_s:.1f}s of the required {required_s:g}s")


async def probe(
    check: HealthCheck,
    spec: RunSpec,
    *,
    uptime_s: float,
    returncode: int | None,
    user: ModuleUser | None = None,
) -> HealthVerdict:
    """Run `check` once against a module started from `spec` (as `user`)."""
    target = check.target
    if check.kind == "http":
        assert isinstance(target, str)  # HealthCheck checked it
        return await probe_http(target, check.timeout_s)
    if check.kind == "tcp":
        assert isinstance(target, int)
        return await probe_tcp(target, check.timeout_s)
    if check.kind == "command":
        assert isinstance(target, tuple)
        return await probe_command(target, spec, check.timeout_s, user)
    assert isinstance(target, int | float)
    return probe_uptime(float(target), uptime_s, returncode)
