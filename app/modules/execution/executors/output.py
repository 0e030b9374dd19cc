"""The sink node: shows the merged text it receives."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.modules.execution.executors.api import NodeExecutionContext, NodeOutput, Port, executor


class TextOutputConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = Field(default="", max_length=200, description="Label shown in the builder")


@executor("textOutput", config=TextOutputConfig, category="Output", name="Text Output",
          inputs=(Port("input", "text"),), outputs=(Port("output", "text"),),
          description="Displays the text it receives")
async def text_output(ctx: NodeExecutionContext) -> NodeOutput:
    text = ctx.input_text
    return NodeOutput(text=text, data={"characters": len(text)})
