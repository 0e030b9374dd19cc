"""Settings: one pydantic-settings model read from the environment and `.env`.

Every limit the service enforces is a field here, so an operator can change it and a test can
prove it. Names of the settings that clients and operators rely on are fixed by DESIGN.md §8.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "change-me-development-only-secret"

PROVIDER_IDS = ("echo", "openai", "mistral", "glm", "openrouter", "huggingface", "claude")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    # --- service -----------------------------------------------------------------------------
    ENV: Literal["development", "production", "test"] = "development"
    HOST: str = "127.0.0.1"
    PORT: int = 8000
    LOG_LEVEL: str = "INFO"
    DATABASE_URL: str = "sqlite+aiosqlite:///./data/cascade.db"
    DB_POOL_SIZE: int = Field(default=40, ge=1)  # connections a process holds at most
    DB_POOL_TIMEOUT_S: float = Field(default=5.0, gt=0)
    CORS_ORIGINS: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- auth --------------------------------------------------------------------------------
    JWT_SECRET: str = DEFAULT_JWT_SECRET
    ACCESS_TOKEN_MINUTES: float = 30.0
    REFRESH_TOKEN_DAYS: float = 7.0
    BOOTSTRAP_ADMIN_TOKEN: str = ""
    BCRYPT_ROUNDS: int = 12
    LOGIN_FAILURES_PER_MINUTE: int = Field(default=10, ge=1)
    LOGIN_FAILURES_PER_ADDRESS_PER_MINUTE: int = Field(default=100, ge=1)
    PASSWORD_HASH_THREADS: int = Field(default=0, ge=0)

    # --- limits ------------------------------------------------------------------------------
    MAX_BODY_BYTES: int = 2 * 1024 * 1024
    WS_MAX_FRAME_BYTES: int = 2 * 1024 * 1024
    WS_MAX_TUNNELS_PER_USER: int = 5
    WS_SEND_QUEUE_BYTES: int = Field(default=4 * 1024 * 1024, ge=1)
    WS_PING_INTERVAL_S: float = 25.0
    WS_IDLE_TIMEOUT_S: float = 60.0
    WS_REPLAY_BATCH: int = 500
    GRAPH_MAX_NODES: int = 5000
    GRAPH_MAX_EDGES: int = 20000
    GRAPH_MAX_BYTES: int = 2 * 1024 * 1024
    MAX_RUNS_PER_USER: int = 10
    MAX_NODES_PER_RUN: int = 16
    NODE_TIMEOUT_S: float = 300.0
    NODE_MAX_ATTEMPTS: int = 3
    RETRY_BASE_DELAY_S: float = 0.5
    RETRY_MAX_DELAY_S: float = 8.0
    EVENTS_PAGE_MAX: int = 1000

    # --- scale-out (DESIGN.md §10) --------------------------------------------------------
    # inline: runs execute in the API process (one process per SQLite file). queue: API
    # replicas enqueue runs on PostgreSQL (pgqueuer) and `scripts/worker` processes run them.
    EXECUTION_MODE: Literal["inline", "queue"] = "inline"
    # Runs one worker executes at once. A run holds its slot while it waits for its events'
    # commits (tens of ms under load, scripts/bench part 9), so slots are mostly idle waits:
    # 16 served 1.3x the runs/s of 8 there; 32 did worse (every run of the load at once).
    WORKER_CONCURRENCY: int = Field(default=16, ge=1)
    # A worker holds each of its runs by a lease it renews every RUN_POLL_S; a run whose lease
    # ran out (its worker died or froze) is closed with `worker_lost` by another worker.
    RUN_LEASE_S: float = Field(default=10.0, gt=0)
    # How often a worker renews its leases, reads cancel flags (the fallback when a cancel's
    # NOTIFY is lost) and looks for runs whose lease ran out; also its queue poll.
    RUN_POLL_S: float = Field(default=0.5, gt=0)
    # How long a worker waits before each pick of jobs (0: none): under load the jobs that
    # arrive meanwhile are picked in one transaction and their runs' events share commits
    # (part 9 of scripts/bench: without it the CPU per run of every tier was about 1.3× and
    # the commit → tunnel p50 near 70 ms instead of 10). A run's pick-up waits that long more.
    RUN_PICKUP_LINGER_MS: float = Field(default=20.0, ge=0, le=1000)
    # Hours pgqueuer's log of jobs (two rows a run, kept for ever by pgqueuer) is kept;
    # workers delete older rows every minute.
    QUEUE_LOG_RETENTION_H: float = Field(default=24.0, gt=0)
    # Each API replica's safety poll of its users' cursors, for wake-up hints it missed.
    FANOUT_POLL_S: float = Field(default=1.0, gt=0)

    # --- event log writer --------------------------------------------------------------------
    EVENT_BATCH_MAX: int = 500

    # --- garbage collector (app/core/gc_tuning.py) -------------------------------------------
    GC_FREEZE_AFTER_STARTUP: bool = True
    GC_GEN0_THRESHOLD: int = Field(default=20_000, ge=0)

    # --- providers (DESIGN.md §7) ------------------------------------------------------------
    DEFAULT_PROVIDER: str = "echo"
    LLM_TOKEN_STREAM: bool = True
    LLM_STREAM_COALESCE_MS: int = 50
    OPENAI_API_KEY: str = ""
    OPENAI_BASE_URL: str = ""
    MISTRAL_API_KEY: str = ""
    MISTRAL_BASE_URL: str = ""
    GLM_API_KEY: str = ""
    GLM_BASE_URL: str = ""
    OPENROUTER_API_KEY: str = ""
    OPENROUTER_BASE_URL: str = ""
    HF_API_KEY: str = ""
    HF_BASE_URL: str = ""
    ANTHROPIC_API_KEY: str = ""
    ANTHROPIC_BASE_URL: str = ""

    @field_validator("CORS_ORIGINS", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")

    def mode_problems(self) -> list[str]:
        """Reasons this configuration cannot start at all (empty when fine)."""
        if self.EXECUTION_MODE == "queue" and not self.DATABASE_URL.startswith("postgresql"):
            return ["EXECUTION_MODE=queue needs PostgreSQL (DATABASE_URL=postgresql+asyncpg://"
                    "...); the embedded SQLite default runs inline, in one process"]
        return []

    def production_problems(self) -> list[str]:
        """Reasons this configuration must not serve production traffic (empty when fine)."""
        if self.ENV != "production":
            return []
        problems = []
        if not self.JWT_SECRET or self.JWT_SECRET == DEFAULT_JWT_SECRET:
            problems.append("JWT_SECRET is empty or the development default")
        if "*" in self.CORS_ORIGINS:
            problems.append("CORS_ORIGINS must not be '*' in production")
        return problems


@lru_cache
def get_settings() -> Settings:
    return Settings()
