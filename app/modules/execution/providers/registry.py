"""Provider ids, their settings, and the factory that builds one provider per id (DESIGN.md §7).

The SDK-backed providers are imported when first built, not at import time: `openai` and
`anthropic` are heavy imports, and a process that only runs `echo` flows never needs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.core.config import PROVIDER_IDS, Settings
from app.modules.execution.providers.base import ProviderError, TextProvider
from app.modules.execution.providers.echo import EchoProvider

# Where each provider lives when its *_BASE_URL setting is empty.
PUBLIC_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "mistral": "https://api.mistral.ai/v1",
    "glm": "https://open.bigmodel.cn/api/paas/v4",
    "openrouter": "https://openrouter.ai/api/v1",
    "huggingface": "https://router.huggingface.co/v1",
    "claude": "https://api.anthropic.com",
}


@dataclass(frozen=True)
class _ProviderSettings:
    key: str  # name of the API key setting
    base_url: str  # name of the base URL setting


_SETTINGS: dict[str, _ProviderSettings] = {
    "openai": _ProviderSettings("OPENAI_API_KEY", "OPENAI_BASE_URL"),
    "mistral": _ProviderSettings("MISTRAL_API_KEY", "MISTRAL_BASE_URL"),
    "glm": _ProviderSettings("GLM_API_KEY", "GLM_BASE_URL"),
    "openrouter": _ProviderSettings("OPENROUTER_API_KEY", "OPENROUTER_BASE_URL"),
    "huggingface": _ProviderSettings("HF_API_KEY", "HF_BASE_URL"),
    "claude": _ProviderSettings("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
}


def is_known_provider(provider_id: str) -> bool:
    return provider_id in PROVIDER_IDS


def provider_needs_key(provider_id: str) -> bool:
    """Every provider but the offline `echo` needs an API key."""
    return provider_id != "echo"


def provider_key_setting(provider_id: str) -> str | None:
    """The name of the setting that holds the provider's key (for messages), None for echo."""
    entry = _SETTINGS.get(provider_id)
    return entry.key if entry else None


def provider_has_key(provider_id: str, settings: Settings) -> bool:
    """True when the provider can be used: echo always, the others once their key is set."""
    if not provider_needs_key(provider_id):
        return True
    entry = _SETTINGS.get(provider_id)
    return entry is not None and bool(_setting(settings, entry.key))


def provider_base_url(provider_id: str, settings: Settings) -> str:
    """The provider's *_BASE_URL setting when set, else its public default."""
    entry = _SETTINGS.get(provider_id)
    if entry is None:
        raise _unknown(provider_id)
    return _setting(settings, entry.base_url) or PUBLIC_BASE_URLS[provider_id]


class ProviderFactory:
    """Builds each provider once and hands out the same instance, so its HTTP client (and
    connection pool) is shared by every node of every run. Close it on shutdown."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._providers: dict[str, TextProvider] = {}

    def get(self, provider_id: str) -> TextProvider:
        provider = self._providers.get(provider_id)
        if provider is None:
            provider = self._build(provider_id)
            self._providers[provider_id] = provider
        return provider

    def register(self, provider: TextProvider) -> None:
        """Install a ready-made provider under its id (tests, custom backends)."""
        self._providers[provider.id] = provider

    async def aclose(self) -> None:
        providers, self._providers = list(self._providers.values()), {}
        for provider in providers:
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    def _build(self, provider_id: str) -> TextProvider:
        if provider_id == "echo":
            return EchoProvider()
        entry = _SETTINGS.get(provider_id)
        if entry is None:
            raise _unknown(provider_id)
        api_key = _setting(self._settings, entry.key)
        if not api_key:
            # Validation refuses such runs up front; this guards every other caller.
            raise ProviderError(
                "provider_not_configured",
                f"provider {provider_id!r} needs {entry.key} to be set",
                transient=False,
            )
        base_url = provider_base_url(provider_id, self._settings)
        if provider_id == "claude":
            from app.modules.execution.providers.claude import ClaudeProvider

            return ClaudeProvider(api_key=api_key, base_url=base_url)
        from app.modules.execution.providers.openai_compat import OpenAICompatibleProvider

        return OpenAICompatibleProvider(provider_id, api_key=api_key, base_url=base_url)


def _setting(settings: Settings, name: str) -> str:
    value = getattr(settings, name, "")
    return value.strip() if isinstance(value, str) else ""


def _unknown(provider_id: str) -> ProviderError:
    known = ", ".join(PROVIDER_IDS)
    return ProviderError(
        "unknown_provider",
        f"unknown provider {provider_id!r} (known: {known})",
        transient=False,
    )
