"""Bounce and complaint reports as mail servers write them (RFC 3464, RFC 5965)."""

from __future__ import annotations


def dsn(message_id: str, recipient: str, *, action: str = "failed", status: str = "5.1.1") -> bytes:
    """A Postfix-style delivery status notification returning the original headers."""
    return f"""\
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: no-reply@carepath.invalid
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B1"

--B1
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.org.

--B1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Mon,  5 Jan 2026 08:00:01 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; inbound.example.net
Diagnostic-Code: smtp; 550 5.1.1 user unknown

--B1
Content-Type: text/rfc822-headers

Message-ID: {message_id}
From: carepath <no-reply@carepath.invalid>
To: {recipient}
Subject: A note from your care team

--B1--
""".replace("\n", "\r\n").encode()


def arf(message_id: str, recipient: str, *, feedback_type: str = "abuse") -> bytes:
    """A mailbox provider's spam complaint with the original message attached."""
    return f"""\
From: feedback@mailbox.example.com
To: abuse@carepath.invalid
Subject: Spam report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="B2"

--B2
Content-Type: text/plain; charset=us-ascii

This is an email abuse report for an email message received from IP 192.0.2.1.

--B2
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: SomeGenerator/1.0
Version: 1
Original-Rcpt-To: <{recipient}>
Arrival-Date: Mon, 5 Jan 2026 08:00:03 +0000

--B2
Content-Type: message/rfc822

Message-ID: {message_id}
From: carepath <no-reply@carepath.invalid>
To: {recipient}
Subject: A note from your care team

Hello.

--B2--
""".replace("\n", "\r\n").encode()
