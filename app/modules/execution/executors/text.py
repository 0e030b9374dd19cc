"""Prompt and text nodes. Each is a thin declaration around one provider call."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.modules.execution.executors.api import NodeExecutionContext, NodeOutput, Port, executor
from app.modules.execution.prompts import text as prompts
from app.modules.execution.prompts.adapters import render_adapters

TEXT_IN = (Port("input", "text", "text from upstream nodes"),
           Port("adapters", "adapter", "personas and scenes"))
TEXT_OUT = (Port("output", "text"),)
# compressor calls the model only above this many characters (DESIGN.md §7).
COMPRESS_THRESHOLD_CHARS = 2500


class _Config(BaseModel):
    model_config = ConfigDict(extra="ignore")

    temperature: float | None = Field(default=None, ge=0, le=2,
                                      description="Sampling temperature (node-type default)")


def _temperature(ctx: NodeExecutionContext, default: float | None) -> float | None:
    value = ctx.config.temperature
    return default if value is None else float(value)


def _require_text(ctx: NodeExecutionContext, text: str) -> str:
    if not text.strip():
        raise ValueError(f"{ctx.node_type} needs text input")
    return text


class InitialPromptConfig(_Config):
    prompt: str = Field(default="", max_length=100_000, description="The base prompt",
                        json_schema_extra={"format": "multiline"})


@executor("initialPrompt", config=InitialPromptConfig, category="Prompts",
          name="Initial Prompt", inputs=TEXT_IN, outputs=TEXT_OUT, api_call="conditional",
          description="The starting prompt; merged with personas and scenes by the model "
                      "only when adapters are connected")
async def initial_prompt(ctx: NodeExecutionContext) -> NodeOutput:
    base = "\n\n".join(part for part in (ctx.config.prompt, ctx.input_text) if part)
    if not ctx.inputs.adapters:
        return NodeOutput(text=base)
    material = f"Base prompt:\n{base}\n\n{render_adapters(ctx.inputs.adapters.values())}"
    text = await ctx.complete(material, system=prompts.INITIAL_PROMPT_WITH_ADAPTERS,
                              temperature=_temperature(ctx, 0.7))
    return NodeOutput(text=text)


@executor("promptEnhancer", config=_Config, category="Prompts", name="Prompt Enhancer",
          inputs=TEXT_IN, outputs=TEXT_OUT, api_call="always",
          description="Rewrites a prompt to be vivid and specific")
async def prompt_enhancer(ctx: NodeExecutionContext) -> NodeOutput:
    text = _require_text(ctx, ctx.input_text)
    adapters = render_adapters(ctx.inputs.adapters.values())
    if adapters:
        text = f"{text}\n\n{adapters}"
    return NodeOutput(text=await ctx.complete(text, system=prompts.PROMPT_ENHANCER,
                                              temperature=_temperature(ctx, 0.7)))


class TranslatorConfig(_Config):
    language: str = Field(default="English", min_length=1, max_length=100,
                          description="Target language")


@executor("translator", config=TranslatorConfig, category="Text", name="Translator",
          inputs=TEXT_IN[:1], outputs=TEXT_OUT, api_call="always",
          description="Translates text into another language")
async def translator(ctx: NodeExecutionContext) -> NodeOutput:
    text = _require_text(ctx, ctx.input_text)
    system = prompts.TRANSLATOR.format(language=ctx.config.language)
    return NodeOutput(text=await ctx.complete(text, system=system,
                                              temperature=_temperature(ctx, 0.2)))


class StoryConfig(_Config):
    style: str = Field(default="literary", max_length=200)
    length: Literal["short", "medium", "long"] = "short"


STORY_TEMPERATURE = 0.95


@executor("storyTeller", config=StoryConfig, category="Text", name="Story Teller",
          inputs=TEXT_IN, outputs=TEXT_OUT, api_call="always",
          default_temperature=STORY_TEMPERATURE,
          description="Writes a story from prompts, personas and scenes")
async def story_teller(ctx: NodeExecutionContext) -> NodeOutput:
    text = _require_text(ctx, ctx.input_text)
    adapters = render_adapters(ctx.inputs.adapters.values())
    if adapters:
        text = f"{text}\n\n{adapters}"
    system = prompts.STORY_TELLER.format(length=ctx.config.length, style=ctx.config.style)
    return NodeOutput(text=await ctx.complete(
        text, system=system, temperature=_temperature(ctx, STORY_TEMPERATURE)))


@executor("grammarFix", config=_Config, category="Text", name="Grammar Fix",
          inputs=TEXT_IN[:1], outputs=TEXT_OUT, api_call="always",
          description="Corrects grammar, spelling and punctuation")
async def grammar_fix(ctx: NodeExecutionContext) -> NodeOutput:
    text = _require_text(ctx, ctx.input_text)
    return NodeOutput(text=await ctx.complete(text, system=prompts.GRAMMAR_FIX,
                                              temperature=_temperature(ctx, 0.0)))


class CompressorConfig(_Config):
    max_chars: int = Field(default=COMPRESS_THRESHOLD_CHARS, ge=100, le=100_000)


@executor("compressor", config=CompressorConfig, category="Text", name="Compressor",
          inputs=TEXT_IN[:1], outputs=TEXT_OUT, api_call="conditional",
          description=f"Condenses text; calls the model only above "
                      f"{COMPRESS_THRESHOLD_CHARS} characters")
async def compressor(ctx: NodeExecutionContext) -> NodeOutput:
    text = ctx.input_text
    if len(text) <= COMPRESS_THRESHOLD_CHARS:
        return NodeOutput(text=text, data={"compressed": False})
    system = prompts.COMPRESSOR.format(max_chars=ctx.config.max_chars)
    result = await ctx.complete(text, system=system, temperature=_temperature(ctx, 0.3))
    return NodeOutput(text=result, data={"compressed": True, "input_chars": len(text)})
