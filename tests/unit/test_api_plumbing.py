"""The API's request plumbing: how deep a JSON text nests; requests stored together."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carepath.entrypoints.api import problems
from carepath.entrypoints.api.coalescing import Coalescer
from carepath.entrypoints.api.problems import json_depth, json_problem

# Text full of what a careless scanner would take for structure.
tricky_text = st.text(alphabet='[]{}"\\abc \n\u00e9', max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky_text, inner, max_size=4),
    max_leaves=30,
)


def nesting(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(nesting, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(nesting, value.values()), default=0)
    return 0


@given(json_values, st.booleans())
def test_json_depth_counts_brackets_outside_strings_only(value: object, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth(text) == nesting(value)


def test_json_depth_of_deep_and_flat_texts() -> None:
    assert json_depth(b"[" * 5000 + b"]" * 5000) == 5000
    assert json_depth(b'{"a": "[[[[\\"{{"}') == 1
    assert json_depth(b"42") == 0


class Recorder:
    """A store that records the groups it was given; items named "bad" break a group."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []
        self.release = threading.Event()
        self.release.set()

    def __call__(self, group: Sequence[str]) -> list[str]:
        self.release.wait(5)
        self.groups.append(list(group))
        if "bad" in group:
            raise ValueError("a statement failed")
        return [item.upper() for item in group]


def test_a_lone_item_is_stored_at_once_and_answered() -> None:
    store = Recorder()

    async def scenario() -> str:
        return await Coalescer(store).submit("one")

    assert asyncio.run(scenario()) == "ONE"
    assert store.groups == [["one"]]


def test_items_arriving_while_groups_are_stored_go_together() -> None:
    store = Recorder()
    store.release.clear()  # the first groups stay in the database until everyone has arrived
    coalescer = Coalescer(store, concurrency=1)

    async def scenario() -> list[str]:
        first = asyncio.ensure_future(coalescer.submit("a"))
        await asyncio.sleep(0.05)  # "a" is being stored
        rest = [asyncio.ensure_future(coalescer.submit(x)) for x in "bcdef"]
        await asyncio.sleep(0.05)
        store.release.set()
        return [await first, *[await r for r in rest]]

    assert asyncio.run(scenario()) == ["A", "B", "C", "D", "E", "F"]
    assert store.groups == [["a"], ["b", "c", "d", "e", "f"]]


def test_groups_are_no_larger_than_the_limit() -> None:
    store = Recorder()
    store.release.clear()
    coalescer = Coalescer(store, max_group=2, concurrency=1)

    async def scenario() -> list[str]:
        waiting = [asyncio.ensure_future(coalescer.submit(x)) for x in "abcde"]
        await asyncio.sleep(0.05)
        store.release.set()
        return [await w for w in waiting]

    assert asyncio.run(scenario()) == ["A", "B", "C", "D", "E"]
    assert store.groups == [["a", "b"], ["c", "d"], ["e"]]


def test_an_item_that_breaks_its_group_fails_alone() -> None:
    store = Recorder()
    store.release.clear()
    coalescer = Coalescer(store, concurrency=1)

    async def scenario() -> list[object]:
        waiting = [asyncio.ensure_future(coalescer.submit(x)) for x in ("a", "bad", "c")]
        await asyncio.sleep(0.05)
        store.release.set()
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    good, failed, other = asyncio.run(scenario())
    assert (good, other) == ("A", "C")
    assert isinstance(failed, ValueError)
    assert store.groups == [["a", "bad", "c"], ["a"], ["bad", "c"], ["bad"], ["c"]]


def test_a_store_answering_the_wrong_number_of_items_fails_the_requests() -> None:
    coalescer: Coalescer[str, str] = Coalescer(lambda group: ["only one"])

    async def scenario() -> list[object]:
        waiting = [asyncio.ensure_future(coalescer.submit(x)) for x in "ab"]
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    outcomes = asyncio.run(scenario())
    assert [str(o) for o in outcomes] == ["a stored group must give one outcome per item"] * 2
    assert all(isinstance(o, RuntimeError) for o in outcomes)


def test_each_event_loop_has_its_own_groups() -> None:
    store = Recorder()
    coalescer = Coalescer(store)
    answers: dict[str, str] = {}

    def one_loop(name: str) -> None:
        async def scenario() -> None:
            answers[name] = "".join(await asyncio.gather(*(coalescer.submit(x) for x in name)))

        asyncio.run(scenario())

    threads = [threading.Thread(target=one_loop, args=(name,)) for name in ("abc", "xyz")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert answers == {"abc": "ABC", "xyz": "XYZ"}


def test_an_unterminated_string_costs_one_pass_not_one_per_quote() -> None:
    # Each quote of this text would start another scan to its end if strings had to close.
    hostile = b'"' + b'\\"' * 300_000
    assert json_depth(hostile) == 0
    assert json_problem(hostile) is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"data": {"x": NaN}}', "JSON may not hold NaN or Infinity"),
        (b'{"data": [-Infinity]}', "JSON may not hold NaN or Infinity"),
        (b'{"data": "\\ud800"}', "JSON text may not hold an unpaired surrogate escape"),
        (b'{"data": "NaN and Infinity, in text"}', None),
        (b'{"data": "\\ud83d\\ude00"}', None),  # a pair: one character
        (b'{"data": "\\\\ud800"}', None),  # an escaped backslash, then text
        (b"[" * 33 + b"]" * 33, "JSON may nest at most 32 levels deep"),
    ],
)
def test_json_problem_names_what_json_must_not_hold(body: bytes, problem: str | None) -> None:
    assert json_problem(body) == problem


class Stopping(BaseException):
    """Like KeyboardInterrupt or a cancellation: not an error a request caused."""


def test_requests_are_answered_even_when_storing_is_interrupted() -> None:
    def store(group: Sequence[str]) -> list[str]:
        raise Stopping

    coalescer: Coalescer[str, str] = Coalescer(store, concurrency=1)

    async def scenario() -> list[object]:
        waiting = [asyncio.ensure_future(coalescer.submit(x)) for x in "abc"]
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    outcomes = asyncio.run(scenario())  # the storing task re-raises it, after answering all
    assert len(outcomes) == 3
    assert all(isinstance(o, Stopping) for o in outcomes)


def test_an_error_no_item_caused_fails_the_group_without_retries() -> None:
    calls: list[list[str]] = []

    def store(group: Sequence[str]) -> list[str]:
        calls.append(list(group))
        raise ConnectionError("the database went away")

    coalescer: Coalescer[str, str] = Coalescer(
        store, concurrency=1, splittable=lambda error: not isinstance(error, ConnectionError)
    )

    async def scenario() -> list[object]:
        waiting = [asyncio.ensure_future(coalescer.submit(x)) for x in "abcd"]
        return list(await asyncio.gather(*waiting, return_exceptions=True))

    outcomes = asyncio.run(scenario())
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert calls == [["a", "b", "c", "d"]]


def test_only_the_contacts_import_streams_its_file_even_under_a_prefix() -> None:
    csv_type = [(b"content-type", b"text/csv; charset=utf-8")]
    scope = {"path": "/care/v1/contacts/import", "root_path": "/care", "headers": csv_type}
    assert problems._is_streamed(scope)
    assert problems._is_streamed({**scope, "path": "/v1/contacts/import", "root_path": ""})
    assert not problems._is_streamed({**scope, "path": "/care/v1/events"})
    assert not problems._is_streamed({**scope, "headers": [(b"content-type", b"application/json")]})
