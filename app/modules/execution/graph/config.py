"""Node config: the common fields every node may carry, and its executor's config model."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from app.modules.execution.executors.api import ExecutorSpec
from app.modules.execution.graph.problems import INVALID_NODE_CONFIG, GraphProblem

COMMON_FIELDS = ("model", "timeout_s", "max_attempts")
# Keys a builder puts in every node's `data` for itself: ignored without a warning.
BUILDER_KEYS = frozenset({"label"})
UNKNOWN_CONFIG_KEY = "unknown_config_key"


@dataclass(frozen=True)
class CommonFields:
    """The engine-owned node settings; None means "use the default" (or the value was bad)."""

    model: str | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None


def common_fields(data: Mapping[str, Any]) -> CommonFields:
    """The valid common fields of a node's `data`; invalid values read as None (validation
    reports them, so a validated graph never hits that case)."""
    return _parse_common(data, node_id=None)[0]


def validate_config(
    spec: ExecutorSpec, data: Mapping[str, Any], *, node_id: str | None = None
) -> tuple[BaseModel | None, list[GraphProblem]]:
    """Validate a node's `data`: the common fields, then the executor's config model.

    Returns the config instance whenever the config model accepted it (even if a common field
    is bad; the problems say so) and every problem found, each tagged with `node_id`.
    """
    _, problems = _parse_common(data, node_id=node_id)
    model: type[BaseModel] = spec.config_model  # annotated: api.py shadows `type` for mypy
    # Only the keys the config model declares reach it: builders add keys of their own
    # (`label`), and a plugin's model may be declared with extra="forbid".
    accepted = _declared_keys(model)
    config_data = {
        key: value for key, value in data.items()
        if key in accepted and key not in COMMON_FIELDS
    }
    try:
        return model.model_validate(config_data), problems
    except ValidationError as exc:
        for error in exc.errors():
            path = ".".join(str(part) for part in error["loc"]) or "(config)"
            problems.append(_problem(f"{path}: {error['msg']}", node_id))
    except Exception as exc:
        # Pydantic wraps only ValueError/AssertionError; a plugin bug must not crash validation.
        problems.append(_problem(f"config: {type(exc).__name__}: {exc}", node_id))
    return None, problems


def unknown_config_keys(spec: ExecutorSpec, data: Mapping[str, Any]) -> list[str]:
    """The keys of a node's `data` that nothing reads: not its executor's config, not a
    common field, not a builder's own key. They are ignored, and reported as warnings, so a
    user who wrote `text` where `prompt` was meant can see why the output is empty."""
    known = _declared_keys(spec.config_model)
    return [key for key in data
            if key not in known and key not in COMMON_FIELDS and key not in BUILDER_KEYS]


@functools.cache
def _declared_keys(model: type[BaseModel]) -> frozenset[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(name)
        # Accept the alias spellings too, or an aliased field could never be set.
        for alias in (info.alias, info.validation_alias):
            if isinstance(alias, str):
                keys.add(alias)
    return frozenset(keys)


def _parse_common(
    data: Mapping[str, Any], *, node_id: str | None
) -> tuple[CommonFields, list[GraphProblem]]:
    problems: list[GraphProblem] = []

    # JSON null reads as "not set": a builder clearing a field may send null rather than omit it.
    model = data.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        problems.append(_problem("model: must be a non-empty string", node_id))
        model = None

    timeout = data.get("timeout_s")
    # bool is an int subclass in Python but never a meaningful number here.
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float)
        or not math.isfinite(timeout) or timeout <= 0
    ):
        problems.append(_problem("timeout_s: must be a positive number", node_id))
        timeout = None

    attempts = data.get("max_attempts")
    if attempts is not None and (
        isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
    ):
        problems.append(_problem("max_attempts: must be an integer ≥ 1", node_id))
        attempts = None

    fields = CommonFields(
        model=model,
        timeout_s=float(timeout) if timeout is not None else None,
        max_attempts=attempts,
    )
    return fields, problems


def _problem(message: str, node_id: str | None) -> GraphProblem:
    prefix = f"node '{node_id}': " if node_id is not None else ""
    return GraphProblem(INVALID_NODE_CONFIG, prefix + message, node_id=node_id)
