"""Helpers shared by the manifest tests."""

import textwrap

import pytest

from fogline.manifest import ManifestError, ManifestSet, ManifestSource, load_manifests


def source(text: str, name: str = "fleet.yaml") -> ManifestSource:
    return ManifestSource(name, textwrap.dedent(text).lstrip("\n"))


def load(text: str, name: str = "fleet.yaml") -> ManifestSet:
    return load_manifests([source(text, name)])


def problems(text: str, name: str = "fleet.yaml") -> list[str]:
    """Load `text`, expect a ManifestError, return its problems rendered."""
    with pytest.raises(ManifestError) as caught:
        load(text, name)
    return [str(p) for p in caught.value.problems]


def deployment_doc(name: str, body: str = "selector: {}") -> str:
    """A Deployment document whose spec is `body` (one YAML line or block)."""
    spec = textwrap.indent(textwrap.dedent(body).strip("\n"), "  ")
    return (
        f"apiVersion: fogline.dev/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n{spec}\n"
    )
