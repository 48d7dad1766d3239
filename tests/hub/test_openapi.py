"""The hub's /openapi.json documents every route, hand-parsed bodies included,
and every reference in it resolves."""

from collections.abc import Iterator
from typing import Any

from fogline.hub import create_app
from fogline.hub._serve import ServeOptions, build_hub


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_reference_resolves_and_the_report_body_is_documented(tmp_path):
    hub = build_hub(ServeOptions(data_dir=tmp_path / "hub"))
    try:
        spec = create_app(hub.state).openapi()
    finally:
        hub.state.engine.dispose()
    schemas = spec["components"]["schemas"]
    refs = set(_refs(spec))
    assert refs, "the spec uses components"
    for ref in refs:
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    body = spec["paths"]["/v1/report"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/Report"}
    assert {"facts", "labels", "applied"} <= schemas["Report"]["properties"].keys()
