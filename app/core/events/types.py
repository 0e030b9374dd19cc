"""The single list of event names (DESIGN.md §5)."""

from __future__ import annotations


class EventTypes:
    USER_CREATED = "user.created"
    USER_DELETED = "user.deleted"
    AUTH_LOGIN_SUCCEEDED = "auth.login.succeeded"
    AUTH_LOGIN_FAILED = "auth.login.failed"
    PROJECT_CREATED = "project.created"
    PROJECT_DELETED = "project.deleted"
    FLOW_CREATED = "flow.created"
    FLOW_UPDATED = "flow.updated"
    FLOW_DELETED = "flow.deleted"
    CHARACTER_CREATED = "character.created"
    CHARACTER_UPDATED = "character.updated"
    CHARACTER_DELETED = "character.deleted"
    EXECUTION_STARTED = "execution.started"
    EXECUTION_NODE_STATUS = "execution.node.status"
    EXECUTION_NODE_COMPLETED = "execution.node.completed"
    EXECUTION_NODE_FAILED = "execution.node.failed"
    EXECUTION_COMPLETED = "execution.completed"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_CANCELLED = "execution.cancelled"

    # Ephemeral: pushed to tunnels, never written to the log.
    EXECUTION_NODE_STREAM = "execution.node.stream"
    EXECUTION_NODE_PROGRESS = "execution.node.progress"
    PONG = "pong"
    PING = "ping"
    CONNECTION_READY = "connection.ready"
    ERROR = "error"

    PERSISTED: frozenset[str] = frozenset({
        USER_CREATED, USER_DELETED, AUTH_LOGIN_SUCCEEDED, AUTH_LOGIN_FAILED,
        PROJECT_CREATED, PROJECT_DELETED, FLOW_CREATED, FLOW_UPDATED, FLOW_DELETED,
        CHARACTER_CREATED, CHARACTER_UPDATED, CHARACTER_DELETED,
        EXECUTION_STARTED, EXECUTION_NODE_STATUS, EXECUTION_NODE_COMPLETED,
        EXECUTION_NODE_FAILED, EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_CANCELLED,
    })
    EPHEMERAL: frozenset[str] = frozenset({
        EXECUTION_NODE_STREAM, EXECUTION_NODE_PROGRESS, PONG, PING, CONNECTION_READY, ERROR,
    })
    KNOWN: frozenset[str] = PERSISTED | EPHEMERAL
    RUN_TERMINAL: frozenset[str] = frozenset({
        EXECUTION_COMPLETED, EXECUTION_FAILED, EXECUTION_CANCELLED,
    })
