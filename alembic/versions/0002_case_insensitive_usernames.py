"""case-insensitive unique usernames

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("uq_users_lower_username", "users", [sa.text("lower(username)")],
                    unique=True)
    op.create_index("uq_backoffice_users_lower_username", "backoffice_users",
                    [sa.text("lower(username)")], unique=True)


def downgrade() -> None:
    op.drop_index("uq_backoffice_users_lower_username", table_name="backoffice_users")
    op.drop_index("uq_users_lower_username", table_name="users")
