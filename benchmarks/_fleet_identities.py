"""Device identities for a large simulated fleet, made in bulk and cached by CA.

Enrolling 100,000 devices over mTLS (a CSR and `POST /v1/enroll` each) would
take longer than the benchmark, and the load test is about what comes after
enrollment. So a fleet CA is made once in the cache directory, device keys
and certificates are made in a process pool and signed by it exactly as the
hub signs them (`CertificateAuthority.issue_device_cert`: the device id in
the URI SAN), and the device rows go straight into the hub's database
(`tests.support.inventory.insert_devices`). The hub then starts on a data
directory holding that CA.

    CACHE/ca/ca.pem, ca-key.pem (0600)        the fleet CA, made on first use
    CACHE/<CA key id>/<chunk>/<i>.pem (0600)  device i's key and certificate
    CACHE/<CA key id>/<chunk>.serials         one "serial not_after" line per
                                              device of the chunk, written last:
                                              the chunk is complete when it exists

Device i is `lg-<i>`, with the id `tests.support.inventory.fleet_device`
gives it, so its row and its certificate agree.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from fogline.security import CertificateAuthority, make_csr, private_key_pem
from tests.support.inventory import fleet_device

PREFIX: Final = "lg"
CHUNK: Final = 1000  # devices per pool task and per cache directory
VALIDITY: Final = dt.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class Identity:
    """Device `index`: its PEM file (key, then certificate) and what its row holds."""

    index: int
    pem: str
    serial_hex: str
    not_after: dt.datetime


def fleet_ca(cache: Path) -> CertificateAuthority:
    """The cached fleet CA (made on first use)."""
    directory = cache / "ca"
    directory.mkdir(parents=True, exist_ok=True)
    return CertificateAuthority.load_or_create(directory)


def install_ca(cache: Path, hub_data_dir: Path) -> None:
    """Copy the cached CA into a hub data directory that does not exist yet,
    so the hub issues from it and trusts the cached device certificates."""
    hub_data_dir.mkdir(parents=True, mode=0o700)
    for name in (CertificateAuthority.CERT_FILE, CertificateAuthority.KEY_FILE):
        shutil.copy2(cache / "ca" / name, hub_data_dir / name)


def device_id(index: int) -> str:
    return str(fleet_device(index, _EPOCH, PREFIX)["id"])


_EPOCH: Final = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _chunk_dir(cache: Path, ca: CertificateAuthority, chunk: int) -> Path:
    return cache / ca.key_id / f"{chunk:04d}"


def _make_chunk(args: tuple[Path, int, int]) -> int:
    """Keys and certificates for devices [start, stop) of chunk `start // CHUNK`
    (runs in a pool process); returns how many it made."""
    cache, start, stop = args
    ca = fleet_ca(cache)
    directory = _chunk_dir(cache, ca, start // CHUNK)
    directory.mkdir(parents=True, exist_ok=True)
    lines = []
    for index in range(start, stop):
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.load_pem_x509_csr(make_csr(key, f"{PREFIX}-{index:06d}"))
        issued = ca.issue_device_cert(csr, device_id(index), VALIDITY)
        _write_private(directory / f"{index}.pem", private_key_pem(key) + issued.pem)
        lines.append(f"{issued.serial:x} {issued.not_after.isoformat()}\n")
    # Written last, by rename: a chunk cut short by a crash is made again.
    done = directory.with_suffix(".serials")
    partial = directory.with_suffix(".partial")
    partial.write_text("".join(lines))
    os.replace(partial, done)
    return stop - start


def _write_private(path: Path, data: bytes) -> None:
    """0600 from the start, like write_secret_file, but not fsynced: two fsyncs
    per file made 100,000 identities take 15 minutes, and a cache lost to a
    power cut is made again (a device whose file is damaged fails its
    handshake, counted in the run's errors)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def make_identities(cache: Path, count: int, pool: Executor) -> tuple[list[Identity], int]:
    """Identities of devices [0, count), made where the cache lacks them;
    returns them and how many were made now."""
    ca = fleet_ca(cache)
    chunks = [(cache, s, min(count, s + CHUNK)) for s in range(0, count, CHUNK)]
    missing = [c for c in chunks if not _complete(_chunk_dir(cache, ca, c[1] // CHUNK), c)]
    made = sum(pool.map(_make_chunk, missing))
    return list(_read(cache, ca, count)), made


def _complete(directory: Path, chunk: tuple[Path, int, int]) -> bool:
    serials = directory.with_suffix(".serials")
    if not serials.exists():
        return False
    # A chunk made for a smaller fleet ends early: make it again in full.
    return len(serials.read_text().splitlines()) >= chunk[2] - chunk[1]


def _read(cache: Path, ca: CertificateAuthority, count: int) -> Iterator[Identity]:
    for start in range(0, count, CHUNK):
        directory = _chunk_dir(cache, ca, start // CHUNK)
        lines = directory.with_suffix(".serials").read_text().splitlines()
        for offset, line in enumerate(lines[: min(CHUNK, count - start)]):
            serial, not_after = line.split()
            index = start + offset
            yield Identity(
                index,
                str(directory / f"{index}.pem"),
                serial,
                dt.datetime.fromisoformat(not_after),
            )


def device_rows(identities: list[Identity], now: dt.datetime) -> Iterator[dict[str, Any]]:
    """DeviceRow column dicts for `insert_devices`: the inventory fleet's
    shape (labels, facts), with each device's real certificate serial."""
    for identity in identities:
        row = fleet_device(identity.index, now, PREFIX)
        row["cert_serial"] = identity.serial_hex
        row["cert_not_after"] = identity.not_after
        row["last_seen"] = None  # not seen until the load generator connects it
        yield row
