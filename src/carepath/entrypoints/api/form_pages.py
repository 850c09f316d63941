"""Forms people fill in: `GET /f/{form}` serves the page, `POST /f/{form}` takes the answers.

Pages are plain, accessible HTML: every input has a label, required fields
say so, errors are listed at the top (role="alert") and next to their field
(aria-invalid, aria-describedby), and yes/no and choice questions are
fieldsets with a legend. Answers are PHI: they are never logged, never put
in a URL, and a page shows them only back to the person who sent them.

CSRF: each page carries a signed token (HMAC with CAREPATH_SECRET_KEY, the
form's name and the time) in a hidden field and in a SameSite=Strict cookie;
a POST needs both, equal, valid and less than two hours old.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from html import escape
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from carepath.db.connection import read_only
from carepath.domain.forms import AnswerType, FormDef, FormField
from carepath.entrypoints.api.pages import html_page
from carepath.entrypoints.tracking_app import opted_out, set_visitor_cookie
from carepath.errors import InvalidInput
from carepath.services.forms import submit_form
from carepath.services.page_views import new_visitor

router = APIRouter(include_in_schema=False)
MAX_FORM_BYTES = 64 * 1024
TOKEN_MAX_AGE = 2 * 3600
_HEADERS = {
    "Cache-Control": "no-store, private",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; form-action 'self'; frame-ancestors 'none'",
}


def _cookie(form: str) -> str:
    return f"carepath_form_{form}"


def issue_token(secret: bytes, form: str, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    nonce = secrets.token_urlsafe(12)
    return f"{issued}.{nonce}.{_mac(secret, form, issued, nonce)}"


def token_is_valid(secret: bytes, form: str, token: str, *, now: float | None = None) -> bool:
    issued, _, rest = token.partition(".")
    nonce, _, mac = rest.partition(".")
    if not issued.isdigit() or not nonce or not mac:
        return False
    age = (now if now is not None else time.time()) - int(issued)
    if not 0 <= age <= TOKEN_MAX_AGE:
        return False
    return hmac.compare_digest(mac, _mac(secret, form, int(issued), nonce))


def _mac(secret: bytes, form: str, issued: int, nonce: str) -> str:
    message = f"form:{form}:{issued}:{nonce}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


@router.get("/f/{name}")
def form_page(request: Request, name: str) -> HTMLResponse:
    state = request.app.state.api
    form = _form(request, name)
    if form is None:
        return _page("Not found", "<p>There is no such form.</p>", status=404)
    if state.secret is None:
        return _page("Unavailable", "<p>This form cannot be used right now.</p>", status=503)
    token = issue_token(state.secret, name)
    response = _page(form.title, _form_html(form, token, {}, {}))
    _set_cookie(response, name, token)
    return response


@router.post("/f/{name}")
async def form_post(request: Request, name: str) -> HTMLResponse:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return _page("Too long", "<p>The answers are too long.</p>", status=413)
    return await run_in_threadpool(_take_answers, request, name, body)


def _take_answers(request: Request, name: str, body: bytes) -> HTMLResponse:
    state = request.app.state.api
    form = _form(request, name)
    if form is None:
        return _page("Not found", "<p>There is no such form.</p>", status=404)
    try:
        submitted = dict(parse_qsl(body.decode("utf-8", "replace"), max_num_fields=200))
    except ValueError:  # more fields than any form has
        return _page("Too long", "<p>The answers are too long.</p>", status=413)
    if any("\x00" in k or "\x00" in v for k, v in submitted.items()):  # %00 in the body
        return _page("Not accepted", "<p>The answers hold characters not allowed.</p>", status=400)
    token = submitted.pop("csrf_token", "")
    cookie = request.cookies.get(_cookie(name), "")
    if (
        state.secret is None
        or not token
        or not hmac.compare_digest(token, cookie)
        or not token_is_valid(state.secret, name, token)
    ):
        again = "<p>This page has expired. Please open the form again.</p>"
        return _page("Please try again", again, status=403)
    visitor = None
    try:
        with state.engine.begin() as conn:
            schema = state.cache.current(conn).catalog.schema
            now = state.clock.now(conn)
            result = submit_form(conn, form, submitted, schema, now=now, token=token)
            # Known from now on to the site's page-view tracking (see services/page_views).
            if result.contact_id is not None and state.links and not opted_out(request):
                visitor = new_visitor(conn, state.links, result.contact_id, now=now)
    except InvalidInput:
        result = None
    if result is None or result.errors:
        errors = dict(result.errors) if result else {"": "These answers could not be saved."}
        response = _page(form.title, _form_html(form, token, submitted, errors), status=422)
        _set_cookie(response, name, token)
        return response
    thanks = _page(form.title, f"<p>{escape(form.thank_you)}</p>")
    if visitor is not None:
        set_visitor_cookie(thanks, visitor)
    return thanks


def _form(request: Request, name: str) -> FormDef | None:
    state = request.app.state.api
    with read_only(state.engine) as conn:
        found: FormDef | None = state.cache.current(conn).catalog.forms.get(name)
    return found


def _set_cookie(response: HTMLResponse, form: str, token: str) -> None:
    response.set_cookie(
        _cookie(form),
        token,
        max_age=TOKEN_MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=False,  # the deployment's TLS terminator decides; the token is not a secret
        path=f"/f/{form}",
    )


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return html_page(title, body, status=status, headers=_HEADERS)


def _form_html(
    form: FormDef, token: str, values: Mapping[str, str], errors: Mapping[str, str]
) -> str:
    parts = []
    if form.intro:
        parts.append(f"<p>{escape(form.intro)}</p>")
    if errors:
        items = "".join(
            f'<li><a href="#{escape(n)}">{escape(_label(form, n))}: {escape(m)}</a></li>'
            if n
            else f"<li>{escape(m)}</li>"
            for n, m in errors.items()
        )
        parts.append(f'<div role="alert"><p>Please check these answers:</p><ul>{items}</ul></div>')
    parts.append(f'<form method="post" action="/f/{escape(form.name)}" novalidate>')
    parts.append(f'<input type="hidden" name="csrf_token" value="{escape(token)}">')
    parts.extend(_field_html(f, values.get(f.name, ""), errors.get(f.name)) for f in form.fields)
    parts.append('<button type="submit">Send</button></form>')
    return "".join(parts)


def _label(form: FormDef, name: str) -> str:
    return next((f.label for f in form.fields if f.name == name), name)


def _field_html(field: FormField, value: str, error: str | None) -> str:
    name = escape(field.name)
    required = ' required aria-required="true"' if field.required else ""
    mark = " (required)" if field.required else ""
    described = f' aria-invalid="true" aria-describedby="{name}-error"' if error else ""
    error_html = f'<p id="{name}-error">{escape(error)}</p>' if error else ""
    if field.type in (AnswerType.YES_NO, AnswerType.CHOICE):
        options = ("yes", "no") if field.type is AnswerType.YES_NO else field.options
        radios = "".join(
            f'<label><input type="radio" name="{name}" value="{escape(o)}"'
            f"{' checked' if value == o else ''}{required}> {escape(o)}</label>"
            for o in options
        )
        return (
            f'<fieldset id="{name}"{described}><legend>{escape(field.label)}{mark}</legend>'
            f"{error_html}{radios}</fieldset>"
        )
    kind = {AnswerType.EMAIL: "email", AnswerType.NUMBER: "number", AnswerType.DATE: "date"}
    bounds = "".join(
        f' {attr}="{bound:g}"'
        for attr, bound in (("min", field.minimum), ("max", field.maximum))
        if bound is not None
    )
    step = ' step="any"' if field.type is AnswerType.NUMBER else ""
    return (
        f'<p><label for="{name}">{escape(field.label)}{mark}</label>{error_html}'
        f'<input id="{name}" name="{name}" type="{kind.get(field.type, "text")}"'
        f' value="{escape(value, quote=True)}"{bounds}{step}{required}{described}></p>'
    )
