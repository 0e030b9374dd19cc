"""Data-source nodes: they make no API call and feed other nodes over adapter edges."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.modules.execution.config.scene_prompts import SCENE_PRESETS
from app.modules.execution.executors.api import NodeExecutionContext, NodeOutput, Port, executor
from app.modules.execution.prompts.adapters import describe_persona, describe_scene

_ADAPTER_OUT = (Port("adapter", "adapter", "persona or scene data for prompt nodes"),)


class CharacterConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(default="", max_length=200, description="Character name")
    description: str = Field(default="", max_length=10_000, description="Who they are")
    appearance: str = Field(default="", max_length=10_000, description="How they look")
    personality: str = Field(default="", max_length=10_000, description="How they behave")
    style: str = Field(default="", max_length=2_000, description="Visual or narrative style")
    character_id: str | None = Field(default=None, description="A saved consistent character")


PERSONA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"},
                   "data": {"type": "object", "properties": {
                       "kind": {"const": "persona"}, "name": {"type": "string"},
                       "description": {"type": "string"}, "appearance": {"type": "string"},
                       "personality": {"type": "string"}, "style": {"type": "string"}}}},
}


@executor("consistentCharacter", config=CharacterConfig, category="Sources",
          name="Consistent Character", inputs=(), outputs=_ADAPTER_OUT,
          output_schema=PERSONA_SCHEMA,
          description="A persona kept consistent across prompts (no API call)")
async def consistent_character(ctx: NodeExecutionContext) -> NodeOutput:
    config: CharacterConfig = ctx.config
    persona = {"kind": "persona", **config.model_dump(exclude={"character_id"})}
    if config.character_id:
        persona["character_id"] = config.character_id
    return NodeOutput(text=describe_persona(persona), data=persona)


class SceneConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = Field(default="", max_length=200)
    setting: str = Field(default="", max_length=10_000, description="Where it happens")
    time_of_day: str = Field(default="", max_length=200)
    mood: str = Field(default="", max_length=2_000)
    camera: str = Field(default="", max_length=2_000)
    preset: str = Field(default="none", json_schema_extra={"enum": list(SCENE_PRESETS)},
                        description="Fills camera and mood when left empty")


SCENE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"},
                   "data": {"type": "object", "properties": {
                       "kind": {"const": "scene"}, "title": {"type": "string"},
                       "setting": {"type": "string"}, "time_of_day": {"type": "string"},
                       "mood": {"type": "string"}, "camera": {"type": "string"}}}},
}


@executor("sceneBuilder", config=SceneConfig, category="Sources", name="Scene Builder",
          inputs=(), outputs=_ADAPTER_OUT, output_schema=SCENE_SCHEMA,
          description="Describes a scene: setting, time, mood, camera (no API call)")
async def scene_builder(ctx: NodeExecutionContext) -> NodeOutput:
    config: SceneConfig = ctx.config
    if config.preset not in SCENE_PRESETS:
        raise ValueError(f"unknown scene preset {config.preset!r}")
    scene = {"kind": "scene", **config.model_dump(exclude={"preset"})}
    for key, value in SCENE_PRESETS[config.preset].items():
        scene[key] = scene.get(key) or value
    return NodeOutput(text=describe_scene(scene), data=scene)
