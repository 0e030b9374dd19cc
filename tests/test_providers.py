"""Providers (DESIGN.md §7): the real `openai` and `anthropic` SDKs, through our provider
classes, against a real HTTP server on loopback; plus echo, the factory and model resolution.
Nothing here contacts a real host."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import pytest
import pytest_asyncio

from app.core.config import PROVIDER_IDS, Settings
from app.modules.execution.config.model_defaults import (
    NODE_TYPE_MODEL_DEFAULTS,
    PROVIDER_DEFAULT_MODELS,
    resolve_model,
)
from app.modules.execution.providers import (
    PUBLIC_BASE_URLS,
    Completion,
    CompletionRequest,
    EchoProvider,
    ProviderError,
    ProviderFactory,
    TextProvider,
    provider_has_key,
    provider_needs_key,
)
from app.modules.execution.providers.claude import DEFAULT_MAX_TOKENS, ClaudeProvider
from app.modules.execution.providers.echo import split_deltas
from app.modules.execution.providers.errors import map_anthropic_error
from app.modules.execution.providers.openai_compat import OpenAICompatibleProvider
from tests.fake_llm_server import CHAT_PATH, MESSAGES_PATH, FakeLLMServer, reply_for

API_KEY = "sk-test-0123456789abcdef-secret"
PROVIDER_SETTING_NAMES = (
    "OPENAI_API_KEY", "OPENAI_BASE_URL", "MISTRAL_API_KEY", "MISTRAL_BASE_URL", "GLM_API_KEY",
    "GLM_BASE_URL", "OPENROUTER_API_KEY", "OPENROUTER_BASE_URL", "HF_API_KEY", "HF_BASE_URL",
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
)  # fmt: skip


# Async tests share one event loop, so the SDK clients (and their connection pools) are built
# once and shared by the tests, as one provider instance is shared by the engine's runs.
shared_loop = pytest.mark.asyncio(loop_scope="module")


# --- fixtures ----------------------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_openai(
    fake_llm_server: FakeLLMServer,
) -> AsyncIterator[OpenAICompatibleProvider]:
    provider = OpenAICompatibleProvider("openai", API_KEY, fake_llm_server.openai_base_url)
    yield provider
    await provider.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_claude(fake_llm_server: FakeLLMServer) -> AsyncIterator[ClaudeProvider]:
    provider = ClaudeProvider(API_KEY, fake_llm_server.anthropic_base_url)
    yield provider
    await provider.aclose()


@pytest.fixture
def openai_provider(
    shared_openai: OpenAICompatibleProvider, fake_llm: FakeLLMServer
) -> OpenAICompatibleProvider:
    return shared_openai  # fake_llm: a clean script for each test


@pytest.fixture
def claude_provider(shared_claude: ClaudeProvider, fake_llm: FakeLLMServer) -> ClaudeProvider:
    return shared_claude


@pytest.fixture(params=["openai", "claude"])
def sdk_provider(request: pytest.FixtureRequest, fake_llm: FakeLLMServer) -> TextProvider:
    name = "openai_provider" if request.param == "openai" else "claude_provider"
    provider: TextProvider = request.getfixturevalue(name)
    return provider


def make_settings(**values: str) -> Settings:
    """Settings from exactly these provider values: the environment and .env do not leak in."""
    provider_values: dict[str, Any] = dict.fromkeys(PROVIDER_SETTING_NAMES, "")
    provider_values.update(values)
    return Settings(_env_file=None, **provider_values)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Deltas:
    def __init__(self) -> None:
        self.items: list[str] = []

    async def __call__(self, delta: str) -> None:
        self.items.append(delta)


async def call(provider: TextProvider, mode: str, request: CompletionRequest) -> Completion:
    if mode == "stream":
        return await provider.stream(request, Deltas())
    return await provider.complete(request)


def path_of(provider: TextProvider) -> str:
    return MESSAGES_PATH if isinstance(provider, ClaudeProvider) else CHAT_PATH


REQUEST = CompletionRequest(
    model="model-x", prompt="tell me a story", system="be brief", temperature=0.7, max_tokens=50
)


# --- OpenAI-compatible -------------------------------------------------------------------------


@shared_loop
async def test_openai_complete(
    openai_provider: OpenAICompatibleProvider, fake_llm: FakeLLMServer
) -> None:
    completion = await openai_provider.complete(REQUEST)

    assert completion == Completion("reply: tell me a story", "model-x", 6, 5)
    [sent] = fake_llm.requests
    assert sent.path == CHAT_PATH
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.json["model"] == "model-x"
    assert sent.json["temperature"] == 0.7
    assert sent.json["max_tokens"] == 50
    assert sent.json["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "tell me a story"},
    ]
    assert not sent.json.get("stream")


@shared_loop
async def test_openai_leaves_unset_options_out(
    openai_provider: OpenAICompatibleProvider, fake_llm: FakeLLMServer
) -> None:
    await openai_provider.complete(CompletionRequest(model="m", prompt="hi"))

    [sent] = fake_llm.requests
    assert sent.json["messages"] == [{"role": "user", "content": "hi"}]
    assert "temperature" not in sent.json and "max_tokens" not in sent.json


@shared_loop
async def test_openai_stream(
    openai_provider: OpenAICompatibleProvider, fake_llm: FakeLLMServer
) -> None:
    deltas = Deltas()
    completion = await openai_provider.stream(REQUEST, deltas)

    assert len(deltas.items) > 1
    assert "".join(deltas.items) == completion.text == "reply: tell me a story"
    assert (completion.model, completion.input_tokens, completion.output_tokens) == (
        "model-x", 6, 5,
    )  # fmt: skip
    [sent] = fake_llm.requests
    assert sent.json["stream"] is True
    assert sent.json["stream_options"] == {"include_usage": True}
    assert sent.json["temperature"] == 0.7


# --- Claude ------------------------------------------------------------------------------------


@shared_loop
async def test_claude_complete(claude_provider: ClaudeProvider, fake_llm: FakeLLMServer) -> None:
    completion = await claude_provider.complete(REQUEST)

    assert completion == Completion("reply: tell me a story", "model-x", 6, 5)
    [sent] = fake_llm.requests
    assert sent.path == MESSAGES_PATH
    assert API_KEY in (sent.headers.get("x-api-key"), sent.headers.get("authorization", "")[7:])
    assert sent.json["model"] == "model-x"
    assert sent.json["max_tokens"] == 50
    assert sent.json["system"] == "be brief"
    assert sent.json["messages"] == [{"role": "user", "content": "tell me a story"}]
    # The API version the SDK speaks rejects any sampling parameter.
    assert "temperature" not in sent.json


@shared_loop
async def test_claude_default_max_tokens(
    claude_provider: ClaudeProvider, fake_llm: FakeLLMServer
) -> None:
    await claude_provider.complete(CompletionRequest(model="m", prompt="hi"))

    [sent] = fake_llm.requests
    assert sent.json["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "system" not in sent.json


@shared_loop
async def test_claude_stream(claude_provider: ClaudeProvider, fake_llm: FakeLLMServer) -> None:
    deltas = Deltas()
    completion = await claude_provider.stream(REQUEST, deltas)

    assert len(deltas.items) > 1
    assert "".join(deltas.items) == completion.text == "reply: tell me a story"
    assert (completion.model, completion.input_tokens, completion.output_tokens) == (
        "model-x", 6, 5,
    )  # fmt: skip
    [sent] = fake_llm.requests
    assert sent.json["stream"] is True


# --- error mapping, through the SDKs -------------------------------------------------------------


@shared_loop
@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(
    ("status", "code"),
    [(429, "rate_limited"), (500, "provider_unavailable"), (503, "provider_unavailable")],
)
async def test_transient_statuses_are_one_request_each(
    sdk_provider: TextProvider, fake_llm: FakeLLMServer, mode: str, status: int, code: str
) -> None:
    fake_llm.fail_next(1, status=status)

    with pytest.raises(ProviderError) as caught:
        await call(sdk_provider, mode, REQUEST)

    assert (caught.value.code, caught.value.transient, caught.value.status) == (code, True, status)
    assert str(status) in caught.value.message
    # max_retries=0: the SDK did not retry behind the engine's back.
    assert len(fake_llm.requests) == 1
    # The fault was used up: the next attempt (the engine's retry) succeeds.
    assert (await call(sdk_provider, mode, REQUEST)).text == "reply: tell me a story"


@shared_loop
@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, "provider_auth"),
        (403, "provider_auth"),
        (400, "provider_bad_request"),
        (404, "provider_bad_request"),
    ],
)
async def test_client_errors_are_not_transient(
    sdk_provider: TextProvider, fake_llm: FakeLLMServer, mode: str, status: int, code: str
) -> None:
    fake_llm.fail_next(1, status=status)

    with pytest.raises(ProviderError) as caught:
        await call(sdk_provider, mode, REQUEST)

    assert (caught.value.code, caught.value.transient, caught.value.status) == (code, False, status)
    assert len(fake_llm.requests) == 1


@shared_loop
@pytest.mark.parametrize("status", [400, 401, 429, 500])
async def test_messages_never_contain_the_api_key(
    sdk_provider: TextProvider, fake_llm: FakeLLMServer, status: int
) -> None:
    body = f'{{"error": {{"type": "x", "message": "Incorrect API key provided: {API_KEY}"}}}}'
    fake_llm.fail_next(1, status=status, body=body)

    with pytest.raises(ProviderError) as caught:
        await sdk_provider.complete(REQUEST)

    assert API_KEY not in caught.value.message
    assert API_KEY not in str(caught.value)
    assert sdk_provider.id in caught.value.message


@shared_loop
@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_slow_answer_times_out(
    sdk_provider: TextProvider, fake_llm: FakeLLMServer, mode: str
) -> None:
    fake_llm.slow_next(1, seconds=3.0)
    request = CompletionRequest(model="m", prompt="hi", timeout_s=0.25)

    started = time.monotonic()
    with pytest.raises(ProviderError) as caught:
        await call(sdk_provider, mode, request)

    assert time.monotonic() - started < 2.0
    assert (caught.value.code, caught.value.transient) == ("provider_timeout", True)
    assert "0.25" in caught.value.message
    assert len(fake_llm.requests) == 1
    # The provider instance is still usable for the engine's next attempt.
    assert (await call(sdk_provider, mode, request)).text == reply_for("hi")


@shared_loop
@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("kind", ["invalid_json", "missing_fields"])
async def test_malformed_answer_is_bad_response(
    sdk_provider: TextProvider, fake_llm: FakeLLMServer, mode: str, kind: Any
) -> None:
    fake_llm.malformed_next(1, kind)

    with pytest.raises(ProviderError) as caught:
        await call(sdk_provider, mode, REQUEST)

    assert (caught.value.code, caught.value.transient) == ("provider_bad_response", False)
    assert caught.value.message.startswith(f"{sdk_provider.id}: malformed response")
    assert len(fake_llm.requests) == 1


@shared_loop
@pytest.mark.parametrize("mode", ["complete", "stream"])
@pytest.mark.parametrize("kind", ["openai", "claude"])
async def test_connection_refused(kind: str, mode: str) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    provider: OpenAICompatibleProvider | ClaudeProvider
    if kind == "openai":
        provider = OpenAICompatibleProvider("openai", API_KEY, base_url + "/v1")
    else:
        provider = ClaudeProvider(API_KEY, base_url)
    try:
        with pytest.raises(ProviderError) as caught:
            await call(provider, mode, CompletionRequest(model="m", prompt="hi", timeout_s=5))
    finally:
        await provider.aclose()

    assert (caught.value.code, caught.value.transient) == ("provider_connection", True)
    assert base_url in caught.value.message


def _anthropic_stream_error(error_type: str) -> anthropic.APIStatusError:
    request = httpx2.Request("POST", "http://127.0.0.1/v1/messages")
    response = httpx2.Response(200, request=request)
    body = {"type": "error", "error": {"type": error_type, "message": "went wrong"}}
    return anthropic.APIStatusError("stream error", response=response, body=body)


@pytest.mark.parametrize(
    ("error_type", "code", "transient"),
    [
        ("overloaded_error", "provider_unavailable", True),
        ("api_error", "provider_unavailable", True),
        ("rate_limit_error", "rate_limited", True),
        ("invalid_request_error", "provider_bad_request", False),
    ],
)
def test_anthropic_error_event_inside_a_stream(error_type: str, code: str, transient: bool) -> None:
    error = map_anthropic_error(_anthropic_stream_error(error_type), "claude")

    assert (error.code, error.transient, error.status) == (code, transient, None)
    assert "error event in stream" in error.message


# --- registry and factory ----------------------------------------------------------------------


def test_public_base_urls_and_key_requirements() -> None:
    assert set(PUBLIC_BASE_URLS) == set(PROVIDER_IDS) - {"echo"}
    assert PUBLIC_BASE_URLS["claude"] == "https://api.anthropic.com"
    assert not provider_needs_key("echo")
    assert all(provider_needs_key(pid) for pid in PROVIDER_IDS if pid != "echo")

    settings = make_settings(MISTRAL_API_KEY="m-key")
    assert provider_has_key("echo", settings)
    assert provider_has_key("mistral", settings)
    assert not provider_has_key("openai", settings)
    assert not provider_has_key("nope", settings)


@shared_loop
async def test_factory_uses_public_urls_without_override() -> None:
    factory = ProviderFactory(make_settings(OPENAI_API_KEY=API_KEY, ANTHROPIC_API_KEY=API_KEY))
    try:
        openai_provider = factory.get("openai")
        claude_provider = factory.get("claude")
        # Built, never called: no request leaves the machine.
        assert isinstance(openai_provider, OpenAICompatibleProvider)
        assert openai_provider.base_url == PUBLIC_BASE_URLS["openai"]
        assert isinstance(claude_provider, ClaudeProvider)
        assert claude_provider.base_url == PUBLIC_BASE_URLS["claude"]
    finally:
        await factory.aclose()


@shared_loop
async def test_factory_base_url_override_is_honoured(fake_llm: FakeLLMServer) -> None:
    factory = ProviderFactory(
        make_settings(
            MISTRAL_API_KEY=API_KEY,
            MISTRAL_BASE_URL=fake_llm.openai_base_url,
            ANTHROPIC_API_KEY=API_KEY,
            ANTHROPIC_BASE_URL=fake_llm.anthropic_base_url,
        )
    )
    try:
        mistral = factory.get("mistral")
        claude = factory.get("claude")
        assert mistral.id == "mistral" and claude.id == "claude"
        assert (await mistral.complete(REQUEST)).text == reply_for("tell me a story")
        assert (await claude.complete(REQUEST)).text == reply_for("tell me a story")
        assert [r.path for r in fake_llm.requests] == [CHAT_PATH, MESSAGES_PATH]
    finally:
        await factory.aclose()


@shared_loop
async def test_factory_caches_one_instance_per_id() -> None:
    factory = ProviderFactory(make_settings(GLM_API_KEY=API_KEY))
    try:
        assert factory.get("glm") is factory.get("glm")
        assert factory.get("echo") is factory.get("echo")
        assert factory.get("glm") is not factory.get("echo")
    finally:
        await factory.aclose()


@shared_loop
async def test_factory_unknown_provider_and_missing_key() -> None:
    factory = ProviderFactory(make_settings())
    with pytest.raises(ProviderError) as unknown:
        factory.get("gpt-nope")
    assert (unknown.value.code, unknown.value.transient) == ("unknown_provider", False)
    assert "gpt-nope" in unknown.value.message

    with pytest.raises(ProviderError) as missing:
        factory.get("openrouter")
    assert (missing.value.code, missing.value.transient) == ("provider_not_configured", False)
    assert "OPENROUTER_API_KEY" in missing.value.message
    await factory.aclose()


def test_providers_satisfy_the_protocol() -> None:
    assert isinstance(EchoProvider(), TextProvider)
    assert isinstance(OpenAICompatibleProvider("x", "k", "http://127.0.0.1:9/v1"), TextProvider)
    assert isinstance(ClaudeProvider("k", "http://127.0.0.1:9"), TextProvider)


# --- echo --------------------------------------------------------------------------------------


@shared_loop
async def test_echo_is_deterministic() -> None:
    echo = EchoProvider()
    request = CompletionRequest(model="echo-1", prompt="one two  three", system="sys word")

    first, second = await echo.complete(request), await echo.complete(request)

    assert first == second == Completion("one two  three", "echo-1", 5, 3)


@shared_loop
@pytest.mark.parametrize(
    "text", ["one two three", "  leading and trailing  ", "multi\nline\n\ttabs", "", "single"]
)
async def test_echo_stream_concatenates_to_the_text(text: str) -> None:
    deltas = Deltas()
    completion = await EchoProvider().stream(CompletionRequest(model="echo-1", prompt=text), deltas)

    assert "".join(deltas.items) == completion.text == text
    assert completion == await EchoProvider().complete(CompletionRequest("echo-1", text))
    assert len(deltas.items) == len(split_deltas(text))
    if len(text.split()) > 1:
        assert len(deltas.items) > 1


# --- model resolution --------------------------------------------------------------------------


def test_resolve_model_precedence() -> None:
    # 1. the node's override wins
    assert resolve_model("my-model", "storyTeller", "claude") == "my-model"
    # 2. then the node type's default for the provider
    assert (
        resolve_model(None, "storyTeller", "claude")
        == NODE_TYPE_MODEL_DEFAULTS["storyTeller"]["claude"]
    )
    assert resolve_model(None, "storyTeller", "claude") != PROVIDER_DEFAULT_MODELS["claude"]
    # 3. then the provider's default (a node type without an entry, or an unknown type)
    assert resolve_model(None, "grammarFix", "openai") == "gpt-4o-mini"
    assert resolve_model("", "somePluginType", "echo") == "echo-1"
    assert (
        resolve_model("  ", "storyTeller", "mistral")
        == NODE_TYPE_MODEL_DEFAULTS["storyTeller"]["mistral"]
    )


def test_resolve_model_unknown_provider() -> None:
    with pytest.raises(ProviderError) as caught:
        resolve_model(None, "translator", "nope")
    assert caught.value.code == "unknown_provider"


def test_model_tables_cover_every_provider_and_seed_type() -> None:
    assert set(PROVIDER_DEFAULT_MODELS) == set(PROVIDER_IDS)
    assert set(NODE_TYPE_MODEL_DEFAULTS) == {
        "promptEnhancer", "translator", "storyTeller", "grammarFix", "compressor", "initialPrompt",
    }  # fmt: skip
    for by_provider in NODE_TYPE_MODEL_DEFAULTS.values():
        assert set(by_provider) <= set(PROVIDER_IDS)
