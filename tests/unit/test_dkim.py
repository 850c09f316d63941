"""DKIM signatures that receivers verify, covering the unsubscribe headers."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from carepath.channels.dkim_signing import DkimSigner
from carepath.channels.email import message_bytes
from carepath.channels.links import LinkSigner
from carepath.errors import ConfigurationError
from tests.support.mail import NoRecords, outgoing


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A private key file and the DNS TXT record that publishes its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _message() -> bytes:
    links = LinkSigner.from_settings("https://care.example.org", "s" * 40, None)
    assert links is not None
    mid = "<0123456789abcdef@carepath.invalid>"
    return message_bytes(
        outgoing(
            message_id=mid,
            subject="News",
            headers=tuple(links.unsubscribe_headers(mid)),
        )
    )


def test_a_signed_message_verifies_and_covers_the_unsubscribe_headers(
    key_pair: tuple[Path, bytes],
) -> None:
    path, record = key_pair
    signer = DkimSigner.from_settings("clinic.example.org", "mail2026", str(path))
    assert signer is not None
    signed = signer.sign(_message())
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        looked_up.append(name)
        return record

    assert dkim.verify(signed, dnsfunc=dns)
    assert looked_up == [b"mail2026._domainkey.clinic.example.org."]
    header = signed.split(b"\r\n\r\n", 1)[0].decode()
    signed_names = re.search(r"h=([^;]+);", header.replace("\r\n ", "")).group(1).split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= {
        n.strip() for n in signed_names
    }
    tampered = signed.replace(b"Subject: News", b"Subject: Newz")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_settings_are_all_or_nothing_and_checked(tmp_path: Path) -> None:
    assert DkimSigner.from_settings(None, None, None) is None
    with pytest.raises(ConfigurationError, match="set all three or none"):
        DkimSigner.from_settings("clinic.example.org", None, None)
    with pytest.raises(ConfigurationError, match="no such file"):
        DkimSigner.from_settings("clinic.example.org", "s", str(tmp_path / "missing.pem"))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ConfigurationError, match="not a PEM private key"):
        DkimSigner.from_settings("clinic.example.org", "s", str(junk))


def test_the_sender_signs_what_it_sends(key_pair: tuple[Path, bytes]) -> None:
    from carepath.channels.smtp import PooledSmtpSender  # noqa: PLC0415
    from carepath.channels.smtp_sink import SmtpSink  # noqa: PLC0415

    path, _ = key_pair
    signer = DkimSigner.from_settings("clinic.example.org", "mail2026", str(path))
    mail = outgoing(subject="News")
    with SmtpSink() as sink:
        sender = PooledSmtpSender(sink.url, dkim=signer)
        try:
            records = NoRecords()
            (result,) = sender.send([mail], records)
            assert records.recorded == [mail.outbox_id]
        finally:
            sender.close()
        (received,) = sink.messages
    assert result.outcome == "sent"
    assert "d=clinic.example.org" in str(received["DKIM-Signature"])
