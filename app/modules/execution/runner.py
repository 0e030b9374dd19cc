"""The runner: levels in order, each level's nodes with `asyncio.gather` (DESIGN.md §6).

It knows the event bus and the providers, never the WebSocket layer. Every status change is
an event carrying the state op that records it, so the run row and the node rows change in the
same transaction as the event that announces the change.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.core.bus import EventBus
from app.core.db.base import utcnow
from app.core.events import Event, EventTypes
from app.modules.execution.config.model_defaults import resolve_model
from app.modules.execution.eager import Deadlines
from app.modules.execution.executors.api import (
    AdapterInput,
    NodeExecutionContext,
    NodeInputs,
    NodeOutput,
)
from app.modules.execution.graph import GraphEdge
from app.modules.execution.models import (
    NODE_TRANSITIONS,
    NodeInsert,
    NodeStatus,
    NodeUpdate,
    RunStatus,
    RunUpdate,
    check_transition,
)
from app.modules.execution.plan import RunPlan
from app.modules.execution.providers.base import ProviderError, TextProvider
from app.modules.execution.streaming import StreamCoalescer

logger = logging.getLogger("cascade.runner")

# Wait for the log after this many unconfirmed writes, or when the writer's queue is longer.
_CONFIRM_EVERY = 2000
_MAX_BACKLOG = 5000
# Hand events over and let the loop turn after this many (see _queue).
_YIELD_EVERY = 64
# Plain strings for payloads and rows; `NodeStatus.X.value` is a Python-level property.
_STATUS_VALUE = {status: status.value for status in NodeStatus}


@dataclass(frozen=True)
class RunnerLimits:
    max_concurrent_nodes: int = 16
    node_timeout_s: float = 300.0
    max_attempts: int = 3
    retry_base_delay_s: float = 0.5
    retry_max_delay_s: float = 8.0
    stream: bool = True
    stream_interval_s: float = 0.05


class NodeFailure(Exception):
    def __init__(self, code: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient


def backoff_delay(attempt: int, limits: RunnerLimits) -> float:
    """Exponential backoff with full jitter, bounded (attempt 1 failed → first delay)."""
    ceiling = min(limits.retry_max_delay_s, limits.retry_base_delay_s * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def as_failure(exc: Exception, timeout_s: float) -> NodeFailure:
    """What an attempt that raised `exc` failed with (DESIGN.md §6: timeouts and the
    provider's transient errors are retried)."""
    if isinstance(exc, TimeoutError):
        return NodeFailure("timeout", f"the node took longer than {timeout_s:g} s",
                           transient=True)
    if isinstance(exc, ProviderError):
        return NodeFailure(exc.code, exc.message, transient=exc.transient)
    return NodeFailure("executor_error", str(exc) or type(exc).__name__)


class Runner:
    def __init__(self, plan: RunPlan, *, bus: EventBus, provider: TextProvider,
                 limits: RunnerLimits, clock: Callable[[], float] = time.monotonic,
                 fence: int | None = None) -> None:
        self.plan = plan
        # Queue mode: the run attempt this worker holds; the log refuses the run's events
        # once another worker has taken the run over (DESIGN.md §10).
        self._fence = fence
        self._abandoned = False
        self._bus = bus
        self._provider = provider
        self._limits = limits
        self._clock = clock
        self._status: dict[str, NodeStatus | None] = dict.fromkeys(plan.node_ids)
        self._outputs: dict[str, dict[str, Any]] = {}
        self._blocked_by: dict[str, str] = {}  # node → the failed node that skips it
        self._any_failed = False  # until a node fails, no node can be blocked (_run_level)
        self._tokens = {"input": 0, "output": 0}
        self._run_id_text = str(plan.run_id)
        self._unconfirmed: list[asyncio.Future[None]] = []
        # Events published since the last hand-over to the bus (see _queue).
        self._outbox: list[Event] = []
        self._handover_scheduled = False
        self._behind = False  # the writer is behind: wait for the log (see _hand_over)
        self._deadlines = Deadlines()  # every attempt's timeout, behind one timer
        # Each node's incoming edges, grouped once (scanning every edge for every node made a
        # run O(nodes × edges)), parents in their order in the flow's node list.
        incoming: dict[str, list[GraphEdge]] = {}
        for edge in plan.graph.edges:
            incoming.setdefault(edge.target, []).append(edge)
        nodes = plan.graph.nodes
        self._incoming = {target: sorted(edges, key=lambda e: nodes[e.source].index)
                          for target, edges in incoming.items()}

    # --- publishing --------------------------------------------------------------------------
    async def _publish(self, *events: Event) -> None:
        if self._queue(*events):
            await self._catch_up()

    def _queue(self, *events: Event) -> bool:
        """Queue events for the log without waiting for their commit: the writer keeps their
        order, and a chain of nodes does not pay one commit per event. The run waits for
        every write before it ends (`_confirm`), and waits early when the writer falls
        behind, so the backlog stays bounded. Returns True when the caller must await
        `_catch_up()` (the hot path calls this without a coroutine per event).

        Events queued in one turn of the event loop go to the bus as one write, handed
        over at the start of the next turn — before the writer can run, so no later than one
        write per event would be — instead of paying a queue entry and a future each."""
        self._outbox.extend(events)
        if len(self._outbox) >= _YIELD_EVERY or self._behind:
            return True
        if not self._handover_scheduled:
            self._handover_scheduled = True
            asyncio.get_running_loop().call_soon(self._hand_over)
        return False

    async def _catch_up(self) -> None:
        if len(self._outbox) >= _YIELD_EVERY:
            # A run whose nodes finish without waiting would otherwise hold the loop until
            # its level ends, and the writer, which needs the loop between its round trips,
            # could not work on the log alongside it.
            self._hand_over()
            await asyncio.sleep(0)
        if self._behind:
            await self._confirm()
        elif self._outbox and not self._handover_scheduled:
            self._handover_scheduled = True
            asyncio.get_running_loop().call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._handover_scheduled = False
        if not self._outbox:
            return
        events, self._outbox = self._outbox, []
        try:
            self._unconfirmed.append(self._bus.enqueue(events))
        except Exception as exc:  # surfaces in _confirm, not in the loop's exception handler
            failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            self._unconfirmed.append(failed)
        # The backlog grows only here (and shrinks as the writer works): looked at once per
        # hand-over instead of once per event.
        self._behind = (len(self._unconfirmed) >= _CONFIRM_EVERY
                        or self._bus.backlog > _MAX_BACKLOG)

    async def _confirm(self) -> None:
        self._hand_over()
        pending, self._unconfirmed = self._unconfirmed, []
        self._behind = False
        if pending:
            # Shielded: a cancelled run still waits for what it already wrote.
            await asyncio.shield(asyncio.gather(*pending))

    # --- events ------------------------------------------------------------------------------
    def _event(self, type_: str, payload: dict[str, Any], *state: Any) -> Event:
        # Every event the runner makes carries its fence, those it hands to the bus directly
        # (_record_fatal) too: a fenced-out worker gets none of them into the log.
        return Event(type_, payload, user_id=self.plan.user_id, project_id=self.plan.project_id,
                     run_id=self.plan.run_id, flow_id=self.plan.flow_id, state=list(state),
                     fence=self._fence)

    def _node_event(self, node_id: str, status: NodeStatus, payload: dict[str, Any],
                    values: dict[str, Any], *, type_: str = EventTypes.EXECUTION_NODE_STATUS,
                    ) -> Event:
        if self._status[node_id] not in NODE_TRANSITIONS[status]:
            check_transition(node_id, self._status[node_id], status)  # raises, naming both
        self._status[node_id] = status
        value = _STATUS_VALUE[status]
        return self._event(type_, {"node_id": node_id, "status": value, **payload},
                           NodeUpdate(self.plan.run_id, node_id, {"status": value, **values}))

    # --- the run -----------------------------------------------------------------------------
    async def run(self) -> RunStatus:
        plan = self.plan
        try:
            await self._start()
            for level in plan.levels:
                runnable = [n for n in level if n in plan.to_run]
                await self._run_level(runnable)
            return await self._complete()
        except asyncio.CancelledError:
            if self._abandoned:  # another worker holds the run now: it records the end
                return RunStatus.FAILED
            await self._record_cancel()
            return RunStatus.CANCELLED
        except Exception as exc:
            logger.exception("run %s failed", plan.run_id)
            await self._record_fatal(exc)
            return RunStatus.FAILED
        finally:
            self._deadlines.close()

    def abandon(self) -> None:
        """This worker lost the run's lease: the next cancel of its task records nothing
        (the log would refuse it; the worker that took the run over closes it)."""
        self._abandoned = True

    async def _start(self) -> None:
        plan = self.plan
        levels = plan.level_of()
        started = self._event(EventTypes.EXECUTION_STARTED, {
            "flow_id": str(plan.flow_id) if plan.flow_id else None,
            "trigger_node_id": plan.trigger_node_id, "provider_id": plan.provider_id,
            "node_ids": plan.node_ids, "warnings": plan.warnings,
        }, RunUpdate(plan.run_id, {"status": RunStatus.RUNNING.value, "started_at": utcnow()}))
        events = [started]
        pending = _STATUS_VALUE[NodeStatus.PENDING]
        for node_id in plan.node_ids:
            check_transition(node_id, None, NodeStatus.PENDING)
            self._status[node_id] = NodeStatus.PENDING
            events.append(self._event(
                EventTypes.EXECUTION_NODE_STATUS,
                {"node_id": node_id, "status": pending},
                NodeInsert({"run_id": plan.run_id, "node_id": node_id,
                            "node_type": plan.graph.nodes[node_id].type,
                            "status": pending, "level": levels[node_id]})))
        for node_id, output in plan.cached.items():
            self._outputs[node_id] = output
            events.append(self._node_event(node_id, NodeStatus.CACHED, {"output": output},
                                           {"output": output}))
        await self._publish(*events)

    async def _run_level(self, node_ids: list[str]) -> None:
        skipped = []
        runnable = node_ids
        if self._any_failed:  # looking up every node's parents is needless until then
            runnable = []
            for node_id in node_ids:
                blocker = self._blocker(node_id)
                if blocker is None:
                    runnable.append(node_id)
                else:
                    self._blocked_by[node_id] = blocker
                    skipped.append(self._node_event(
                        node_id, NodeStatus.SKIPPED, {"skipped_because": blocker},
                        {"skipped_because": blocker}))
        if skipped:
            await self._publish(*skipped)
        if len(runnable) == 1:
            await self._run_node(runnable[0])  # no task to create for a level of one
        elif runnable:
            # At most max_concurrent_nodes workers take the level's nodes in order: the
            # per-run bound, without a task and a semaphore wait for every node.
            queue = iter(runnable)

            async def worker() -> None:
                for node_id in queue:
                    await self._run_node(node_id)

            workers = min(len(runnable), max(self._limits.max_concurrent_nodes, 1))
            await asyncio.gather(*(worker() for _ in range(workers)))

    def _blocker(self, node_id: str) -> str | None:
        """The failed node upstream that stops this one, if any."""
        for parent in self.plan.graph.parents_of.get(node_id, ()):
            status = self._status.get(parent)
            if status == NodeStatus.FAILED:
                return parent
            if status in (NodeStatus.SKIPPED, NodeStatus.CANCELLED):
                return self._blocked_by.get(parent, parent)
        return None

    # --- one node ----------------------------------------------------------------------------
    def _inputs(self, node_id: str) -> NodeInputs:
        graph = self.plan.graph
        text: dict[str, str] = {}
        adapters: dict[str, AdapterInput] = {}
        for edge in self._incoming.get(node_id, ()):
            output = self._outputs.get(edge.source, {})
            if self.plan.edge_kinds.get(edge.id) == "adapter":
                adapters[edge.source] = AdapterInput(
                    source_node_id=edge.source, source_type=graph.nodes[edge.source].type,
                    data=output.get("data") or {}, text=output.get("text"))
            elif output.get("text") is not None:
                text[edge.source] = output["text"]
        return NodeInputs(text=text, adapters=adapters)

    async def _run_node(self, node_id: str) -> None:
        plan = self.plan
        spec = plan.specs[node_id]
        common = plan.commons[node_id]
        model = resolve_model(common.model, spec.type, plan.provider_id)
        timeout_s = common.timeout_s or self._limits.node_timeout_s
        max_attempts = min(common.max_attempts or self._limits.max_attempts,
                           max(self._limits.max_attempts, 1) * 4)
        inputs = self._inputs(node_id)
        stream: StreamCoalescer | None = None

        async def push_delta(delta: str) -> None:  # the coalescer is made on the first delta
            nonlocal stream
            if stream is None:
                stream = StreamCoalescer(self._publish, user_id=plan.user_id,
                                         run_id=plan.run_id, node_id=node_id,
                                         attempt=attempt,
                                         interval_s=self._limits.stream_interval_s,
                                         fence=self._fence)
            await stream.push(delta)

        started_at = utcnow()
        began = self._clock()
        attempt = 0
        while True:
            attempt += 1
            if self._queue(self._node_event(
                    node_id, NodeStatus.RUNNING,
                    {"attempt": attempt, "max_attempts": max_attempts, "model": model},
                    {"attempt": attempt, "model": model, "started_at": started_at})):
                await self._catch_up()
            ctx = NodeExecutionContext(
                node_id=node_id, node_type=spec.type, run_id=self._run_id_text,
                user_id=plan.user_id, config=plan.configs[node_id], inputs=inputs,
                provider=self._provider, model=model, attempt=attempt, timeout_s=timeout_s,
            )
            if self._limits.stream:
                ctx._stream_sink = push_delta
            try:
                output: NodeOutput | NodeFailure = await self._deadlines.run(spec.execute(ctx),
                                                                             timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                output = as_failure(exc, timeout_s)
            else:
                if not isinstance(output, NodeOutput):
                    output = NodeFailure("executor_error", f"the executor returned "
                                         f"{type(output).__name__}, not NodeOutput")
            if isinstance(output, NodeFailure):
                if stream is not None:
                    stream.reset(attempt + 1)
                self._count_tokens(ctx)
                if output.transient and attempt < max_attempts:
                    await asyncio.sleep(backoff_delay(attempt, self._limits))
                    continue
                await self._fail(node_id, output, attempt, began)
                return
            if stream is not None:
                await stream.flush()
            self._count_tokens(ctx)
            if self._queue(self._completed_event(node_id, output, ctx, began)):
                await self._catch_up()
            return

    def _count_tokens(self, ctx: NodeExecutionContext) -> None:
        self._tokens["input"] += ctx.usage["input"]
        self._tokens["output"] += ctx.usage["output"]

    def _completed_event(self, node_id: str, output: NodeOutput, ctx: NodeExecutionContext,
                         began: float) -> Event:
        value = output.model_dump(mode="json")
        self._outputs[node_id] = value
        duration_ms = int((self._clock() - began) * 1000)
        tokens = {"input": ctx.usage["input"], "output": ctx.usage["output"]}
        return self._node_event(
            node_id, NodeStatus.COMPLETED,
            {"output": value, "duration_ms": duration_ms, "model": ctx.model, "tokens": tokens,
             "attempt": ctx.attempt},
            {"output": value, "duration_ms": duration_ms, "finished_at": utcnow(),
             "tokens_input": tokens["input"], "tokens_output": tokens["output"]},
            type_=EventTypes.EXECUTION_NODE_COMPLETED)

    async def _fail(self, node_id: str, failure: NodeFailure, attempt: int,
                    began: float) -> None:
        error = {"code": failure.code, "message": failure.message}
        duration_ms = int((self._clock() - began) * 1000)
        self._any_failed = True
        await self._publish(self._node_event(
            node_id, NodeStatus.FAILED,
            {"error": error, "attempt": attempt, "duration_ms": duration_ms},
            {"error": error, "duration_ms": duration_ms, "finished_at": utcnow()},
            type_=EventTypes.EXECUTION_NODE_FAILED))

    # --- the end -----------------------------------------------------------------------------
    def _ids(self, status: NodeStatus) -> list[str]:
        return [n for n in self.plan.node_ids if self._status[n] == status]

    def _sink_outputs(self) -> dict[str, Any]:
        children = self.plan.graph.children_of
        return {n: self._outputs[n] for n in self.plan.node_ids
                if n in self._outputs and not children.get(n)}

    def _totals(self) -> dict[str, Any]:
        return {"tokens_input": self._tokens["input"], "tokens_output": self._tokens["output"],
                "finished_at": utcnow()}

    async def _complete(self) -> RunStatus:
        failed = self._ids(NodeStatus.FAILED)
        status = RunStatus.PARTIAL if failed else RunStatus.SUCCEEDED
        outputs = self._sink_outputs()
        await self._publish(self._event(EventTypes.EXECUTION_COMPLETED, {
            "status": status.value, "outputs": outputs, "failed_node_ids": failed,
            "skipped_node_ids": self._ids(NodeStatus.SKIPPED),
            "tokens": {"input": self._tokens["input"], "output": self._tokens["output"]},
        }, RunUpdate(self.plan.run_id, {"status": status.value, "outputs": outputs,
                                        **self._totals()})))
        await self._confirm()
        return status

    async def _record_cancel(self) -> None:
        events = [self._node_event(n, NodeStatus.CANCELLED, {}, {"finished_at": utcnow()})
                  for n in self.plan.node_ids
                  if self._status[n] in (NodeStatus.PENDING, NodeStatus.RUNNING)]
        events.append(self._event(EventTypes.EXECUTION_CANCELLED, {
            "cancelled_node_ids": [e.payload["node_id"] for e in events],
            "outputs": self._sink_outputs(),
        }, RunUpdate(self.plan.run_id, {"status": RunStatus.CANCELLED.value,
                                        **self._totals()})))
        await self._publish(*events)
        # The run is over only once its cancellation is in the log: whoever awaits the run
        # (the cancel endpoint, shutdown, the per-user run limit) must see it committed.
        await self._confirm()

    async def _record_fatal(self, exc: Exception) -> None:
        error = {"code": "internal_error", "message": str(exc) or type(exc).__name__}
        try:
            self._hand_over()
            self._unconfirmed.clear()
            await self._bus.emit(self._event(
                EventTypes.EXECUTION_FAILED, {"error": error},
                RunUpdate(self.plan.run_id, {"status": RunStatus.FAILED.value, "error": error,
                                             **self._totals()})))
        except Exception:
            logger.exception("could not record the failure of run %s", self.plan.run_id)

