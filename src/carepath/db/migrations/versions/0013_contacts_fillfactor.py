"""PostgreSQL: contacts pages keep a fifth of their room for updated rows.

Journeys update contacts all the time (update steps, tags) and never the
indexed columns. With room left on its page, the new version of a row goes on
the same page and no index is touched (a HOT update); on full pages every
update wrote a new entry into each of the table's four indexes. Pages already
written keep their room as it is until the table is rewritten (VACUUM FULL).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE contacts SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE contacts RESET (fillfactor)")
