"""Text model providers (DESIGN.md §7): the protocol, the offline `echo` provider and the
factory. The SDK-backed providers live in `openai_compat` and `claude`; they are imported on
first use so that importing this package stays cheap."""

from app.modules.execution.providers.base import (
    Completion,
    CompletionRequest,
    DeltaCallback,
    ProviderError,
    TextProvider,
)
from app.modules.execution.providers.echo import EchoProvider
from app.modules.execution.providers.registry import (
    PUBLIC_BASE_URLS,
    ProviderFactory,
    is_known_provider,
    provider_base_url,
    provider_has_key,
    provider_key_setting,
    provider_needs_key,
)

__all__ = [
    "PUBLIC_BASE_URLS",
    "Completion",
    "CompletionRequest",
    "DeltaCallback",
    "EchoProvider",
    "ProviderError",
    "ProviderFactory",
    "TextProvider",
    "is_known_provider",
    "provider_base_url",
    "provider_has_key",
    "provider_key_setting",
    "provider_needs_key",
]
