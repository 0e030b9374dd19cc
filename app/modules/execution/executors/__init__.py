"""The public plugin surface for executors (DESIGN.md §7).

Third-party packages import only these three names:

    from app.modules.execution.executors import executor, NodeExecutionContext, NodeOutput
"""

from app.modules.execution.executors.api import (
    AdapterInput,
    ExecutorSpec,
    NodeExecutionContext,
    NodeInputs,
    NodeOutput,
    Port,
    executor,
    spec_of,
)

__all__ = [
    "AdapterInput",
    "ExecutorSpec",
    "NodeExecutionContext",
    "NodeInputs",
    "NodeOutput",
    "Port",
    "executor",
    "spec_of",
]
