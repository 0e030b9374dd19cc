"""Units of the engine (DESIGN.md §6–§7): retry backoff, stream coalescing, the node status
machine, model resolution, and what each seed executor sends to a provider.

Executors are run directly with the real OpenAI-compatible provider (the real `openai` SDK)
against the fake server on loopback, so "calls the provider" means an HTTP request the server
recorded. One test per backend runs the same checks through the whole engine."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.core.di.discovery import discover_executors
from app.core.events import Event, EventTypes
from app.modules.execution.config.model_defaults import (
    NODE_TYPE_MODEL_DEFAULTS,
    PROVIDER_DEFAULT_MODELS,
    resolve_model,
)
from app.modules.execution.executors import AdapterInput, NodeExecutionContext, NodeInputs
from app.modules.execution.executors.text import COMPRESS_THRESHOLD_CHARS
from app.modules.execution.models import (
    NODE_TRANSITIONS,
    TERMINAL_NODE_STATUSES,
    IllegalTransition,
    NodeStatus,
    check_transition,
)
from app.modules.execution.providers.openai_compat import OpenAICompatibleProvider
from app.modules.execution.runner import RunnerLimits, backoff_delay
from app.modules.execution.streaming import StreamCoalescer
from tests.engine_helpers import (
    edge,
    engine_settings,
    graph,
    node,
    node_events,
    run_events,
    run_flow,
)
from tests.fake_llm_server import FakeLLMServer, reply_for
from tests.helpers import sign_up_and_login

EXECUTORS = discover_executors(include_plugins=False)


@pytest.fixture
def settings_overrides(fake_llm: FakeLLMServer) -> dict[str, Any]:
    return engine_settings(fake_llm)


# --- backoff -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("base", "cap"), [(0.5, 8.0), (0.01, 0.02), (1.0, 1.0)])
def test_backoff_delay_is_exponential_jittered_and_bounded(base: float, cap: float) -> None:
    limits = RunnerLimits(retry_base_delay_s=base, retry_max_delay_s=cap)
    previous_ceiling = 0.0
    for attempt in range(1, 15):
        ceiling = min(cap, base * 2 ** (attempt - 1))
        assert ceiling >= previous_ceiling
        previous_ceiling = ceiling
        delays = [backoff_delay(attempt, limits) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling <= cap for d in delays), (attempt, ceiling)
        assert len(set(delays)) > 1  # jitter: retries of many nodes do not line up
    # The first retry waits about the base delay, later ones reach the cap and stay there.
    assert backoff_delay(1, limits) <= base
    assert cap / 2 <= backoff_delay(50, limits) <= cap


# --- stream coalescing -------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def deltas(self) -> list[str]:
        return [e.payload["delta"] for e in self.events]


PIECES = ["Once ", "upon ", "a ", "time", ", ", "in ", "a ", "", "land ", "far ", "away."]


async def test_stream_coalescer_without_interval_sends_every_delta() -> None:
    sink, run_id = Sink(), uuid.uuid4()
    stream = StreamCoalescer(sink, user_id=7, run_id=run_id, node_id="n1", attempt=1,
                             interval_s=0)
    for piece in PIECES:
        await stream.push(piece)
    await stream.flush()

    assert "".join(sink.deltas) == "".join(PIECES)
    assert [d for d in sink.deltas if d] == [p for p in PIECES if p]
    for event in sink.events:
        assert event.type == EventTypes.EXECUTION_NODE_STREAM and not event.persisted
        assert (event.user_id, event.run_id, event.payload["node_id"]) == (7, run_id, "n1")
        assert event.payload["attempt"] == 1
        message = event.to_message()
        assert "cursor" not in message and message["data"]["run_id"] == str(run_id)


async def test_stream_coalescer_batches_within_the_interval() -> None:
    sink = Sink()
    stream = StreamCoalescer(sink, user_id=1, run_id=uuid.uuid4(), node_id="n", attempt=1,
                             interval_s=0.5)
    for piece in PIECES[:4]:
        await stream.push(piece)
    # The first delta goes out at once (the user sees the node start talking); the next ones
    # wait for the interval to pass.
    assert sink.deltas == ["Once "]
    await asyncio.sleep(0.55)
    for piece in PIECES[4:]:
        await stream.push(piece)
    assert sink.deltas == ["Once ", "".join(PIECES[1:5])]
    await stream.flush()
    assert sink.deltas == ["Once ", "".join(PIECES[1:5]), "".join(PIECES[5:])]
    assert "".join(sink.deltas) == "".join(PIECES)
    await stream.flush()  # nothing buffered: nothing sent
    assert len(sink.events) == 3


async def test_stream_coalescer_reset_drops_a_failed_attempts_buffer() -> None:
    sink = Sink()
    stream = StreamCoalescer(sink, user_id=1, run_id=uuid.uuid4(), node_id="n", attempt=1,
                             interval_s=30)
    await stream.push("sent ")
    await stream.push("never ")
    await stream.push("sent")
    stream.reset(2)
    # The next attempt's first delta goes out at once, although the interval has not passed.
    await stream.push("retry ")
    await stream.push("done")
    assert sink.deltas == ["sent ", "retry "]
    await stream.flush()
    assert sink.deltas == ["sent ", "retry ", "done"]
    assert [e.payload["attempt"] for e in sink.events] == [1, 2, 2]


# --- the node status machine -------------------------------------------------------------------
def test_node_transitions_allow_exactly_the_table() -> None:
    states: list[NodeStatus | None] = [None, *NodeStatus]
    for current, new in itertools.product(states, NodeStatus):
        if current in NODE_TRANSITIONS[new]:
            check_transition("n", current, new)
        else:
            with pytest.raises(IllegalTransition) as caught:
                check_transition("n", current, new)
            assert "n" in str(caught.value) and str(new) in str(caught.value)
    # Terminal states are terminal: nothing leaves them.
    for terminal in TERMINAL_NODE_STATUSES:
        assert all(terminal not in sources for sources in NODE_TRANSITIONS.values())
    # The lifecycles the runner uses are legal…
    for path in ([None, "pending", "running", "completed"],
                 [None, "pending", "running", "running", "running", "failed"],
                 [None, "pending", "skipped"], [None, "pending", "cached"],
                 [None, "pending", "cancelled"], [None, "pending", "running", "cancelled"]):
        for current, new in itertools.pairwise(path):
            check_transition("n", NodeStatus(current) if current else None, NodeStatus(new))


@pytest.mark.parametrize(("current", "new"), [
    (None, "running"), ("completed", "running"), ("pending", "completed"),
    ("failed", "running"), ("cached", "running"), ("skipped", "running"),
    ("completed", "cancelled"), ("running", "pending"), ("running", "skipped")])
def test_illegal_node_transitions_raise(current: str | None, new: str) -> None:
    with pytest.raises(IllegalTransition):
        check_transition("node-1", NodeStatus(current) if current else None, NodeStatus(new))


# --- model resolution --------------------------------------------------------------------------
def test_model_resolution_precedence() -> None:
    for provider in PROVIDER_DEFAULT_MODELS:
        for node_type in EXECUTORS:
            by_type = NODE_TYPE_MODEL_DEFAULTS.get(node_type, {}).get(provider)
            expected = by_type or PROVIDER_DEFAULT_MODELS[provider]
            assert resolve_model(None, node_type, provider) == expected
            assert resolve_model("custom-model", node_type, provider) == "custom-model"
    assert resolve_model(None, "storyTeller", "openai") == "gpt-4o"  # node-type default
    assert resolve_model(None, "grammarFix", "openai") == "gpt-4o-mini"  # provider default
    assert resolve_model(" spaced ", "grammarFix", "openai") == "spaced"


# --- seed executors, run directly --------------------------------------------------------------
@pytest.fixture
async def openai_provider(fake_llm: FakeLLMServer) -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider("openai", "test-key-0123456789",
                                        fake_llm.openai_base_url)
    yield provider
    await provider.aclose()


def context(type_: str, provider: Any, *, config: dict[str, Any] | None = None,
            text: dict[str, str] | None = None,
            adapters: dict[str, AdapterInput] | None = None) -> NodeExecutionContext:
    spec = EXECUTORS[type_]
    return NodeExecutionContext(
        node_id="n", node_type=type_, run_id=str(uuid.uuid4()), user_id=1,
        config=spec.config_model.model_validate(config or {}),
        inputs=NodeInputs(text=text or {}, adapters=adapters or {}), provider=provider,
        model="model-x")


async def execute(ctx: NodeExecutionContext) -> Any:
    return await EXECUTORS[ctx.node_type].execute(ctx)


PERSONA = AdapterInput("hero", "consistentCharacter",
                       {"kind": "persona", "name": "Ada", "personality": "curious"})


async def test_initial_prompt_calls_the_provider_only_with_adapters(
        openai_provider: OpenAICompatibleProvider, fake_llm: FakeLLMServer) -> None:
    ctx = context("initialPrompt", openai_provider, config={"prompt": "a castle"},
                  text={"up": "at dawn"})
    output = await execute(ctx)
    assert output.text == "a castle\n\nat dawn"
    assert fake_llm.requests == [] and ctx.api_calls == 0

    ctx = context("initialPrompt", openai_provider, config={"prompt": "a castle"},
                  adapters={"hero": PERSONA})
    output = await execute(ctx)
    [sent] = fake_llm.requests
    user_text = sent.json["messages"][-1]["content"]
    assert "a castle" in user_text and "Character: Ada" in user_text
    assert "Personality: curious" in user_text
    assert output.text == reply_for(user_text)
    assert ctx.api_calls == 1 and ctx.usage["output"] > 0


async def test_compressor_calls_the_provider_only_above_the_threshold(
        openai_provider: OpenAICompatibleProvider, fake_llm: FakeLLMServer) -> None:
    assert COMPRESS_THRESHOLD_CHARS == 2500
    at_limit = "word " * 500  # 2,500 characters
    ctx = context("compressor", openai_provider, text={"up": at_limit})
    output = await execute(ctx)
    assert (output.text, output.data) == (at_limit, {"compressed": False})
    assert fake_llm.requests == []

    ctx = context("compressor", openai_provider, text={"up": at_limit + "x"})
    output = await execute(ctx)
    assert len(fake_llm.requests) == 1
    assert output.data == {"compressed": True, "input_chars": 2501}
    assert fake_llm.requests[0].json["messages"][-1]["content"] == at_limit + "x"


async def test_story_teller_sends_temperature_095(openai_provider: OpenAICompatibleProvider,
                                                  fake_llm: FakeLLMServer) -> None:
    await execute(context("storyTeller", openai_provider, text={"up": "a dragon"},
                          adapters={"hero": PERSONA}))
    await execute(context("storyTeller", openai_provider, config={"temperature": 0.3},
                          text={"up": "a dragon"}))
    first, second = fake_llm.requests
    assert first.json["temperature"] == 0.95
    assert second.json["temperature"] == 0.3  # a node's own setting wins
    assert first.json["model"] == "model-x"
    assert "Character: Ada" in first.json["messages"][-1]["content"]
    assert first.json["messages"][0]["role"] == "system"


async def test_data_sources_make_no_call(openai_provider: OpenAICompatibleProvider,
                                         fake_llm: FakeLLMServer) -> None:
    persona = await execute(context("consistentCharacter", openai_provider,
                                    config={"name": "Ada", "appearance": "tall"}))
    assert persona.data["kind"] == "persona" and persona.data["name"] == "Ada"
    assert "Character: Ada" in persona.text and "Appearance: tall" in persona.text
    scene = await execute(context("sceneBuilder", openai_provider,
                                  config={"setting": "a harbour", "mood": "calm"}))
    assert scene.data["kind"] == "scene" and scene.data["setting"] == "a harbour"
    assert "Setting: a harbour" in scene.text
    assert fake_llm.requests == []


# --- the same, through the engine --------------------------------------------------------------
async def test_engine_models_adapters_and_calls(client: httpx.AsyncClient, app: FastAPI,
                                                fake_llm: FakeLLMServer) -> None:
    account = await sign_up_and_login(client)
    g = graph(
        [node("hero", "consistentCharacter", name="Ada", personality="curious"),
         node("place", "sceneBuilder", setting="a harbour", preset="none"),
         node("p", "initialPrompt", prompt="plain words"),
         node("story", "storyTeller", model="my-model"),  # node override
         node("enh", "promptEnhancer"),  # node-type default for openai
         node("gf", "grammarFix"),  # provider default
         node("short", "compressor")],
        # No handles on the adapter edges: the sources' adapter ports decide the kind.
        [edge("hero", "story"), edge("place", "story"), edge("p", "story"), edge("p", "enh"),
         edge("p", "gf"), edge("p", "short")])

    run_id, run = await run_flow(client, account, app, provider_id="openai", **g)

    assert run["status"] == "succeeded"
    sent = {r.json["model"]: r.json for r in fake_llm.requests}
    # hero, place, p (no adapters) and short (11 characters) made no call.
    assert len(fake_llm.requests) == 3
    assert set(sent) == {"my-model", "gpt-4o", "gpt-4o-mini"}
    story_prompt = sent["my-model"]["messages"][-1]["content"]
    assert story_prompt.startswith("plain words")
    assert "Character: Ada" in story_prompt and "Setting: a harbour" in story_prompt
    assert sent["my-model"]["temperature"] == 0.95
    events = await run_events(client, account, run_id)
    models = {n: [e["payload"]["model"] for e in node_events(events, n)
                  if e["payload"]["status"] == "running"] for n in ("story", "enh", "gf")}
    assert models == {"story": ["my-model"], "enh": ["gpt-4o"], "gf": ["gpt-4o-mini"]}
    assert run["nodes"]["story"]["model"] == "my-model"
    for source in ("hero", "place", "p", "short"):
        assert run["nodes"][source]["tokens"] == {"input": 0, "output": 0}
    assert run["nodes"]["short"]["output"]["data"] == {"compressed": False}
