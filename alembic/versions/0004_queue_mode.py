"""Queue mode (DESIGN.md §10): run leases and fencing, live workers, shared login failures,
and pgqueuer's own tables on PostgreSQL

`runs.attempt` is the fencing token a worker's event writes are checked against;
`lease_expires_at`/`worker_id` say who holds a run until when; `cancel_requested` is the flag
a worker polls when a cancel's NOTIFY did not reach it; `cached_outputs` keeps the outputs a
plan reuses so that a worker rebuilds the plan the API validated.

pgqueuer's schema is the DDL of the pinned pgqueuer release (pyproject.toml), rendered by the
library itself; a later pgqueuer upgrade gets a migration of its own (`pgqueuer upgrade`'s
plan), so this revision always creates what 1.6.0 needs. SQLite has no queue mode and gets
none of it.

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PGQUEUER_VERSION = "1.6.0"
_ACTIVE = sa.text("status IN ('queued', 'running')")


def _pgqueuer_ddl() -> str:
    import pgqueuer
    from pgqueuer.adapters.persistence.schema_ddl import render_install
    from pgqueuer.domain.settings import DBSettings

    if pgqueuer.__version__ != PGQUEUER_VERSION:
        raise RuntimeError(f"migration 0004 installs pgqueuer {PGQUEUER_VERSION}'s schema; "
                           f"{pgqueuer.__version__} is installed (pin it, or add a migration "
                           "with its upgrade plan)")
    return render_install(DBSettings())


def _statements(ddl: str) -> list[str]:
    """The DDL one statement at a time (asyncpg prepares each statement; a prepared statement
    holds one command). A `;` inside a `$$`-quoted function body does not end a statement."""
    statements, current = [], ""
    for piece in ddl.split(";"):
        current += piece + ";"
        if current.count("$$") % 2 == 0:
            if current.strip(" \n;") and not all(
                    line.strip().startswith("--") or not line.strip()
                    for line in current.splitlines()):
                statements.append(current.strip())
            current = ""
    return statements


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="0",
                                      nullable=False))
        batch_op.add_column(sa.Column("worker_id", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("cancel_requested", sa.Boolean(), server_default="0",
                                      nullable=False))
        batch_op.add_column(sa.Column("cached_outputs", sa.JSON().with_variant(
            postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True))
    op.create_index("ix_runs_active_user_id", "runs", ["user_id"], unique=False,
                    postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)
    op.create_index("ix_runs_lease_expires_at", "runs", ["lease_expires_at"], unique=False,
                    postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=100), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_workers_seen_at", "workers", ["seen_at"], unique=False)
    op.create_table(
        "login_failures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_login_failures_key_at", "login_failures", ["key", "at"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        for statement in _statements(_pgqueuer_ddl()):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE IF EXISTS pgqueuer, pgqueuer_log, pgqueuer_schedules, "
                   "pgqueuer_statistics CASCADE")
        op.execute("DROP FUNCTION IF EXISTS fn_pgqueuer_changed() CASCADE")
        op.execute("DROP TYPE IF EXISTS pgqueuer_status")
    op.drop_index("ix_login_failures_key_at", table_name="login_failures")
    op.drop_table("login_failures")
    op.drop_index("ix_workers_seen_at", table_name="workers")
    op.drop_table("workers")
    op.drop_index("ix_runs_lease_expires_at", table_name="runs",
                  postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)
    op.drop_index("ix_runs_active_user_id", table_name="runs",
                  postgresql_where=_ACTIVE, sqlite_where=_ACTIVE)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("cached_outputs")
        batch_op.drop_column("cancel_requested")
        batch_op.drop_column("lease_expires_at")
        batch_op.drop_column("worker_id")
        batch_op.drop_column("attempt")
