"""Both ways hub/_inventory.py answers a selector give the same pages: driven
from the label index (a narrow term) and walking the sort order (a broad one),
on SQLite and PostgreSQL."""

import datetime as dt

import pytest
from sqlalchemy.orm import Session

from fogline.hub import _inventory, make_engine
from fogline.hub._db import upgrade_schema
from fogline.hub._inventory import device_page, driving_requirement, parse_device_query
from fogline.manifest import parse_selector
from tests.support.inventory import fleet_devices, insert_devices

NOW = dt.datetime.now(dt.UTC)
SELECTORS = [
    "site=site-7",
    "site in (site-1,site-2),tier notin (gold)",
    "tier=gold,env!=lab",
    "site=nowhere",
    "env,!retired",
]


def _walk(session: Session, **params: str) -> list[str]:
    names: list[str] = []
    cursor: str | None = None
    for _ in range(100):
        query = parse_device_query(**params, limit="37", **({"cursor": cursor} if cursor else {}))
        rows, cursor = device_page(session, query, NOW, 35.0)
        names += [row.name for row in rows]
        if cursor is None:
            return names
    raise AssertionError("more than 100 pages")


def test_driven_and_walked_plans_list_the_same_devices(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(db_url)
    try:
        upgrade_schema(engine)
        devices = list(fleet_devices(1200, NOW))
        insert_devices(db_url, devices)
        with Session(engine) as session:
            assert driving_requirement(session, parse_selector("site=site-7")) is not None
            driven = {s: _walk(session, selector=s) for s in SELECTORS}
            driven_desc = {s: _walk(session, selector=s, order="desc") for s in SELECTORS}
            monkeypatch.setattr(_inventory, "DRIVING_CANDIDATES", 0)
            assert driving_requirement(session, parse_selector("site=site-7")) is None
            walked = {s: _walk(session, selector=s) for s in SELECTORS}
        for text in SELECTORS:
            selector = parse_selector(text)
            expected = sorted(d["name"] for d in devices if selector.matches(d["labels"]))
            assert driven[text] == walked[text] == expected, text
            assert driven_desc[text] == expected[::-1], text
    finally:
        engine.dispose()
