"""event_logs.flow_id: a run's events keep their flow after the flow is deleted

`runs.flow_id` is nulled when its flow goes (ON DELETE SET NULL), so filtering the audit log by
flow through `runs` lost a deleted flow's run events. The flow id now lives on each event row
(no foreign key: the log outlives the flow). Existing rows are back-filled from their run, or,
where the run already lost it, from the run's `execution.started` payload; flow events
(`flow.*`) from their own payload.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _payload_flow_id(alias: str) -> str:
    """SQL for `<alias>.payload.flow_id` as the column stores a uuid on this dialect."""
    if op.get_bind().dialect.name == "postgresql":
        return f"({alias}.payload->>'flow_id')::uuid"
    # SQLite keeps sa.Uuid as 32 hex digits; the payload has the dashed form.
    return f"replace(json_extract({alias}.payload, '$.flow_id'), '-', '')"


def upgrade() -> None:
    with op.batch_alter_table("event_logs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flow_id", sa.Uuid(), nullable=True))
        batch_op.create_index("ix_event_logs_flow_id", ["flow_id"], unique=False)
    op.execute(
        "UPDATE event_logs SET flow_id = "
        "(SELECT runs.flow_id FROM runs WHERE runs.id = event_logs.run_id) "
        "WHERE run_id IS NOT NULL")
    started = _payload_flow_id("s")
    op.execute(
        f"UPDATE event_logs SET flow_id = (SELECT {started} FROM event_logs s "
        "WHERE s.run_id = event_logs.run_id AND s.event_name = 'execution.started' "
        "LIMIT 1) WHERE run_id IS NOT NULL AND flow_id IS NULL")
    own = _payload_flow_id("event_logs")
    op.execute(f"UPDATE event_logs SET flow_id = {own} "
               "WHERE run_id IS NULL AND event_name LIKE 'flow.%'")


def downgrade() -> None:
    with op.batch_alter_table("event_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_event_logs_flow_id")
        batch_op.drop_column("flow_id")
