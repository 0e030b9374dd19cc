"""All tables, imported here so alembic and `Base.metadata` see every one."""

from app.models.component import (
    AgenticComponent,
    ComponentApiConfig,
    ComponentField,
    ComponentOutputSchema,
    ComponentPort,
)
from app.models.event_log import EventLog
from app.models.flow import ConsistentCharacter, Flow
from app.models.project import Project
from app.models.run import Run, RunNode
from app.models.user import BackofficeUser, RefreshToken, User
from app.models.worker import LoginFailure, Worker

__all__ = [
    "AgenticComponent", "BackofficeUser", "ComponentApiConfig", "ComponentField",
    "ComponentOutputSchema", "ComponentPort", "ConsistentCharacter", "EventLog", "Flow",
    "LoginFailure", "Project", "RefreshToken", "Run", "RunNode", "User", "Worker",
]
