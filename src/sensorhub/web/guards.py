"""Session guards for HTML pages: the management API's :class:`RequireSession`, but a browser that is
not logged in is sent to the login page, and refusals are rendered as pages instead of JSON bodies.

Forms carry the CSRF token in a ``csrf_token`` field; :func:`read_form` parses the body first and hands
the field to the guard through ``request.state.form_csrf`` (the guard compares it in constant time).
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from sensorhub.api.deps import get_db
from sensorhub.auth import sessions
from sensorhub.auth.dependencies import UNSAFE_METHODS, RequireSession, SessionContext
from sensorhub.errors import SensorhubError, Unauthorized


class LoginRequired(Exception):
    """No valid session: the browser is redirected to ``/login?next=<path>``."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(Exception):
    """A refusal (403, 404, …) shown as an HTML page."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


async def read_form(request: Request) -> FormData | None:
    """The parsed form of an unsafe request (``None`` for GET); exposes its CSRF field to the guard."""
    if request.method not in UNSAFE_METHODS:
        return None
    form = await request.form()
    token = form.get("csrf_token")
    request.state.form_csrf = token if isinstance(token, str) else None
    return form


def safe_next(value: str | None) -> str:
    """Only local paths: never ``//host`` or ``/\\host`` (open redirects)."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    return value


def login_url(next_path: str) -> str:
    return "/login" if next_path == "/" else "/login?next=" + quote(next_path, safe="/")


class RequireWebSession(RequireSession):
    """A logged-in person, for HTML pages. With ``optional``, visitors get ``None`` instead of a redirect
    (the front page shows them the login form)."""

    def __init__(
        self, *, org_admin: bool = False, org_member: bool = False, csrf: bool = True, optional: bool = False
    ) -> None:
        # The CSRF check is done here, so that a stale form gets a page that says what to do.
        super().__init__(org_admin=org_admin, org_member=org_member, csrf=False)
        self.form_csrf = csrf
        self.optional = optional

    def __call__(  # type: ignore[override]
        self,
        request: Request,
        db: Session = Depends(get_db),
        form: FormData | None = Depends(read_form),
    ) -> Iterator[SessionContext | None]:
        if self.optional and sessions.COOKIE_NAME not in request.cookies:
            yield None
            return
        inner = super().__call__(request, db)
        try:
            sc = next(inner)
        except Unauthorized:
            if self.optional:
                yield None
                return
            path = request.url.path
            if request.method == "GET" and request.url.query:
                path += "?" + request.url.query
            raise LoginRequired(path if request.method == "GET" else "/") from None
        except SensorhubError as e:
            raise PageError(e.status, e.error, e.message) from None
        if self.form_csrf and request.method in UNSAFE_METHODS:
            given = request.headers.get("x-csrf-token") or getattr(request.state, "form_csrf", None)
            if not sessions.csrf_matches(sc.web_session, given):
                raise PageError(
                    403,
                    "This form has expired",
                    "The form was missing its security token or it has expired. "
                    "Go back, reload the page and try again.",
                )
        if sc.user.is_api_user:  # API users have no password and never log in; belt and braces
            raise PageError(403, "Forbidden", "API users cannot use the web interface")
        yield sc
        inner.close()  # type: ignore[attr-defined]
