from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Query, status

from app.api.auth import CurrentUser, CurrentUserRef
from app.api.deps import SessionDep, manager
from app.api.openapi import errors
from app.api.routing import api_router
from app.api.v1.schemas.execution import RunAccepted, RunRequest, RunWarning
from app.models import Run, RunNode
from app.modules.execution.manager import ExecutionManager
from app.modules.execution.models import RunStatus

router = api_router(prefix="/execution", tags=["execution"])
Execution = ExecutionManager


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": str(run.id), "flow_id": str(run.flow_id) if run.flow_id else None,
        "status": run.status, "trigger_node_id": run.trigger_node_id,
        "provider_id": run.provider_id, "error": run.error,
        "tokens": {"input": run.tokens_input, "output": run.tokens_output},
        "cost_usd": run.cost_usd,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_ms": (int((run.finished_at - run.started_at).total_seconds() * 1000)
                        if run.finished_at and run.started_at else None),
    }


def node_state(node: RunNode) -> dict[str, Any]:
    return {
        "node_id": node.node_id, "type": node.node_type, "status": node.status,
        "level": node.level, "attempt": node.attempt, "output": node.output,
        "error": node.error, "skipped_because": node.skipped_because, "model": node.model,
        "tokens": {"input": node.tokens_input, "output": node.tokens_output},
        "started_at": node.started_at.isoformat() if node.started_at else None,
        "finished_at": node.finished_at.isoformat() if node.finished_at else None,
        "duration_ms": node.duration_ms,
    }


@router.post("/run", response_model=RunAccepted, status_code=status.HTTP_202_ACCEPTED,
             responses=errors(404, 429))
async def start_run(body: RunRequest, user: CurrentUserRef, session: SessionDep,
                    execution: Execution = manager(Execution)) -> RunAccepted:
    accepted = await execution.start(session, user, body)
    return RunAccepted(run_id=accepted.run_id, status=accepted.status,
                       warnings=[RunWarning(**w) for w in accepted.warnings])


@router.get("/runs", responses=errors(400))
async def list_runs(
    user: CurrentUser, session: SessionDep, flow_id: uuid.UUID | None = None,
    status: RunStatus | None = None, cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    execution: Execution = manager(Execution),
) -> dict[str, Any]:
    runs, next_cursor = await execution.list_runs(session, user, flow_id=flow_id,
                                                  status=status, cursor=cursor, limit=limit)
    return {"items": [run_summary(r) for r in runs], "next_cursor": next_cursor}


@router.get("/runs/{run_id}", responses=errors(404))
async def get_run(run_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                  execution: Execution = manager(Execution)) -> dict[str, Any]:
    run = await execution.get_run(session, user, run_id)
    nodes = await execution.run_nodes(session, run_id)
    return {**run_summary(run), "outputs": run.outputs,
            "nodes": {n.node_id: node_state(n) for n in nodes},
            "failed_node_ids": [n.node_id for n in nodes if n.status == "failed"],
            "skipped_node_ids": [n.node_id for n in nodes if n.status == "skipped"]}


@router.post("/runs/{run_id}/cancel", status_code=status.HTTP_202_ACCEPTED,
             responses=errors(404, 409))
async def cancel_run(run_id: uuid.UUID, user: CurrentUser, session: SessionDep,
                     execution: Execution = manager(Execution)) -> dict[str, Any]:
    run = await execution.cancel(session, user, run_id)
    return {"run_id": str(run.id), "status": run.status}
