"""ExecutionManager: triggers runs, tracks their tasks, cancels them, reads them back.

Runs are fire-and-forget tasks owned by this manager: the lifespan cancels and records them
on shutdown, and at start-up runs that a dead process left queued or running are closed as
`interrupted` before new work is accepted (DESIGN.md §5).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Table, and_, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api.v1.schemas.execution import RunRequest
from app.core import ids
from app.core.bus import EventBus
from app.core.config import PROVIDER_IDS, Settings
from app.core.db.base import utcnow
from app.core.db.bulk import driver_connection
from app.core.db.hooks import after_commit
from app.core.di import Registry
from app.core.di.discovery import Discovered
from app.core.errors import AppError, Conflict, NotFound, TooManyRequests, Unprocessable
from app.core.events import Event, EventTypes
from app.models import Flow, Run, RunNode, User
from app.modules.execution.executors.api import ExecutorSpec, as_specs
from app.modules.execution.graph import GraphProblem, parse_graph, validate_graph
from app.modules.execution.handlers import register_tunnel_handlers
from app.modules.execution.models import (
    ACTIVE_RUN_STATUSES,
    AcceptedRun,
    NodeStatus,
    NodeUpdate,
    RunStatus,
    RunUpdate,
)
from app.modules.execution.plan import RunPlan, build_plan
from app.modules.execution.providers.base import (
    Completion,
    CompletionRequest,
    DeltaCallback,
    ProviderError,
    TextProvider,
)
from app.modules.execution.providers.registry import (
    ProviderFactory,
    provider_has_key,
    provider_needs_key,
)
from app.modules.execution.queue import PgRunQueue, RunQueue
from app.modules.execution.runner import Runner, RunnerLimits

logger = logging.getLogger("cascade.execution")


# Starting a run is the hottest request: its statements are built once, with bound
# parameters, instead of being constructed, coerced and cache-keyed on every call, and they
# are Core statements on the tables — the ORM's loading and bulk-insert machinery cost more
# than the statements themselves (py-spy on the HTTP benchmark's server).
_FLOWS = cast(Table, Flow.__table__)
_FLOW_OF_USER = (select(_FLOWS.c.id, _FLOWS.c.project_id, _FLOWS.c.provider_id,
                        _FLOWS.c.graph_data)
                 .where(_FLOWS.c.id == bindparam("flow_id"),
                        _FLOWS.c.user_id == bindparam("user_id")))
_RUNS = cast(Table, Run.__table__)
_INSERT_RUN = insert(_RUNS)
_ACTIVE = [s.value for s in ACTIVE_RUN_STATUSES]
# Queue mode's admission (DESIGN.md §10): a transaction-scoped advisory lock keyed by the user
# serializes the count of the user's active runs across every replica (the partial index
# ix_runs_active_user_id keeps the count small). Not the user's row: the event writer locks
# that row to number the user's events, so admissions and event batches of one user queued
# behind each other (13.9 ms of lock wait per batch measured under the queue benchmark).
_ADMISSION_LOCK_CLASS = 7_262_345  # the advisory lock's first key: "run admission"
# The lock rides on the run's insert (one round trip fewer). The count goes to asyncpg as it
# is (SQLAlchemy's statement machinery was most of its cost), its statuses as literals so that
# the partial index's predicate is provable.
_INSERT_RUN_LOCKING_USER = insert(_RUNS).returning(
    func.pg_advisory_xact_lock(_ADMISSION_LOCK_CLASS, _RUNS.c.user_id))
_COUNT_ACTIVE = ("SELECT count(*) FROM runs WHERE user_id = $1 AND status IN ("
                 + ", ".join(f"'{status}'" for status in _ACTIVE) + ")")
_CANCEL_WAIT_S = 5.0


class UserLike(Protocol):
    """Who starts a run: only the id is used (an ORM User or an auth UserRef)."""

    @property
    def id(self) -> int: ...


class ExecutionManager:
    def __init__(self, registry: Registry) -> None:
        self._settings = registry.get(Settings)
        self._bus = registry.get(EventBus)
        self._executors: Mapping[str, ExecutorSpec] = as_specs(registry.get(Discovered).executors)
        self._registry = registry
        self.providers = registry.find(ProviderFactory) or ProviderFactory(self._settings)
        registry.put(ProviderFactory, self.providers)
        self._tasks: dict[uuid.UUID, asyncio.Task[RunStatus]] = {}
        self._runs_by_user: dict[int, set[uuid.UUID]] = {}
        self._accepting = False
        # queue: this process enqueues and never runs nodes (workers do, app/worker.py).
        self.queue_mode = self._settings.EXECUTION_MODE == "queue"
        self._queue: RunQueue | None = None

    @property
    def executors(self) -> Mapping[str, ExecutorSpec]:
        return self._executors

    @property
    def _sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        sessionmaker: async_sessionmaker[AsyncSession] = self._registry.get(
            async_sessionmaker)
        return sessionmaker

    @property
    def queue(self) -> RunQueue:
        """Queue mode's run queue (built on first use: the sessionmaker may be replaced
        until start-up)."""
        if self._queue is None:
            self._queue = PgRunQueue(self._settings, self._sessionmaker.kw["bind"])
        return self._queue

    def limits(self) -> RunnerLimits:
        s = self._settings
        return RunnerLimits(
            max_concurrent_nodes=s.MAX_NODES_PER_RUN, node_timeout_s=s.NODE_TIMEOUT_S,
            max_attempts=s.NODE_MAX_ATTEMPTS, retry_base_delay_s=s.RETRY_BASE_DELAY_S,
            retry_max_delay_s=s.RETRY_MAX_DELAY_S, stream=s.LLM_TOKEN_STREAM,
            stream_interval_s=s.LLM_STREAM_COALESCE_MS / 1000)

    # --- lifecycle ---------------------------------------------------------------------------
    async def startup(self) -> None:
        # Inline mode: whatever is still active was this database's one process's, which is
        # gone. Queue mode: other replicas' runs are live; workers close runs whose lease ran
        # out instead (app/modules/execution/worker.py).
        if not self.queue_mode:
            await self.close_interrupted_runs()
        register_tunnel_handlers(self._registry, self)
        self._accepting = True

    async def shutdown(self) -> None:
        self._accepting = False
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=10)
        await self.providers.aclose()

    async def close_interrupted_runs(self) -> int:
        """Runs a dead process left queued or running end as failed/interrupted; their
        unfinished nodes become `cancelled`, each by its own event, so the stored state and
        the log still agree."""
        async with self._sessionmaker() as session:
            runs = (await session.execute(
                select(Run.id, Run.user_id, Run.project_id, Run.flow_id).where(
                    Run.status.in_([s.value for s in ACTIVE_RUN_STATUSES])))).all()
            open_nodes = (await session.execute(
                select(RunNode.run_id, RunNode.node_id).where(
                    RunNode.run_id.in_([run.id for run in runs]),
                    RunNode.status.in_([NodeStatus.PENDING.value, NodeStatus.RUNNING.value]),
                ).order_by(RunNode.level, RunNode.node_id))).all() if runs else []
        nodes_by_run: dict[uuid.UUID, list[str]] = {}
        for node in open_nodes:
            nodes_by_run.setdefault(node.run_id, []).append(node.node_id)
        error = {"code": "interrupted",
                 "message": "the server stopped while this run was in progress"}
        now = utcnow()
        events: list[Event] = []
        for run in runs:
            for node_id in nodes_by_run.get(run.id, []):
                events.append(Event(
                    EventTypes.EXECUTION_NODE_STATUS,
                    {"node_id": node_id, "status": NodeStatus.CANCELLED.value,
                     "reason": "interrupted"},
                    user_id=run.user_id, project_id=run.project_id, run_id=run.id,
                    flow_id=run.flow_id,
                    state=[NodeUpdate(run.id, node_id, {"status": NodeStatus.CANCELLED.value,
                                                        "finished_at": now})]))
            events.append(Event(
                EventTypes.EXECUTION_FAILED, {"error": error}, user_id=run.user_id,
                project_id=run.project_id, run_id=run.id, flow_id=run.flow_id,
                state=[RunUpdate(run.id, {"status": RunStatus.FAILED.value, "error": error,
                                          "finished_at": now})]))
        if events:
            await self._bus.emit_many(events)
            logger.warning("closed %d interrupted run(s)", len(runs))
        return len(runs)

    # --- starting a run ----------------------------------------------------------------------
    async def start(self, session: AsyncSession, user: UserLike,
                    request: RunRequest) -> AcceptedRun:
        if not self._accepting:
            raise AppError("the server is not accepting runs", code="unavailable",
                           status_code=503)
        if not self.queue_mode and len(self._runs_by_user.get(user.id, ())) \
                >= self._settings.MAX_RUNS_PER_USER:
            raise self._too_many_runs()
        flow: Any = None  # the flow row (id, project_id, provider_id, graph_data)
        if request.flow_id is not None:
            flow = (await session.execute(_FLOW_OF_USER, {
                "flow_id": request.flow_id, "user_id": user.id})).first()
            if flow is None:
                raise NotFound("flow not found")
            raw_graph: dict[str, Any] = dict(flow.graph_data)
        else:
            raw_graph = {"nodes": request.nodes, "edges": request.edges or []}
        provider_id = (request.provider_id or (flow.provider_id if flow else None)
                       or self._settings.DEFAULT_PROVIDER)
        graph = self._validate(raw_graph, provider_id, request)
        run_id = ids.uuid4()
        available = dict(request.cached_outputs or {})
        if request.trigger_node_id is not None and flow is not None:
            stored = await self.latest_outputs(session, flow.id, user.id)
            available = {**stored, **available}
        plan = build_plan(
            run_id=run_id, user_id=user.id, project_id=flow.project_id if flow else None,
            flow_id=flow.id if flow else None, provider_id=provider_id, graph=graph,
            registry=self._executors, trigger_node_id=request.trigger_node_id,
            available_outputs=available)
        values = {"id": run_id, "flow_id": plan.flow_id, "user_id": user.id,
                  "project_id": plan.project_id, "status": RunStatus.QUEUED.value,
                  "trigger_node_id": request.trigger_node_id, "provider_id": provider_id,
                  "graph": raw_graph, "cached_outputs": plan.reusable or None}
        # A Core insert: the ORM's unit of work cost more than the statement on this path.
        if self.queue_mode:
            # The job commits with the run row (the request's transaction), or neither does;
            # it is written first so that the insert can take the admission lock last.
            await self.queue.enqueue(session, run_id)
            await session.execute(_INSERT_RUN_LOCKING_USER, values)
            await self._admit(session, user.id)
            return AcceptedRun(run_id, RunStatus.QUEUED.value, plan.warnings)
        await session.execute(_INSERT_RUN, values)
        # Count the run against the user's limit now; start it once its row is committed
        # (the runner numbers events against that row).
        self._reserve(user.id, run_id)
        after_commit(session, lambda: self._launch(plan),
                     on_rollback=lambda: self._release(user.id, run_id))
        return AcceptedRun(run_id, RunStatus.QUEUED.value, plan.warnings)

    def _too_many_runs(self) -> TooManyRequests:
        return TooManyRequests(
            f"at most {self._settings.MAX_RUNS_PER_USER} concurrent runs per user",
            code="too_many_runs")

    async def _admit(self, session: AsyncSession, user_id: int) -> None:
        """Queue mode: count the user's queued and running runs, this request's new one
        included, under the user's admission lock (taken by the run's insert, held until the
        request commits), so concurrent starts on any replica are counted one after another:
        the count is a statement of its own, whose fresh snapshot sees every run admitted
        before the lock was granted (in the insert's own statement it would not). Taken last,
        right before the commit: held across the request's other statements, the lock queued
        a user's starts behind each other for milliseconds each on a busy replica."""
        driver = await driver_connection(session)
        active = await driver.fetchval(_COUNT_ACTIVE, user_id)
        if active > self._settings.MAX_RUNS_PER_USER:
            raise self._too_many_runs()

    def _validate(self, raw: dict[str, Any], provider_id: str, request: RunRequest) -> Any:
        s = self._settings
        missing_key = None
        if provider_id not in PROVIDER_IDS:
            raise Unprocessable(f"unknown provider {provider_id!r}", code="invalid_graph",
                                details=[{"code": "unknown_provider",
                                          "message": f"unknown provider {provider_id!r}"}])
        if provider_needs_key(provider_id) and not provider_has_key(provider_id, s):
            if self._needs_provider(raw):
                missing_key = provider_id
        problems = validate_graph(raw, registry=self._executors, max_nodes=s.GRAPH_MAX_NODES,
                                  max_edges=s.GRAPH_MAX_EDGES, max_bytes=s.GRAPH_MAX_BYTES,
                                  provider_missing_key=missing_key)
        graph = None
        if not problems:
            graph = parse_graph(raw)
            if request.trigger_node_id is not None and request.trigger_node_id not in graph.nodes:
                problems.append(GraphProblem(
                    "unknown_trigger_node", f"trigger node {request.trigger_node_id!r} is not "
                    "in the graph", node_id=request.trigger_node_id))
            for node_id, output in (request.cached_outputs or {}).items():
                if node_id not in graph.nodes:
                    problems.append(GraphProblem("unknown_cached_node",
                                                 f"cached output for unknown node {node_id!r}",
                                                 node_id=node_id))
                elif not _is_output(output):
                    problems.append(GraphProblem(
                        "invalid_cached_output", "a cached output is {text?: string, "
                        "data?: object}", node_id=node_id))
        if problems:
            raise Unprocessable(f"the graph has {len(problems)} problem(s)",
                                code="invalid_graph", details=[p.to_dict() for p in problems])
        return graph

    def _needs_provider(self, raw: dict[str, Any]) -> bool:
        nodes = raw.get("nodes") if isinstance(raw, dict) else None
        for node in nodes if isinstance(nodes, list) else []:
            spec = self._executors.get(str(node.get("type"))) if isinstance(node, dict) else None
            if spec is not None and spec.api_call != "never":
                return True
        return False

    def provider_for(self, provider_id: str) -> TextProvider:
        try:
            return self.providers.get(provider_id)
        except ProviderError as exc:
            # Validation let the run through because none of its nodes needs the provider
            # (no key, nothing calls it); a node that calls it after all fails with this error
            # instead of the trigger crashing after the run row was committed.
            return _UnavailableProvider(provider_id, exc)

    def _launch(self, plan: RunPlan) -> None:
        runner = Runner(plan, bus=self._bus, provider=self.provider_for(plan.provider_id),
                        limits=self.limits())
        task = asyncio.create_task(runner.run(), name=f"run-{plan.run_id}")
        self._tasks[plan.run_id] = task

        def forget(_: asyncio.Task[RunStatus]) -> None:
            self._tasks.pop(plan.run_id, None)
            self._release(plan.user_id, plan.run_id)

        task.add_done_callback(forget)

    def _reserve(self, user_id: int, run_id: uuid.UUID) -> None:
        self._runs_by_user.setdefault(user_id, set()).add(run_id)

    def _release(self, user_id: int, run_id: uuid.UUID) -> None:
        runs = self._runs_by_user.get(user_id)
        if runs is not None:
            runs.discard(run_id)
            if not runs:
                del self._runs_by_user[user_id]

    async def wait(self, run_id: uuid.UUID) -> RunStatus | None:
        """Await a run's task (tests and benchmarks)."""
        task = self._tasks.get(run_id)
        return await task if task is not None else None

    # --- cancel ------------------------------------------------------------------------------
    async def cancel(self, session: AsyncSession, user: User, run_id: uuid.UUID) -> Run:
        run = await self.get_run(session, user, run_id)
        if self.queue_mode:
            return await self._cancel_queued(session, run)
        task = self._tasks.get(run_id)
        if task is None or task.done():
            raise Conflict("the run is not running", code="run_not_active",
                           details={"status": run.status})
        task.cancel()
        # End our transaction first: on SQLite it holds the write lock the runner needs to
        # record the cancellation.
        await session.commit()
        await asyncio.wait([task], timeout=5)
        await session.refresh(run)
        return run

    async def _cancel_queued(self, session: AsyncSession, run: Run) -> Run:
        """Queue mode: a run no worker has claimed yet is cancelled here and now; a claimed
        one is flagged, and its worker (told by NOTIFY, or at its next poll of the flag)
        cancels it. Either way the answer waits until the run has ended (at most 5 s)."""
        locked = (await session.execute(
            select(Run.status, Run.lease_expires_at).where(Run.id == run.id)
            .with_for_update())).one()
        if locked.status not in _ACTIVE:
            raise Conflict("the run is not running", code="run_not_active",
                           details={"status": locked.status})
        if locked.status == RunStatus.QUEUED.value and locked.lease_expires_at is None:
            # Raising the attempt fences out a worker that picks the job up later.
            await session.execute(update(_RUNS).where(_RUNS.c.id == run.id)
                                  .values(attempt=_RUNS.c.attempt + 1))
            await self._bus.emit_in(session, Event(
                EventTypes.EXECUTION_CANCELLED, {"cancelled_node_ids": [], "outputs": {}},
                user_id=run.user_id, project_id=run.project_id, run_id=run.id,
                flow_id=run.flow_id,
                state=[RunUpdate(run.id, {"status": RunStatus.CANCELLED.value,
                                          "finished_at": utcnow()})]))
            await session.commit()
            await self._bus.dispatch_committed(session)
        else:
            await self.queue.cancel(session, run.id)
            await session.commit()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CANCEL_WAIT_S
        while True:
            await session.refresh(run)
            await session.commit()  # each look is a fresh snapshot
            if run.status not in _ACTIVE or loop.time() >= deadline:
                return run
            await asyncio.sleep(0.05)

    # --- reading -----------------------------------------------------------------------------
    async def get_run(self, session: AsyncSession, user: User, run_id: uuid.UUID) -> Run:
        run = (await session.execute(select(Run).where(
            Run.id == run_id, Run.user_id == user.id))).scalar_one_or_none()
        if run is None:
            raise NotFound("run not found")
        return run

    async def run_nodes(self, session: AsyncSession, run_id: uuid.UUID) -> list[RunNode]:
        return list((await session.execute(
            select(RunNode).where(RunNode.run_id == run_id)
            .order_by(RunNode.level, RunNode.node_id))).scalars())

    async def list_runs(self, session: AsyncSession, user: User, *, flow_id: uuid.UUID | None,
                        status: str | None, cursor: str | None, limit: int,
                        ) -> tuple[list[Run], str | None]:
        query = select(Run).where(Run.user_id == user.id)
        if flow_id is not None:
            query = query.where(Run.flow_id == flow_id)
        if status is not None:
            query = query.where(Run.status == status)
        if cursor is not None:
            created, last_id = _decode_run_cursor(cursor)
            query = query.where(or_(Run.created_at < created,
                                    and_(Run.created_at == created, Run.id < last_id)))
        rows = list((await session.execute(
            query.order_by(Run.created_at.desc(), Run.id.desc()).limit(limit + 1))).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_run_cursor(rows[-1]) if more else None
        return rows, next_cursor

    async def latest_outputs(self, session: AsyncSession, flow_id: uuid.UUID,
                             user_id: int) -> dict[str, dict[str, Any]]:
        """Node outputs of the flow's latest successful run (partial re-runs reuse them)."""
        run_id = (await session.execute(
            select(Run.id).where(Run.flow_id == flow_id, Run.user_id == user_id,
                                 Run.status == RunStatus.SUCCEEDED.value)
            .order_by(Run.created_at.desc()).limit(1))).scalar_one_or_none()
        if run_id is None:
            return {}
        rows = (await session.execute(
            select(RunNode.node_id, RunNode.output).where(
                RunNode.run_id == run_id, RunNode.output.is_not(None)))).all()
        return {row.node_id: row.output for row in rows if row.output is not None}


class _UnavailableProvider:
    """Stands in for a provider that cannot be built; every call fails with why."""

    def __init__(self, provider_id: str, error: ProviderError) -> None:
        self.id = provider_id
        self._error = error

    async def complete(self, request: CompletionRequest) -> Completion:
        raise ProviderError(self._error.code, self._error.message, transient=False)

    async def stream(self, request: CompletionRequest, on_delta: DeltaCallback) -> Completion:
        raise ProviderError(self._error.code, self._error.message, transient=False)


def _is_output(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) - {"text", "data"}:
        return False
    return (value.get("text") is None or isinstance(value.get("text"), str)) and \
        isinstance(value.get("data", {}), dict)


def _encode_run_cursor(run: Run) -> str:
    raw = json.dumps([run.created_at.isoformat(), str(run.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_run_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, run_id = json.loads(base64.urlsafe_b64decode(padded))
        return datetime.fromisoformat(created), uuid.UUID(run_id)
    except Exception as exc:
        raise AppError("the cursor is not one this API issued", code="invalid_cursor",
                       status_code=400) from exc


manager_class = ExecutionManager
