"""The SQL spelling of tag edits agrees with the engine's, on both databases."""

from __future__ import annotations

import json

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import JSONB

from carepath.db.dialect import json_list_edited
from carepath.domain.engine import tags_after

TAGS = st.lists(st.sampled_from(["a", "b", "c", "it's", "d-e", "ü"]), max_size=5)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(current=TAGS, add=TAGS, remove=TAGS)
def test_sql_tag_edit_matches_the_engine(
    engine: sa.Engine, current: list[str], add: list[str], remove: list[str]
) -> None:
    add = list(dict.fromkeys(add))  # steps name a tag once
    with engine.connect() as conn:
        stored: sa.ColumnElement[object] = sa.literal(json.dumps(current))
        if conn.dialect.name == "postgresql":
            stored = sa.cast(stored, JSONB)
        edited = json_list_edited(conn, stored, add=add, remove=remove)
        raw = conn.execute(sa.select(edited)).scalar_one()
    result = json.loads(raw) if isinstance(raw, str) else raw
    assert result == tags_after(current, tuple(add), tuple(remove))
