"""Artifact offload's configuration: the URL signer, the secret file, the
nginx server block, and the CLI flags that take them (a wrong one is one
line naming the flag, before the hub starts)."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import subprocess
from pathlib import Path

import pytest

from fogline.hub.releases import (
    OFFLOAD_SECRET_FILE,
    ArtifactOffload,
    NginxSite,
    OffloadConfigError,
    check_offload_url,
    nginx_server_block,
    offload_secret,
    sign_uri,
)
from tests.support.processes import ENV, fogline_cmd

SECRET = "s" * 43


def test_the_signature_is_nginx_secure_link_md5_of_expiry_uri_and_secret() -> None:
    # nginx: secure_link_md5 "$secure_link_expires$uri <secret>", base64url, no padding.
    expected = base64.urlsafe_b64encode(
        hashlib.md5(b"1700000000/sha256/ab/cd " + SECRET.encode()).digest()
    )
    assert sign_uri("/sha256/ab/cd", 1700000000, SECRET) == expected.decode().rstrip("=")
    url = ArtifactOffload("https://files.test:8444", SECRET).signed_url("/sha256/ab/cd", 1000.5)
    assert (
        url
        == f"https://files.test:8444/sha256/ab/cd?md5={sign_uri('/sha256/ab/cd', 1300, SECRET)}&expires=1300"
    )
    assert SECRET not in repr(ArtifactOffload("https://files.test", SECRET))


@pytest.mark.parametrize(
    "url",
    [
        "http://files.test",
        "https://files.test/prefix",
        "https://u:p@files.test",
        "https://",
        "files.test",
        "https://f.test:99999",
        "https://f.test?x=1",
    ],
)
def test_an_offload_url_other_than_https_host_port_is_refused(url: str) -> None:
    with pytest.raises(OffloadConfigError):
        check_offload_url(url)


def test_the_secret_is_made_0600_once_and_a_readable_or_foreign_one_is_refused(
    tmp_path: Path,
) -> None:
    first = offload_secret(tmp_path)
    path = tmp_path / OFFLOAD_SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert offload_secret(tmp_path) == first and len(first) >= 32
    os.chmod(path, 0o644)
    with pytest.raises(OffloadConfigError, match="group or others"):
        offload_secret(tmp_path)
    os.chmod(path, 0o600)
    path.write_text('x" ; root /; "\n')
    with pytest.raises(OffloadConfigError, match="32 to 128"):
        offload_secret(tmp_path)


def _site(**changes: object) -> NginxSite:
    fields: dict[str, object] = {
        "artifacts_dir": Path("/srv/hub/artifacts"),
        "listen": "8444",
        "server_name": "files.test",
        "cert": Path("/srv/hub/tls/hub.pem"),
        "key": Path("/srv/hub/tls/hub-key.pem"),
        "secret": SECRET,
    }
    return NginxSite(**(fields | changes))  # type: ignore[arg-type]


def test_the_server_block_serves_only_digest_files_behind_secure_link() -> None:
    block = nginx_server_block(_site())
    assert block.count("secure_link $arg_md5,$arg_expires;") == 2
    assert f'secure_link_md5 "$secure_link_expires$uri {SECRET}";' in block
    assert 'root "/srv/hub/artifacts";' in block and "autoindex off;" in block
    assert "location / { return 404; }" in block and "listen 8444 ssl backlog=4096;" in block


@pytest.mark.parametrize(
    "changes",
    [
        {"artifacts_dir": Path('/srv/a"; root /;')},
        {"artifacts_dir": Path("/srv/$x")},
        {"listen": "8444; include /etc/passwd"},
        {"listen": "99999"},
        {"server_name": "a b"},
        {"key": Path("/srv/k{ey}")},
    ],
)
def test_the_server_block_refuses_what_nginx_would_misread(changes: dict[str, object]) -> None:
    with pytest.raises(OffloadConfigError):
        nginx_server_block(_site(**changes))


def _fogline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*fogline_cmd(), *args], capture_output=True, text=True, env=ENV, timeout=60
    )


def test_the_cli_names_the_flag_or_the_missing_certificate(tmp_path: Path) -> None:
    bad = _fogline(
        "hub", "serve", "--data-dir", str(tmp_path / "d"), "--artifact-offload", "http://x"
    )
    assert bad.returncode == 2 and "--artifact-offload" in bad.stderr and "https://" in bad.stderr
    missing = _fogline("hub", "nginx-config", "--data-dir", str(tmp_path / "none"))
    assert missing.returncode == 1 and "start `fogline hub serve" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_the_cli_refuses_a_readable_secret_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "d"
    (data / "tls").mkdir(parents=True)
    for name in ("hub.pem", "hub-key.pem"):
        (data / "tls" / name).write_text("placeholder: the command checks the secret first\n")
    offload_secret(data)
    os.chmod(data / OFFLOAD_SECRET_FILE, 0o644)
    for args in (
        ("hub", "nginx-config", "--data-dir", str(data)),
        ("hub", "serve", "--data-dir", str(data), "--artifact-offload", "https://127.0.0.1:8444"),
    ):
        refused = _fogline(*args)
        assert refused.returncode == 1, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "group or others" in lines[0], refused.stderr
        assert "Traceback" not in refused.stderr
