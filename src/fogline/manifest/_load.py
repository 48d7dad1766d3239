"""load_manifests: compose, validate every document, cross-check, then convert.

Every problem in every document is collected before raising once, so an
operator fixes a whole file in one pass and nothing is half-applied.
"""

import difflib
import types
import typing
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ._errors import BlockError, ManifestError, Problem
from ._model import (
    BlockValidator,
    BlockValidators,
    Deployment,
    DriftPolicy,
    ManifestSet,
    Origin,
    PolicyException,
    ProvisioningClaim,
    ReleaseKey,
    VulnerabilityPolicy,
)
from ._paths import render_path
from ._schema import (
    API_VERSION,
    MODELS,
    ClaimModel,
    DeploymentModel,
    ReleaseKeyModel,
    SelectorModel,
    VulnerabilityPolicyModel,
)
from ._schema_checks import FieldProblems, decode_public_key, describe
from ._selector import Operator, Requirement, Selector, selectors_overlap
from ._yaml import LocatedDocument, ManifestSource, compose_documents

Loc = tuple[str | int, ...]
Manifest = Deployment | ProvisioningClaim | ReleaseKey | VulnerabilityPolicy

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "a boolean",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def load_manifests(
    sources: Sequence[ManifestSource], *, validators: BlockValidators | None = None
) -> ManifestSet:
    """Parse and validate manifest sources into a ManifestSet.

    Raises:
        ManifestError: anything wrong in any document: YAML syntax, shape,
            types, unknown or missing fields, duplicate names, deployments
            that tie on priority and can select the same device, or a
            problem reported by one of `validators`. All problems at once.
    """
    documents, problems = compose_documents(sources)
    loaded: list[tuple[LocatedDocument, Manifest]] = []
    names: dict[tuple[str, str], LocatedDocument] = {}
    for doc in documents:
        if not doc.is_sound:
            continue
        manifest = _validate(doc, problems, validators or BlockValidators())
        # Names are checked on every document, valid or not, so a duplicate
        # shows up in the same run as the other mistakes.
        is_first = _check_name_unique(doc, names, problems)
        if manifest is not None and is_first:
            loaded.append((doc, manifest))
    _check_priorities([(d, m) for d, m in loaded if isinstance(m, Deployment)], problems)
    if problems:
        order = {source.name: i for i, source in reversed(list(enumerate(sources)))}
        problems.sort(key=lambda p: (order.get(p.file, -1), p.line or 0, p.column or 0))
        raise ManifestError(problems)
    return ManifestSet(
        deployments=tuple(m for _, m in loaded if isinstance(m, Deployment)),
        claims=tuple(m for _, m in loaded if isinstance(m, ProvisioningClaim)),
        release_keys=tuple(m for _, m in loaded if isinstance(m, ReleaseKey)),
        vulnerability_policies=tuple(m for _, m in loaded if isinstance(m, VulnerabilityPolicy)),
    )


def _problem(doc: LocatedDocument, loc: Loc, reason: str, *, at_key: bool = False) -> Problem:
    line, column = doc.locate(loc, at_key=at_key)
    return Problem(doc.file, line, column, render_path(loc), reason)


