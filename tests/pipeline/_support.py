"""Helpers shared by the pipeline tests: build a pipeline from a few lines of spec."""

from __future__ import annotations

from typing import Any

from fogline.pipeline import Pipeline, build_pipeline, validate_pipeline


def make_spec(
    steps: list[dict[str, Any]],
    outputs: list[dict[str, Any]] | None = None,
    **top: Any,
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "test",
        "source": {"mqtt": "sensors/{device}/{metric}"},
        "steps": steps,
        "outputs": outputs or [{"uplink": {"stream": "out"}}],
    }
    raw.update(top)
    return raw


def make_pipeline(
    steps: list[dict[str, Any]],
    outputs: list[dict[str, Any]] | None = None,
    **top: Any,
) -> Pipeline:
    return build_pipeline(validate_pipeline(make_spec(steps, outputs, **top)))


def records_of(emissions: list[Any]) -> list[dict[str, Any]]:
    return [emission.record for emission in emissions]


def window_pipeline(timestamp: str | None = "ts", **window: Any) -> Pipeline:
    """One window step with the given options (default: tumbling 10 s, count), uplinked."""
    options: dict[str, Any] = {"type": "tumbling", "size": "10s", "aggregate": {"n": "count()"}}
    options.update(window)
    top: dict[str, Any] = {"timestamp": timestamp} if timestamp else {}
    return make_pipeline([{"id": "w", "window": options}], **top)
