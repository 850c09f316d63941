"""History rows no longer check their run with a foreign key.

Only the engine writes `run_steps`, for runs that the same transaction holds
locked, and runs are never deleted (an erased contact's runs are ended and
kept), so the key guarded nothing that can happen. It cost a locking lookup
of the run for every history row: on PostgreSQL, about 40 % of the time the
engine spends inserting history.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_KEY = "fk_run_steps_run_id_runs"


def upgrade() -> None:
    # On SQLite the table is rebuilt (batch mode); it has no triggers to lose.
    with op.batch_alter_table("run_steps") as batch:
        batch.drop_constraint(_KEY, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("run_steps") as batch:
        batch.create_foreign_key(_KEY, "runs", ["run_id"], ["id"], ondelete="CASCADE")
