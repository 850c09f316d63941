"""An index of the open history rows (a run's current wait), by run.

Resuming a waiting run closes its open history row. Through the index of all
of a run's history rows, the lookup read every row of the run, and PostgreSQL
sometimes chose to scan the whole table instead (its statistics lag behind a
burst of new history); the index of open rows holds one row per waiting run.

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = sa.text("left_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_run_steps_open",
        "run_steps",
        ["run_id"],
        postgresql_where=_OPEN,
        sqlite_where=_OPEN,
    )


def downgrade() -> None:
    op.drop_index("ix_run_steps_open", table_name="run_steps")
