"""Reading bounce and complaint reports: RFC 3464 DSNs and RFC 5965 ARF feedback reports.

Both are `multipart/report` messages. A DSN's `message/delivery-status` part
has one block per recipient (`Action`, `Status`, `Final-Recipient`); an ARF
report's `message/feedback-report` part says what kind of feedback it is
(`Feedback-Type: abuse` is a spam complaint). Either may carry the original
message, or only its headers, from which the `Message-ID` names the outbox row.

Pure: bytes in, findings out. Addresses found here are PHI and are only used
to look rows up; they never go into errors or logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from enum import StrEnum


class Finding(StrEnum):
    HARD_BOUNCE = "hard_bounce"  # 5.x.x: the address does not take mail
    SOFT_BOUNCE = "soft_bounce"  # 4.x.x, or delayed: it may later
    COMPLAINT = "complaint"  # the recipient marked the message as spam


@dataclass(frozen=True)
class ReportFinding:
    kind: Finding
    recipient: str | None  # lower-cased address, when the report names it
    message_id: str | None  # of the original message, when the report carries it
    status: str | None = None  # the DSN status code, e.g. 5.1.1


class ReportError(ValueError):
    """The input is not a delivery status notification nor a feedback report."""


def read_report(raw: bytes) -> list[ReportFinding]:
    """What a DSN or ARF report says, one finding per failed recipient or complaint."""
    message = message_from_bytes(raw, policy=policy.compat32)
    if message.get_content_type() != "multipart/report":
        raise ReportError("not a multipart/report message")
    report_type = str(message.get_param("report-type") or "").lower()
    payload = message.get_payload()
    parts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
    if not parts:
        raise ReportError("the report has no parts")
    original = _original_message_id(parts)
    if report_type == "delivery-status":
        return _delivery_status(parts, original)
    if report_type == "feedback-report":
        return _feedback(parts, original)
    raise ReportError("report-type is neither delivery-status nor feedback-report")


def _delivery_status(parts: list[Message], original: str | None) -> list[ReportFinding]:
    status_part = next(
        (p for p in parts if p.get_content_type() == "message/delivery-status"), None
    )
    if status_part is None:
        raise ReportError("the delivery status notification has no message/delivery-status part")
    blocks = status_part.get_payload()
    if not isinstance(blocks, list):
        raise ReportError("the delivery-status part has no fields")
    findings = []
    for block in blocks[1:]:  # the first block describes the reporting MTA
        if not isinstance(block, Message):
            continue
        action = (block.get("Action") or "").strip().lower()
        status = (block.get("Status") or "").strip()
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: nothing to act on
        hard = action == "failed" and status.startswith("5")
        findings.append(
            ReportFinding(
                Finding.HARD_BOUNCE if hard else Finding.SOFT_BOUNCE,
                _address(block.get("Final-Recipient") or block.get("Original-Recipient")),
                original,
                status or None,
            )
        )
    return findings


def _feedback(parts: list[Message], original: str | None) -> list[ReportFinding]:
    feedback_part = next(
        (p for p in parts if p.get_content_type() == "message/feedback-report"), None
    )
    if feedback_part is None:
        raise ReportError("the feedback report has no message/feedback-report part")
    fields = feedback_part.get_payload()
    block = fields[0] if isinstance(fields, list) and fields else feedback_part
    if not isinstance(block, Message):
        raise ReportError("the feedback report has no fields")
    kind = (block.get("Feedback-Type") or "").strip().lower()
    if kind not in ("abuse", "fraud", "virus", "other", "not-spam", "auth-failure"):
        raise ReportError("the feedback report has no valid Feedback-Type")
    if kind != "abuse":
        return []  # only spam complaints suppress an address
    recipient = _address(block.get("Original-Rcpt-To"))
    return [ReportFinding(Finding.COMPLAINT, recipient, original)]


def _original_message_id(parts: list[Message]) -> str | None:
    """The Message-ID of the returned message (message/rfc822 or text/rfc822-headers)."""
    for part in parts[1:]:
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                found = inner[0].get("Message-ID")
                if found:
                    return str(found).strip()
        elif content_type == "text/rfc822-headers":
            text = part.get_payload(decode=True)
            if not isinstance(text, bytes):
                continue
            headers = message_from_bytes(text, policy=policy.compat32)
            found = headers.get("Message-ID")
            if found:
                return str(found).strip()
    return None


def _address(field: str | None) -> str | None:
    """`rfc822; ann@example.org` -> `ann@example.org`."""
    if not field:
        return None
    _, _, address = field.partition(";")
    address = (address or field).strip().strip("<>").lower()
    return address if "@" in address else None