def _validate(
    doc: LocatedDocument, problems: list[Problem], validators: BlockValidators
) -> Manifest | None:
    value = doc.value
    if not isinstance(value, dict):
        reason = (
            "a document must be a mapping with apiVersion, kind, metadata and spec "
            f"(got {describe(value)})"
        )
        problems.append(_problem(doc, (), reason))
        return None
    if value.get("apiVersion") != API_VERSION:
        if "apiVersion" in value:
            reason = f"must be {API_VERSION} (got {describe(value['apiVersion'])})"
        else:
            reason = f"required field is missing (expected {API_VERSION})"
        # Another version may mean another schema: checking more would mislead.
        problems.append(_problem(doc, ("apiVersion",), reason))
        return None
    kind = value.get("kind")
    if not isinstance(kind, str) or kind not in MODELS:
        expected = ", ".join(MODELS)
        if "kind" in value:
            reason = f"must be one of {expected} (got {describe(kind)})"
        else:
            reason = f"required field is missing (one of {expected})"
        problems.append(_problem(doc, ("kind",), reason))
        return None
    model_type = MODELS[kind]
    try:
        model = model_type.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            problems.extend(_translate(doc, model_type, error))
        return None
    origin = Origin(doc.file, *doc.start)
    if isinstance(model, DeploymentModel):
        deployment = _deployment(model, origin, doc)
        problems.extend(_run_block_validators(doc, deployment, validators))
        return deployment
    if isinstance(model, ClaimModel):
        spec = model.spec
        return ProvisioningClaim(
            model.metadata.name,
            spec.maxUses,
            spec.expires,
            spec.labels,
            origin=origin,
            names=tuple(spec.names),
        )
    if isinstance(model, VulnerabilityPolicyModel):
        policy = model.spec
        return VulnerabilityPolicy(
            model.metadata.name,
            policy.blockAt,
            policy.unknownSeverity,
            policy.onPush,
            tuple(policy.modules) if policy.modules is not None else None,
            tuple(PolicyException(e.advisory, e.reason, e.expires) for e in policy.exceptions),
            origin=origin,
            selector=_selector(policy.selector) if policy.selector is not None else None,
        )
    assert isinstance(model, ReleaseKeyModel)
    modules = tuple(model.spec.modules) if model.spec.modules is not None else None
    return ReleaseKey(
        model.metadata.name, decode_public_key(model.spec.publicKey), origin, modules=modules
    )


def _selector(model: SelectorModel) -> Selector:
    return Selector(
        match_labels=model.matchLabels,
        match_expressions=tuple(
            Requirement(req.key, Operator(req.operator), frozenset(req.values or ()))
            for req in model.matchExpressions
        ),
    )


def _deployment(model: DeploymentModel, origin: Origin, doc: LocatedDocument) -> Deployment:
    spec = model.spec
    module_origins = tuple(
        Origin(doc.file, *doc.locate(("spec", "modules", i))) for i in range(len(spec.modules))
    )
    selector = _selector(spec.selector)
    return Deployment(
        name=model.metadata.name,
        selector=selector,
        priority=spec.priority,
        config=spec.config,
        modules=tuple(spec.modules),
        pipelines=tuple(spec.pipelines),
        rollout=spec.rollout,
        drift=cast(DriftPolicy | None, spec.drift),
        origin=origin,
        module_origins=module_origins,
        sensors=spec.sensors.model_dump(exclude_unset=True) if spec.sensors else {},
        self_healing=spec.selfHealing.model_dump(exclude_none=True) if spec.selfHealing else {},
    )


