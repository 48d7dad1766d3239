"""`fogline keys` and `fogline release` as an operator types them, against a real hub."""

import json
import stat
from pathlib import Path

import pytest
import yaml

from fogline.artifact import (
    build_release,
    generate_release_key,
    load_private_key,
    load_public_key,
    sign_release,
)


def _module(root: Path, name: str, version: str, payload: str = "hello\n") -> Path:
    root.mkdir(parents=True)
    (root / "fogline-module.yaml").write_text(
        f"name: {name}\nversion: {version}\nkind: config\narchitectures: [any]\n"
    )
    (root / "settings.json").write_text(payload)
    return root


def _one_line_error(result) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    # Rich wraps a long line at the terminal width; the message is one line.
    return " ".join(result.stderr.split())


@pytest.fixture(scope="module")
def key_dir(shared_hub, tmp_path_factory) -> Path:
    """`fogline keys create ci | fogline apply -f -`: a key the shared hub trusts."""
    directory = tmp_path_factory.mktemp("keys")
    created = shared_hub.cli("keys", "create", "ci", "--dir", str(directory))
    shared_hub.cli("apply", "-f", "-", input_text=created.stdout)
    return directory


def test_keys_create_writes_a_private_key_and_prints_a_release_key_manifest(shared_hub, tmp_path):
    result = shared_hub.cli("keys", "create", "signer", "--dir", str(tmp_path))
    private, public = tmp_path / "signer.key", tmp_path / "signer.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    pair = load_private_key(private)
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert load_public_key(public.read_text()) == pair.public_key
    manifest = yaml.safe_load(result.stdout)
    assert manifest["apiVersion"] == "fogline.dev/v1" and manifest["kind"] == "ReleaseKey"
    assert manifest["metadata"] == {"name": "signer"}
    assert load_public_key(manifest["spec"]["publicKey"]) == pair.public_key
    assert pair.key_id in result.stderr  # the id, for `release ls`; stdout is the manifest only

    again = shared_hub.cli("keys", "create", "signer", "--dir", str(tmp_path), check=False)
    assert "already exists" in _one_line_error(again)
    assert load_private_key(private).key_id == pair.key_id  # untouched


def test_keys_create_refuses_a_name_that_is_not_a_manifest_name(shared_hub, tmp_path):
    result = shared_hub.cli("keys", "create", "../escape", "--dir", str(tmp_path), check=False)
    assert result.returncode == 2 and list(tmp_path.iterdir()) == []


def test_build_sign_push_ls(shared_hub, key_dir, tmp_path):
    src = _module(tmp_path / "src", "cli-demo", "1.0.0")
    archive, twin = tmp_path / "demo.tar.zst", tmp_path / "twin.tar.zst"
    built = shared_hub.cli("release", "build", str(src), "-o", str(archive))
    shared_hub.cli("release", "build", str(src), "-o", str(twin))
    assert archive.read_bytes() == twin.read_bytes()  # reproducible
    digest = built.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71

    signed = shared_hub.cli("release", "sign", str(archive), "--key", str(key_dir / "ci.key"))
    assert signed.stdout.strip() == f"{archive}.sig"
    pushed = shared_hub.cli("release", "push", str(archive))
    assert pushed.stdout == digest + "\n"
    again = shared_hub.cli("release", "push", str(archive))
    assert again.stdout == digest + "\n" and "already on the hub" in again.stderr

    rows = json.loads(shared_hub.cli("release", "ls", "--output", "json").stdout)
    (row,) = [r for r in rows if r["name"] == "cli-demo"]
    assert (row["version"], row["digest"], row["size"]) == ("1.0.0", digest, archive.stat().st_size)
    assert row["key_id"].startswith("ed25519:") and row["pushed_by"] == "admin"
    table = shared_hub.cli("release", "ls", "--output", "table").stdout
    assert "KEY ID" in table and digest.removeprefix("sha256:")[:12] in table
    assert digest not in table  # short in tables, whole in JSON


def _signed(tmp: Path, name: str, version: str, key_file: Path, payload: str = "x\n") -> Path:
    """A built and signed archive, made through the library: these tests are about push."""
    archive = tmp / f"{name}-{len(payload)}.tar.zst"
    build_release(_module(tmp / f"src-{name}-{len(payload)}", name, version, payload), archive)
    sign_release(archive, load_private_key(key_file))
    return archive


def test_push_of_the_same_version_with_other_content_is_refused(shared_hub, key_dir, tmp_path):
    shared_hub.cli(
        "release", "push", str(_signed(tmp_path, "cli-fixed", "2.0.0", key_dir / "ci.key"))
    )
    other = _signed(tmp_path, "cli-fixed", "2.0.0", key_dir / "ci.key", payload="changed\n")
    message = _one_line_error(shared_hub.cli("release", "push", str(other), check=False))
    assert "409 version_conflict" in message and "bump the version" in message


def test_push_signed_by_an_untrusted_key_is_refused(shared_hub, tmp_path):
    generate_release_key().write_private_key(tmp_path / "rogue.key")  # never applied
    archive = _signed(tmp_path, "cli-rogue", "1.0.0", tmp_path / "rogue.key")
    refused = shared_hub.cli("release", "push", str(archive), check=False)
    assert "403 untrusted_key" in _one_line_error(refused)
    rows = json.loads(shared_hub.cli("release", "ls", "-o", "json").stdout)
    assert "cli-rogue" not in {r["name"] for r in rows}


def test_push_of_an_archive_changed_after_signing_is_refused(shared_hub, key_dir, tmp_path):
    archive = _signed(tmp_path, "cli-tamper", "1.0.0", key_dir / "ci.key")
    data = bytearray(archive.read_bytes())
    data[-5] ^= 0xFF
    archive.write_bytes(bytes(data))
    refused = shared_hub.cli("release", "push", str(archive), check=False)
    assert "sign it again" in _one_line_error(refused)


@pytest.fixture(scope="module")
def materials(tmp_path_factory) -> Path:
    """Files for the mistakes below, made through the library (not what is tested)."""
    tmp = tmp_path_factory.mktemp("materials")
    build_release(_module(tmp / "ok", "cli-ok", "1.0.0"), tmp / "unsigned.tar.zst")
    (tmp / "badmodule").mkdir()
    (tmp / "badmodule" / "fogline-module.yaml").write_text("name: Bad_Name\n")
    (tmp / "garbage.tar.zst").write_bytes(b"\x00" * 100)
    generate_release_key().write_private_key(tmp / "k.key")
    return tmp


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["release", "push", "{tmp}/missing.tar.zst"], "No such file"),
        (["release", "push", "{tmp}/unsigned.tar.zst"], "fogline release sign"),
        (["release", "build", "{tmp}/nowhere", "-o", "{tmp}/x.tar.zst"], "fogline-module.yaml"),
        (["release", "build", "{tmp}/badmodule", "-o", "{tmp}/x.tar.zst"], "name"),
        (["release", "sign", "{tmp}/unsigned.tar.zst", "--key", "{tmp}/nokey"], "does not exist"),
        (["release", "sign", "{tmp}/unsigned.tar.zst", "--key", "{tmp}/garbage.tar.zst"], "PEM"),
        (["release", "sign", "{tmp}/garbage.tar.zst", "--key", "{tmp}/k.key"], "garbage.tar.zst"),
    ],
)
def test_mistakes_are_one_line_errors(shared_hub, materials, args, expected):
    result = shared_hub.cli(*[a.format(tmp=materials) for a in args], check=False)
    message = _one_line_error(result)
    assert str(materials) in message and expected in message
