"""A fake device that reports an applied revision and module health, for rollout tests."""

from __future__ import annotations

from typing import Any

import httpx

from .device import FACTS, TestDevice


def desired_revision(device: TestDevice) -> str | None:
    """The revision the hub serves this device now."""
    with device.client() as client:
        response = client.get("/v1/desired")
    assert response.status_code == 200, response.text
    revision: str | None = response.json()["revision"]
    return revision


def report_applied(
    device: TestDevice,
    revision: str | None,
    *,
    ok: bool = True,
    error: str | None = None,
    modules: dict[str, str] | None = None,
) -> httpx.Response:
    """Report `revision` applied, with each module's state (healthy, crash-loop, ...)."""
    body: dict[str, Any] = {
        "facts": FACTS,
        "labels": {},
        "applied": {"revision": revision, "ok": ok, "error": error},
        "modules": {"modules": {name: {"state": s} for name, s in (modules or {}).items()}},
    }
    with device.client() as client:
        response = client.post("/v1/report", json=body)
    assert response.status_code == 200, response.text
    return response


def sync(device: TestDevice, *, ok: bool = True, modules: dict[str, str] | None = None) -> str:
    """Fetch the served revision and report it applied; returns it."""
    revision = desired_revision(device)
    report_applied(device, revision, ok=ok, modules=modules)
    assert revision is not None
    return revision