def _translate(
    doc: LocatedDocument, model_type: type[BaseModel], error: ErrorDetails
) -> list[Problem]:
    """Turn one pydantic error into Problems located at the YAML node."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    ctx = error.get("ctx", {})
    cause = ctx.get("error")
    if isinstance(cause, FieldProblems):
        return [
            _problem(doc, (*loc, *suffix), reason, at_key=at_key)
            for suffix, reason, at_key in cause.items
        ]
    if kind == "missing":
        return [_problem(doc, loc, "required field is missing")]
    if kind == "extra_forbidden":
        return [_problem(doc, loc, _unknown_field(model_type, loc), at_key=True)]
    got = describe(error.get("input"))
    if kind in _EXPECTED:
        reason = f"must be {_EXPECTED[kind]} (got {got})"
    elif kind == "greater_than_equal":
        reason = f"must be at least {ctx['ge']} (got {error.get('input')})"
    elif kind == "less_than_equal":
        reason = f"must be at most {ctx['le']} (got {error.get('input')})"
    elif kind == "too_long":
        reason = f"must have at most {ctx['max_length']} entries (got {ctx['actual_length']})"
    elif isinstance(cause, ValueError):
        reason = str(cause)
    else:  # a pydantic check we do not word ourselves; its text is still clear
        reason = error["msg"][:1].lower() + error["msg"][1:]
    return [_problem(doc, loc, reason)]


def _unknown_field(model_type: type[BaseModel], loc: Loc) -> str:
    allowed = _fields_at(model_type, loc[:-1])
    key = str(loc[-1])
    if not allowed:
        return f"unknown field {key!r}"
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown field {key!r} (did you mean {close[0]!r}?)"
    return f"unknown field {key!r} (expected one of: {', '.join(allowed)})"


def _fields_at(model_type: type[BaseModel], loc: Loc) -> list[str]:
    """Return the field names of the model found at `loc`, or [] if none is."""
    current: Any = model_type
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            if not isinstance(part, str) or part not in current.model_fields:
                return []
            current = current.model_fields[part].annotation
        current = _unwrap(current)
        origin = typing.get_origin(current)
        if isinstance(part, int) and origin is list:
            current = _unwrap(typing.get_args(current)[0])
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and `| None` to reach the type that matters."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0]
        else:
            return annotation


def _run_block_validators(
    doc: LocatedDocument, deployment: Deployment, validators: BlockValidators
) -> list[Problem]:
    runs: list[tuple[BlockValidator | None, Loc, Any]] = []
    runs += [
        (validators.module, ("spec", "modules", i), m) for i, m in enumerate(deployment.modules)
    ]
    runs += [
        (validators.pipeline, ("spec", "pipelines", i), p)
        for i, p in enumerate(deployment.pipelines)
    ]
    if "rollout" in doc.value.get("spec", {}):
        runs.append((validators.rollout, ("spec", "rollout"), deployment.rollout))
    problems: list[Problem] = []
    for validator, loc, block in runs:
        if validator is None:
            continue
        try:
            validator(block)
        except BlockError as exc:
            problems += [_problem(doc, (*loc, *path), reason) for path, reason in exc.problems]
    return problems


def _check_name_unique(
    doc: LocatedDocument, names: dict[tuple[str, str], LocatedDocument], problems: list[Problem]
) -> bool:
    """Report a second use of a name within a kind; return False for it."""
    value = doc.value
    metadata = value.get("metadata") if isinstance(value, dict) else None
    name = metadata.get("name") if isinstance(metadata, dict) else None
    kind = value.get("kind") if isinstance(value, dict) else None
    if not isinstance(name, str) or not isinstance(kind, str) or kind not in MODELS:
        return True
    if value.get("apiVersion") != API_VERSION:
        return True
    earlier = names.setdefault((kind, name), doc)
    if earlier is doc:
        return True
    where = _where(earlier, ("metadata", "name"))
    reason = f"duplicate {kind} name {name!r} (first defined at {where})"
    problems.append(_problem(doc, ("metadata", "name"), reason))
    return False


def _check_priorities(
    deployments: list[tuple[LocatedDocument, Deployment]], problems: list[Problem]
) -> None:
    """Reject two deployments with one priority whose selectors can overlap.

    Which of them would win on a device they share is undefined, so the
    operator must order them. Each deployment reports its first clash only,
    which keeps a thousand `selector: {}` deployments to a thousand lines.
    """
    by_priority: dict[int, list[tuple[LocatedDocument, Deployment]]] = defaultdict(list)
    for doc, deployment in deployments:
        peers = by_priority[deployment.priority]
        for peer_doc, peer in peers:
            if selectors_overlap(peer.selector, deployment.selector):
                reason = (
                    f"deployment {deployment.name!r} has the same priority "
                    f"{deployment.priority} as {peer.name!r} "
                    f"(at {_where(peer_doc, ('metadata', 'name'))}) and their selectors can "
                    "match the same device; give them different priorities or "
                    "selectors that exclude each other"
                )
                problems.append(_problem(doc, ("spec", "priority"), reason))
                break
        peers.append((doc, deployment))


def _where(doc: LocatedDocument, loc: Loc) -> str:
    line, column = doc.locate(loc)
    return f"{doc.file}:{line}:{column}"
