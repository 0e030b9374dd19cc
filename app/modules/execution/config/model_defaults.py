"""Which model a node uses (DESIGN.md §6, "Model resolution").

Precedence: the node's own `data.model` → the node type's default for the provider → the
provider's default. Node-type entries exist only where a node type deserves a different model
than the provider's cheap general default; every other combination falls through to it.
"""

from __future__ import annotations

from app.modules.execution.providers.base import ProviderError

PROVIDER_DEFAULT_MODELS: dict[str, str] = {
    "echo": "echo-1",
    "openai": "gpt-4o-mini",
    "mistral": "mistral-small-latest",
    "glm": "glm-4-flash",
    "openrouter": "openai/gpt-4o-mini",
    "huggingface": "meta-llama/Llama-3.1-8B-Instruct",
    "claude": "claude-3-5-haiku-latest",
}

NODE_TYPE_MODEL_DEFAULTS: dict[str, dict[str, str]] = {
    # Long creative writing is where a bigger model shows most: worth the price.
    "storyTeller": {
        "openai": "gpt-4o",
        "mistral": "mistral-large-latest",
        "glm": "glm-4-plus",
        "openrouter": "anthropic/claude-sonnet-4.5",
        "huggingface": "meta-llama/Llama-3.3-70B-Instruct",
        "claude": "claude-sonnet-4-5",
    },
    # Rewriting a prompt well needs some judgement; the answers are short, so a mid-size model
    # costs little.
    "promptEnhancer": {
        "openai": "gpt-4o",
        "mistral": "mistral-medium-latest",
        "claude": "claude-sonnet-4-5",
    },
    # Translation quality drops noticeably on the smallest open models.
    "translator": {
        "huggingface": "meta-llama/Llama-3.3-70B-Instruct",
    },
    # Mechanical tasks: the provider's cheap default is right.
    "grammarFix": {},
    "compressor": {},
    "initialPrompt": {},
}


def resolve_model(node_override: str | None, node_type: str, provider_id: str) -> str:
    """The model for one node: its override, else its type's default for the provider, else
    the provider's default. An unknown provider is an error, not a silent guess."""
    if node_override and node_override.strip():
        return node_override.strip()
    by_type = NODE_TYPE_MODEL_DEFAULTS.get(node_type, {}).get(provider_id)
    if by_type:
        return by_type
    try:
        return PROVIDER_DEFAULT_MODELS[provider_id]
    except KeyError:
        raise ProviderError(
            "unknown_provider", f"no default model for provider {provider_id!r}", transient=False
        ) from None
