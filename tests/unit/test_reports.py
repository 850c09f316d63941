"""Reading DSN and ARF reports."""

from __future__ import annotations

import pytest

from carepath.channels.reports import Finding, ReportError, ReportFinding, read_report
from tests.support.reports import arf, dsn

MID = "<1.abc@carepath.invalid>"


def test_a_failed_5xx_dsn_is_a_hard_bounce_naming_the_original() -> None:
    assert read_report(dsn(MID, "Ann@Example.org")) == [
        ReportFinding(Finding.HARD_BOUNCE, "ann@example.org", MID, "5.1.1")
    ]


@pytest.mark.parametrize(("action", "status"), [("failed", "4.2.2"), ("delayed", "4.4.1")])
def test_temporary_failures_are_soft_bounces(action: str, status: str) -> None:
    (finding,) = read_report(dsn(MID, "ann@example.org", action=action, status=status))
    assert (finding.kind, finding.status) == (Finding.SOFT_BOUNCE, status)


def test_a_delivered_notice_asks_for_nothing() -> None:
    assert read_report(dsn(MID, "ann@example.org", action="delivered", status="2.0.0")) == []


def test_an_abuse_report_is_a_complaint_and_other_feedback_is_not() -> None:
    assert read_report(arf(MID, "ann@example.org")) == [
        ReportFinding(Finding.COMPLAINT, "ann@example.org", MID)
    ]
    assert read_report(arf(MID, "ann@example.org", feedback_type="not-spam")) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"Subject: hi\r\n\r\nhello", "not a multipart/report"),
        (
            b'Content-Type: multipart/report; report-type=disposition-notification; boundary="x"'
            b"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            "neither delivery-status nor feedback-report",
        ),
        (
            b'Content-Type: multipart/report; report-type=delivery-status; boundary="x"'
            b"\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x--\r\n",
            "no message/delivery-status part",
        ),
    ],
)
def test_what_is_not_a_report_is_named(raw: bytes, message: str) -> None:
    with pytest.raises(ReportError, match=message):
        read_report(raw)
