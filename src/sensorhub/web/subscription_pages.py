"""The NGSI-LD subscriptions page of an organisation: the subscriptions its tokens made through
``/ngsi-ld/v1/subscriptions``, with their owner token, status, what they watch, where they notify and
their deliveries; pause, resume and delete. Owners and admins see all of them, any other member only
those of their own tokens (:mod:`sensorhub.push.subscription_admin`)."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from starlette.datastructures import FormData
from starlette.responses import Response

from sensorhub.accounts.models import Role
from sensorhub.auth.dependencies import SessionContext
from sensorhub.push import delivery as deliveries
from sensorhub.push import subscription_admin as admin
from sensorhub.push.subscriptions import TARGET_KIND
from sensorhub.web.guards import RequireWebSession
from sensorhub.web.views import done_redirect, form_handler, section_page

router = APIRouter(include_in_schema=False)
MEMBER_PAGE = RequireWebSession(org_member=True, csrf=False)
MEMBER_FORM = RequireWebSession(org_member=True)
PAGE_SIZE = 50

NOTICES = {
    "paused": "Subscription paused: nothing is notified until it is resumed.",
    "resumed": "Subscription resumed.",
    "deleted": "Subscription deleted.",
}


_page = partial(section_page, router, MEMBER_PAGE, "subscriptions", notices=NOTICES)


def _is_admin(sc: SessionContext) -> bool:
    return sc.role is not None and Role(sc.role).is_admin


@_page("Subscriptions", "org_subscriptions.html")
def subscriptions_page(request: Request, sc: SessionContext, **_: Any) -> dict[str, Any]:
    assert sc.org is not None
    items = admin.of_org(sc.db, sc.org, sc.user, is_admin=_is_admin(sc))
    return {"items": items, "is_admin": _is_admin(sc)}


@_page("Subscription", "org_subscription.html", path="/orgs/{org}/subscriptions/{pk}", page_args=("pk",))
def subscription_page(request: Request, sc: SessionContext, pk: str, **_: Any) -> dict[str, Any]:
    assert sc.org is not None
    item = admin.get(sc.db, sc.org, sc.user, pk, is_admin=_is_admin(sc))
    before = request.query_params.get("before")
    rows = deliveries.deliveries_of(
        sc.db,
        sc.org.id,
        TARGET_KIND,
        str(item.sub.pk),
        None,
        int(before) if before and before.isdigit() else None,
        PAGE_SIZE + 1,
    )
    page, more = deliveries.log_page(sc.db, rows, PAGE_SIZE)
    return {"item": item, "deliveries": page, "more": more, "before": before}


def _done(sc: SessionContext, path: str, done: str) -> Response:
    assert sc.org is not None
    return done_redirect(sc.org, f"subscriptions{path}", done)


_post = partial(form_handler, router, MEMBER_FORM, page_args=("pk",))


@_post("/orgs/{org}/subscriptions/{pk}/active", subscription_page)
def set_active(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    assert sc.org is not None
    pk, on = params["pk"], form is not None and form.get("active") == "1"
    admin.set_active(sc.db, sc.org, sc.user, pk, on, is_admin=_is_admin(sc))
    return _done(sc, f"/{pk}", "resumed" if on else "paused")


@_post("/orgs/{org}/subscriptions/{pk}/delete", subscription_page)
def delete(
    request: Request, sc: SessionContext, form: FormData | None, params: Mapping[str, str]
) -> Response:
    assert sc.org is not None
    admin.delete(sc.db, sc.org, sc.user, params["pk"], is_admin=_is_admin(sc))
    return _done(sc, "", "deleted")
