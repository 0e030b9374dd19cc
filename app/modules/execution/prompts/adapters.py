"""How adapter data (personas, scenes) is rendered into a prompt."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from app.modules.execution.executors.api import AdapterInput


def describe_persona(data: Mapping[str, Any]) -> str:
    parts = [f"Character: {data.get('name', 'unnamed')}"]
    for key in ("description", "appearance", "personality", "style"):
        if data.get(key):
            parts.append(f"{key.capitalize()}: {data[key]}")
    return "\n".join(parts)


def describe_scene(data: Mapping[str, Any]) -> str:
    parts = [f"Scene: {data.get('title') or data.get('setting') or 'untitled'}"]
    for key in ("setting", "time_of_day", "mood", "camera", "prompt"):
        if data.get(key):
            parts.append(f"{key.replace('_', ' ').capitalize()}: {data[key]}")
    return "\n".join(parts)


def render_adapters(adapters: Iterable[AdapterInput]) -> str:
    blocks = []
    for adapter in adapters:
        kind = adapter.data.get("kind")
        if kind == "persona":
            blocks.append(describe_persona(adapter.data))
        elif kind == "scene":
            blocks.append(describe_scene(adapter.data))
        elif adapter.text:
            blocks.append(adapter.text)
    return "\n\n".join(blocks)
