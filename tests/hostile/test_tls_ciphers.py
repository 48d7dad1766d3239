"""TLS 1.2 clients get ECDHE with an AEAD cipher only (issue #12: uvicorn's
default offered CBC suites with SHA-1 MACs), checked with `openssl s_client`."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.support.processes import HubProcess


def _handshake(hub: HubProcess, *args: str) -> tuple[bool, str]:
    """Whether `openssl s_client` with `args` completes a handshake, and the
    cipher it reports."""
    openssl = shutil.which("openssl")
    assert openssl, "openssl is missing: scripts/setup-system.sh installs it"
    result = subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{hub.port}", "-CAfile", str(hub.ca), *args],
        input=b"",
        capture_output=True,
        timeout=30,
    )
    out = result.stdout.decode(errors="replace")
    cipher = next((line for line in out.splitlines() if "Cipher is" in line), "")
    return result.returncode == 0 and "Cipher is (NONE)" not in out, cipher


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-ECDSA-AES128-SHA",  # CBC + SHA-1, what uvicorn's default offered
        "ECDHE-ECDSA-AES256-SHA384",  # CBC + SHA-2: still CBC
        "AES128-GCM-SHA256",  # AEAD, but RSA key exchange: no forward secrecy
    ],
)
def test_tls12_without_ecdhe_and_aead_is_refused(shared_hub: HubProcess, cipher: str) -> None:
    accepted, shown = _handshake(shared_hub, "-tls1_2", "-cipher", cipher)
    assert not accepted, shown


@pytest.mark.parametrize(
    "cipher",
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ],
)
def test_tls12_with_ecdhe_and_aead_is_accepted(shared_hub: HubProcess, cipher: str) -> None:
    accepted, shown = _handshake(shared_hub, "-tls1_2", "-cipher", cipher)
    assert accepted and cipher in shown, shown


def test_tls13_is_accepted_and_tls11_refused(shared_hub: HubProcess) -> None:
    accepted, shown = _handshake(shared_hub, "-tls1_3")
    assert accepted and "TLSv1.3" in shown, shown
    accepted, shown = _handshake(shared_hub, "-tls1_1")
    assert not accepted, shown
