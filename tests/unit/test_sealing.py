"""Sealed values and blind indexes: what they hide, what they refuse, how keys rotate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import carepath.protection.keyring as keyring_module
from carepath.errors import ConfigurationError
from carepath.protection.keyring import (
    generate_keyring,
    keyring_text,
    parse_keyring,
    read_keyring_file,
    with_new_key,
    without_key,
    write_keyring_file,
)
from carepath.protection.sealing import (
    SealError,
    blind_index,
    seal,
    sealed_key_id,
    unseal,
    without_sealed_values,
)

KEYRING = generate_keyring()


def test_a_sealed_value_hides_the_value_names_its_key_and_opens_again() -> None:
    token = seal("Ann Example", "contacts.first_name", KEYRING)
    assert "Ann" not in token
    assert sealed_key_id(token) == "k1"
    assert unseal(token, "contacts.first_name", KEYRING) == "Ann Example"
    assert seal("Ann Example", "contacts.first_name", KEYRING) != token  # a fresh nonce


def test_a_value_moved_to_another_column_or_changed_does_not_open() -> None:
    token = seal("ann@example.org", "contacts.email", KEYRING)
    with pytest.raises(SealError, match="does not open"):
        unseal(token, "contacts.phone", KEYRING)
    changed = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(SealError):
        unseal(changed, "contacts.email", KEYRING)
    with pytest.raises(SealError, match="not sealed"):
        unseal("ann@example.org", "contacts.email", KEYRING)


def test_blind_indexes_match_equal_values_only_and_depend_on_the_key_and_column() -> None:
    index = blind_index("ann@example.org", "contacts.email", KEYRING)
    assert index == blind_index("ann@example.org", "contacts.email", KEYRING)
    assert index != blind_index("bob@example.org", "contacts.email", KEYRING)
    assert index != blind_index("ann@example.org", "contacts.external_id", KEYRING)
    assert index != blind_index("ann@example.org", "contacts.email", generate_keyring())


def test_after_a_new_key_old_values_still_open_and_new_ones_use_it() -> None:
    old = seal("x", "t.c", KEYRING)
    rotated = with_new_key(KEYRING)
    assert rotated.current == "k2"
    assert unseal(old, "t.c", rotated) == "x"
    assert sealed_key_id(seal("x", "t.c", rotated)) == "k2"
    assert rotated.index_key == KEYRING.index_key  # indexes stay valid
    pruned = without_key(rotated, "k1")
    with pytest.raises(ConfigurationError, match="'k1' is not in the keyring"):
        unseal(old, "t.c", pruned)
    with pytest.raises(ConfigurationError, match="current key"):
        without_key(rotated, "k2")


def test_a_keyring_file_round_trips_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "carepath.keyring"
    write_keyring_file(path, KEYRING)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_keyring_file(path) == KEYRING


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b.update(current="k9"), "current must name one of the keys"),
        (lambda b: b["keys"].update(k1="c2hvcnQ="), "keys.k1 must be 32 random bytes"),
        (lambda b: b["keys"].update({"K 1": b["keys"]["k1"]}), "key id 'K 1'"),
        (lambda b: b.pop("index_key"), "index_key must be 32 random bytes"),
    ],
)
def test_a_bad_keyring_is_refused_naming_the_entry_never_a_key(change, message) -> None:  # type: ignore[no-untyped-def]
    body = json.loads(keyring_text(KEYRING))
    change(body)
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_keyring(json.dumps(body), "keyring.json")
    for key in body["keys"].values():
        assert str(key) not in str(caught.value)


def test_sealed_values_are_cut_out_of_text_leaving_what_is_in_clear() -> None:
    token = seal("Ann", "contacts.first_name", KEYRING)
    text = f'{{"first_name": "{token}", "plan": "gold"}}'
    assert without_sealed_values(text) == '{"first_name": "", "plan": "gold"}'


def test_a_keyring_file_is_looked_at_again_after_a_second_or_when_this_process_writes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "carepath.keyring"
    first = generate_keyring()
    write_keyring_file(path, first)
    monkeypatch.delenv(keyring_module.KEYRING_ENV, raising=False)
    monkeypatch.setenv(keyring_module.KEYRING_FILE_ENV, str(path))
    clock = [1000.0]
    monkeypatch.setattr(keyring_module.time, "monotonic", lambda: clock[0])
    assert keyring_module.active_keyring() == first
    # Another process writes a new keyring: seen once the memo is a second old.
    second = with_new_key(first)
    path.write_text(keyring_text(second))
    assert keyring_module.active_keyring() == first
    clock[0] += keyring_module.FILE_RECHECK_SECONDS
    assert keyring_module.active_keyring() == second
    # Written by this process: seen at once.
    third = with_new_key(second)
    write_keyring_file(path, third)
    assert keyring_module.active_keyring() == third
