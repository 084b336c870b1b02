"""The storage error type and the one place that decides how a URL is shown.

Operators read these messages on a console or in a log line, so every message
is one line, names the database by its URL with the password masked, and says
why. No traceback is needed to act on "connection refused".
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

# A reason longer than this is driver noise; the first part says what went wrong.
REASON_CHARS_MAX = 300

_PASSWORD_IN_AUTHORITY = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_IN_QUERY = re.compile(r"((?:^|[?&])password=)[^&\s]*", re.IGNORECASE)


class StorageError(RuntimeError):
    """A database that cannot be used as configured: unreachable, refused or unsupported."""


def mask_url(url: str | URL) -> str:
    """Render ``url`` with any password replaced by ``***``.

    Works on strings SQLAlchemy cannot parse too, because the URL we most need to
    show is often the malformed one.
    """
    if isinstance(url, URL):
        return _mask_query(url.render_as_string(hide_password=True))
    try:
        parsed = make_url(url)
    except ArgumentError:
        return _mask_query(_PASSWORD_IN_AUTHORITY.sub(r"\1***@", url))
    return _mask_query(parsed.render_as_string(hide_password=True))


def _mask_query(rendered: str) -> str:
    # libpq also takes the password as a query parameter (?password=...).
    return _PASSWORD_IN_QUERY.sub(r"\1***", rendered)


def one_line_reason(exc: BaseException, secret: str | None = None) -> str:
    """The driver's message for ``exc`` as a single bounded line, with ``secret`` scrubbed."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    reason = "; ".join(lines) or type(cause).__name__
    if secret:
        reason = reason.replace(secret, "***")
    if len(reason) > REASON_CHARS_MAX:
        reason = reason[: REASON_CHARS_MAX - 3] + "..."
    return reason
