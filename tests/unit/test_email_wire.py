"""Message bytes and SMTP settings: standards-correct output, clear refusals."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from carepath.channels.email import HeaderInjectionError, OutgoingEmail, message_bytes
from carepath.channels.smtp import TlsPolicy, parse_smtp_url
from carepath.errors import ConfigurationError
from tests.support.mail import outgoing


def _mail(**changes: object) -> OutgoingEmail:
    return outgoing(**{"sender": "Care Team <no-reply@example.org>", **changes})


BODY = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=400
)


SUBJECT = st.text(
    alphabet=st.characters(
        min_codepoint=0x20,
        blacklist_categories=("Cs",),
        blacklist_characters="\x7f\x85\u2028\u2029",
    ),
    max_size=120,
)


@settings(max_examples=150, deadline=None)
@given(text=BODY, html=BODY, subject=SUBJECT)
def test_any_body_and_subject_survive_the_wire(text: str, html: str, subject: str) -> None:
    raw = message_bytes(_mail(text=text, html=html, subject=subject))
    assert raw.count(b"\n") == raw.count(b"\r\n")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == subject.strip()  # surrounding blanks carry no meaning
    plain = parsed.get_body(("plain",)).get_content()
    assert plain.replace("\r\n", "\n") == text


@pytest.mark.parametrize("subject", ["=?utf-8?q?hi?=", "Price =?= value", "Über =?x?q?a?="])
def test_subjects_that_look_encoded_stay_literal(subject: str) -> None:
    parsed = message_from_bytes(message_bytes(_mail(subject=subject)), policy=policy.default)
    assert parsed["Subject"] == subject


@pytest.mark.parametrize("field", ["subject", "recipient", "sender", "message_id"])
@pytest.mark.parametrize("brk", ["\r\n", "\n", "\r", "\x0b", "\x1e", "\x85", "\u2028", "\x00"])
def test_line_breaks_in_headers_are_refused(field: str, brk: str) -> None:
    with pytest.raises(HeaderInjectionError, match="contains a line break or control"):
        message_bytes(_mail(**{field: f"x@example.org{brk}Bcc: evil@example.org"}))


def test_a_recipient_without_an_address_is_refused() -> None:
    with pytest.raises(ValueError, match="To header has no valid address"):
        message_bytes(_mail(recipient="nobody"))


def test_smtp_url_defaults_to_required_tls_and_a_pool_of_eight() -> None:
    target = parse_smtp_url("smtp://mail.example.org")
    assert (target.port, target.tls, target.pool, target.implicit_tls) == (
        25,
        TlsPolicy.REQUIRED,
        8,
        False,
    )
    secure = parse_smtp_url("smtps://u%40x:p%3Aw@mail.example.org?pool=2&timeout=5")
    assert (secure.port, secure.username, secure.password, secure.pool, secure.timeout) == (
        465,
        "u@x",
        "p:w",
        2,
        5.0,
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://mail", "must look like smtp://"),
        ("smtp://mail?tls=maybe", "tls must be required, opportunistic or none"),
        ("smtps://mail?tls=none", "smtps:// always uses TLS"),
        ("smtp://mail?pool=0", "pool must be between 1 and 100"),
        ("smtp://mail?pool=x", "must be numbers"),
        ("smtp://mail?verify=no", "unknown parameter verify"),
    ],
)
def test_bad_smtp_urls_are_named(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_smtp_url(url)


def test_errors_never_echo_the_password() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_smtp_url("smtp://user:s3cret@mail?tls=bogus")
    assert "s3cret" not in str(caught.value)
