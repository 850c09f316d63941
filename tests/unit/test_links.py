"""Signed link tokens and the List-Unsubscribe headers built from them."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from carepath.channels.email import message_bytes
from carepath.channels.links import InvalidTokenError, LinkSigner
from carepath.errors import ConfigurationError
from tests.support.mail import outgoing

SECRET = "k" * 40
MID = "<0123456789abcdef0123456789abcdef@carepath.invalid>"


def _signer(mailto: str | None = "unsubscribe@clinic.example.org") -> LinkSigner:
    signer = LinkSigner.from_settings("https://care.example.org/", SECRET, mailto)
    assert signer is not None
    return signer


def test_a_token_names_its_message_and_nothing_else() -> None:
    signer = _signer()
    token = signer.token("unsubscribe", MID)
    assert signer.read("unsubscribe", token) == MID
    assert "@" not in token.split(".")[1]
    with pytest.raises(InvalidTokenError):
        signer.read("click", token)  # another purpose
    head, tail = token.split(".")
    other = signer.token("unsubscribe", MID.replace("0123", "9999"))
    with pytest.raises(InvalidTokenError):
        signer.read("unsubscribe", f"{other.split('.')[0]}.{tail}")  # another message
    with pytest.raises(InvalidTokenError):
        signer.read("unsubscribe", f"{head}.{tail[:-2]}AA")  # tampered
    with pytest.raises(InvalidTokenError):
        signer.read("unsubscribe", "not a token")
    stranger = LinkSigner.from_settings("https://care.example.org", "x" * 40, None)
    assert stranger is not None
    with pytest.raises(InvalidTokenError):
        stranger.read("unsubscribe", token)  # another key


@pytest.mark.parametrize(
    ("url", "secret", "mailto", "message"),
    [
        ("https://care.example.org", None, None, "go together"),
        ("http://care.example.org", SECRET, None, "must be an https:// URL"),
        ("https://care.example.org", "short", None, "at least 32 characters"),
        ("https://care.example.org", SECRET, "not an address", "plain address"),
    ],
)
def test_link_settings_are_checked(
    url: str, secret: str | None, mailto: str | None, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        LinkSigner.from_settings(url, secret, mailto)


def test_no_links_without_settings() -> None:
    assert LinkSigner.from_settings(None, None, None) is None


def test_unsubscribe_headers_follow_rfc_2369_and_8058() -> None:
    signer = _signer()
    mail = outgoing(
        message_id=MID,
        subject="News",
        html="<p>Hi</p>",
        text="Hi",
        headers=tuple(signer.unsubscribe_headers(MID)),
    )
    raw = message_bytes(mail)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = message_from_bytes(raw, policy=policy.default)
    targets = [t.strip(" <>") for t in str(parsed["List-Unsubscribe"]).split(",")]
    token = signer.token("unsubscribe", MID)
    assert targets[0] == f"https://care.example.org/u/{token}"
    assert targets[1].startswith("mailto:unsubscribe@clinic.example.org?subject=unsubscribe%20")
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "ann@" not in str(parsed["List-Unsubscribe"])
