"""A form submission: checked answers to the contact's fields and a `form.submitted` event."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Connection

from carepath.domain.access import SYSTEM
from carepath.domain.fields import ContactSchema, FieldClass
from carepath.domain.forms import SUBMITTED, FormDef, check_answers, score_answers
from carepath.services.contact_records import save_contact
from carepath.services.events import NewEvent, store_events


@dataclass(frozen=True)
class Submission:
    contact_id: int | None  # None when the answers were not accepted
    score: int | None
    errors: Mapping[str, str]  # field name -> what to fix, for the person filling it in


def submit_form(
    conn: Connection,
    form: FormDef,
    submitted: Mapping[str, str],
    schema: ContactSchema,
    *,
    now: datetime,
    token: str,
) -> Submission:
    """Check, score, save the contact, store the event; nothing is written if any answer is wrong.

    `token` names this filling-in of the form (its CSRF token): sending the
    same page twice stores one event.
    """
    answers, errors = check_answers(form, submitted)
    if errors:
        return Submission(None, None, errors)
    score = score_answers(form, answers, now=now)
    record = {f.contact: answers[f.name] for f in form.fields if f.contact and f.name in answers}
    saved = save_contact(conn, record, schema, now=now, who=SYSTEM)  # the public, via a form
    digest = hashlib.sha256(f"{form.name}:{token}".encode()).hexdigest()[:32]
    # Answers that are identifiers live on the contact, sealed; the event keeps the rest.
    sealed = {f.name for f in form.fields if f.contact and _is_identifier(schema, f.contact)}
    kept = {name: value for name, value in answers.items() if name not in sealed}
    data = {"form": form.name, "answers": kept, "score": score}
    event = NewEvent(SUBMITTED, saved.id, now, f"form:{digest}", data, f"form:{form.name}")
    store_events(conn, [event], now=now)
    return Submission(saved.id, score, {})


def _is_identifier(schema: ContactSchema, field: str) -> bool:
    spec = schema.get(field)
    return spec is not None and spec.klass is FieldClass.IDENTIFIER
