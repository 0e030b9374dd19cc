"""The component catalog, generated from executor declarations (one source of truth).

`describe` turns an ExecutorSpec into the catalog entry; `sync_catalog` writes the five
component tables so they equal the registry exactly (stale types are removed).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    AgenticComponent,
    ComponentApiConfig,
    ComponentField,
    ComponentOutputSchema,
    ComponentPort,
)
from app.modules.execution.executors.api import ExecutorSpec

_JSON_KINDS = {"string": "string", "number": "number", "integer": "integer",
               "boolean": "boolean", "object": "object", "array": "array"}


def _field_kind(prop: Mapping[str, Any]) -> tuple[str, list[Any] | None]:
    if "enum" in prop:
        return "select", list(prop["enum"])
    if "const" in prop:
        return "select", [prop["const"]]
    kind = prop.get("type")
    if kind is None:
        for option in prop.get("anyOf", []):
            if option.get("type") not in (None, "null"):
                return _field_kind(option)
        return "any", None
    if prop.get("format") == "multiline":
        return "text", None
    return _JSON_KINDS.get(str(kind), "any"), None


def describe_fields(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    props = schema.get("properties", {})
    fields = []
    for name, info in model.model_fields.items():
        prop = props.get(info.alias or name, {})
        kind, options = _field_kind(prop)
        default = None if info.default is PydanticUndefined else info.default
        if info.default_factory is not None:
            default = info.default_factory()  # type: ignore[call-arg]
        if isinstance(default, BaseModel):
            default = default.model_dump(mode="json")
        fields.append({
            "name": name, "kind": kind, "default": default, "required": info.is_required(),
            "options": options, "description": info.description or prop.get("description", ""),
        })
    return fields


def describe(spec: ExecutorSpec) -> dict[str, Any]:
    """The catalog entry of one executor, as `/components` shows it."""
    return {
        "type": spec.type,
        "name": spec.display_name,
        "category": spec.category,
        "description": spec.description,
        "fields": describe_fields(spec.config_model),
        "ports": [
            *({"name": p.name, "direction": "input", "kind": p.kind,
               "description": p.description} for p in spec.inputs),
            *({"name": p.name, "direction": "output", "kind": p.kind,
               "description": p.description} for p in spec.outputs),
        ],
        "api_config": {
            "makes_api_call": spec.api_call != "never", "api_call": spec.api_call,
            "default_temperature": spec.default_temperature, "provider_hints": {},
        },
        "output_schema": dict(spec.output_schema),
    }


def entry_from_row(row: AgenticComponent) -> dict[str, Any]:
    api = row.api_config
    return {
        "id": str(row.id), "type": row.type, "name": row.name, "category": row.category,
        "description": row.description,
        "fields": [{"name": f.name, "kind": f.kind, "default": f.default,
                    "required": f.required, "options": f.options,
                    "description": f.description} for f in row.fields],
        "ports": [{"name": p.name, "direction": p.direction, "kind": p.kind,
                   "description": p.description} for p in row.ports],
        "api_config": {
            "makes_api_call": api.makes_api_call if api else False,
            "api_call": api.api_call if api else "never",
            "default_temperature": api.default_temperature if api else None,
            "provider_hints": api.provider_hints if api else {},
        },
        "output_schema": row.output_schema.json_schema if row.output_schema else {},
    }


def _comparable(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "id"}


async def sync_catalog(session: AsyncSession, executors: Mapping[str, ExecutorSpec]) -> int:
    """Make the component tables equal the registry. Returns how many entries changed."""
    rows = {row.type: row for row in (await session.execute(select(AgenticComponent))).scalars()}
    changed = 0
    for stale in set(rows) - set(executors):
        await session.delete(rows.pop(stale))
        changed += 1
    for type_, spec in sorted(executors.items()):
        entry = describe(spec)
        row = rows.get(type_)
        if row is not None and _comparable(entry_from_row(row)) == entry:
            continue
        if row is not None:
            await session.execute(delete(AgenticComponent).where(AgenticComponent.id == row.id))
            await session.flush()
        session.add(_row_from_entry(entry))
        changed += 1
    await session.flush()
    return changed


def _row_from_entry(entry: Mapping[str, Any]) -> AgenticComponent:
    api = entry["api_config"]
    return AgenticComponent(
        type=entry["type"], name=entry["name"], category=entry["category"],
        description=entry["description"],
        fields=[ComponentField(position=i, **f) for i, f in enumerate(entry["fields"])],
        ports=[ComponentPort(position=i, **p) for i, p in enumerate(entry["ports"])],
        api_config=ComponentApiConfig(**api),
        output_schema=ComponentOutputSchema(json_schema=entry["output_schema"]),
    )
