"""The funnel kept per day of run starts, and the triggers that say which days moved.

A trigger on `runs` notes the (workflow, version, day of start) of every run
inserted, or updated in its state, in `funnel_changes`: on PostgreSQL once per statement, from
its transition table; on SQLite once per row, unless that day is noted already.
Days that already have runs are noted here, so the first refresh counts them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

# The backfill's SQL is assembled from the constants below only, never from input.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PG_FUNCTIONS = {
    "insert": """
CREATE FUNCTION carepath_note_funnel_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO funnel_changes (workflow, workflow_version, day)
  SELECT DISTINCT workflow, workflow_version, (started_at AT TIME ZONE 'UTC')::date
  FROM new_runs;
  RETURN NULL;
END $$
""",
    # Only runs whose state changed: lease claims and releases change none of it.
    "update": """
CREATE FUNCTION carepath_note_funnel_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO funnel_changes (workflow, workflow_version, day)
  SELECT DISTINCT n.workflow, n.workflow_version, (n.started_at AT TIME ZONE 'UTC')::date
  FROM new_runs n JOIN old_runs o ON o.id = n.id
  WHERE (n.status, n.current_step, n.wake_at, n.waiting_for, n.ended_at, n.updated_at)
        IS DISTINCT FROM
        (o.status, o.current_step, o.wake_at, o.waiting_for, o.ended_at, o.updated_at);
  RETURN NULL;
END $$
""",
}
_PG_TRIGGER = """
CREATE TRIGGER runs_note_funnel_{name} AFTER {event} ON runs
REFERENCING {tables}
FOR EACH STATEMENT EXECUTE FUNCTION carepath_note_funnel_{name}()
"""
_SQLITE_TRIGGER = """
CREATE TRIGGER runs_note_funnel_{name} AFTER {event} ON runs
BEGIN
  INSERT INTO funnel_changes (workflow, workflow_version, day)
  SELECT NEW.workflow, NEW.workflow_version, date(NEW.started_at)
  WHERE NOT EXISTS (
    SELECT 1 FROM funnel_changes
    WHERE workflow = NEW.workflow AND workflow_version = NEW.workflow_version
      AND day = date(NEW.started_at)
  );
END
"""
# A run's state changes whenever its history does; leases (claims and releases, half
# of all the writes to runs) change none of it. On SQLite, a trigger per row that only
# writes of the state fire; on PostgreSQL, a trigger per statement (transition tables
# take no column list) that compares the rows before and after.
_STATE = "status, current_step, wake_at, waiting_for, ended_at, updated_at"
_EVENTS = ("insert", "update")


def upgrade() -> None:
    op.create_table(
        "funnel_rollup",
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("totals", carepath.db.types.Json, nullable=False),
        sa.Column("spent", carepath.db.types.Json, nullable=False),
        sa.PrimaryKeyConstraint(
            "workflow", "workflow_version", "day", "step", name=op.f("pk_funnel_rollup")
        ),
    )
    op.create_table(
        "funnel_changes",
        sa.Column("id", carepath.db.types.Id, autoincrement=True, nullable=False),
        sa.Column("workflow", sa.String(length=100), nullable=False),
        sa.Column("workflow_version", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_funnel_changes")),
    )
    op.create_index(
        "ix_funnel_changes_workflow_workflow_version_day",
        "funnel_changes",
        ["workflow", "workflow_version", "day"],
    )
    op.create_index(
        "ix_runs_workflow_workflow_version_started_at",
        "runs",
        ["workflow", "workflow_version", "started_at"],
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    day = "(started_at AT TIME ZONE 'UTC')::date" if postgres else "date(started_at)"
    op.execute(
        "INSERT INTO funnel_changes (workflow, workflow_version, day) "
        f"SELECT DISTINCT workflow, workflow_version, {day} FROM runs"
    )
    for name in _EVENTS:
        if postgres:
            tables = "NEW TABLE AS new_runs"
            if name == "update":
                tables = "OLD TABLE AS old_runs " + tables
            op.execute(_PG_FUNCTIONS[name])
            op.execute(_PG_TRIGGER.format(name=name, event=name.upper(), tables=tables))
        else:
            event = "INSERT" if name == "insert" else f"UPDATE OF {_STATE}"
            op.execute(_SQLITE_TRIGGER.format(name=name, event=event))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for event in _EVENTS:
        op.execute(f"DROP TRIGGER runs_note_funnel_{event}" + (" ON runs" if postgres else ""))
        if postgres:
            op.execute(f"DROP FUNCTION carepath_note_funnel_{event}()")
    op.drop_index("ix_runs_workflow_workflow_version_started_at", table_name="runs")
    op.drop_index("ix_funnel_changes_workflow_workflow_version_day", table_name="funnel_changes")
    op.drop_table("funnel_changes")
    op.drop_table("funnel_rollup")
