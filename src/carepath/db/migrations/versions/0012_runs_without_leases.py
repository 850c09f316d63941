"""Runs carry no lease: a batch is taken and advanced in one transaction.

A worker locks the due runs it takes for the transaction that advances them
(services/runner.py), so nothing about a claim is written to a run any more.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import carepath.db.types

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE … DROP COLUMN on both (SQLite ≥ 3.35): rebuilding the table
    # in batch mode would lose the funnel triggers on it.
    op.drop_column("runs", "lease_until")
    op.drop_column("runs", "lease_owner")


def downgrade() -> None:
    op.add_column("runs", sa.Column("lease_owner", sa.String(length=64), nullable=True))
    op.add_column("runs", sa.Column("lease_until", carepath.db.types.UtcDateTime, nullable=True))
