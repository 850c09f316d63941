"""Open and click tracking in HTML bodies: signed links that name a message and a link.

Every `http(s)` link of a message is replaced by `{public}/c/{token}`; the
token, signed per message and link index, names no address and cannot be
made for another message. A click is redirected only to the URL that was in
that message. A link may carry `data-track="download:bariatric-guide"`: the
tag travels with the click event, so journeys can act on "downloaded the
guide". An invisible image `{public}/o/{token}` reports opens.
"""

from __future__ import annotations

import html as html_lib
import re
from dataclasses import dataclass

from carepath.channels.links import LinkSigner

_ANCHOR = re.compile(r"<a\b[^>]*>", re.IGNORECASE)
_HREF = re.compile(r"""\bhref\s*=\s*(["'])(https?://[^"']+)\1""", re.IGNORECASE)
_TAG = re.compile(r"""\s*\bdata-track\s*=\s*(["'])([^"']*)\1""", re.IGNORECASE)
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


@dataclass(frozen=True)
class TrackedLink:
    url: str
    tag: str | None


def track(html: str, links: LinkSigner, message_id: str) -> tuple[str, list[TrackedLink]]:
    """The body with tracked links and an open pixel, and the original links in order."""
    found: list[TrackedLink] = []

    def rewrite(anchor: re.Match[str]) -> str:
        text = anchor.group(0)
        href = _HREF.search(text)
        if href is None:
            return text
        tag = _TAG.search(text)
        found.append(TrackedLink(html_lib.unescape(href.group(2)), tag.group(2) if tag else None))
        token = links.token("click", f"{message_id}#{len(found) - 1}")
        text = text[: href.start(2)] + f"{links.base_url}/c/{token}" + text[href.end(2) :]
        return _TAG.sub("", text)

    body = _ANCHOR.sub(rewrite, html)
    pixel = (
        f'<img src="{links.base_url}/o/{links.token("open", message_id)}" '
        'width="1" height="1" alt="" style="display:block;border:0">'
    )
    end = _BODY_END.search(body)
    body = body[: end.start()] + pixel + body[end.start() :] if end else body + pixel
    return body, found
