"""The web page's content review of message templates (/ui/templates): each template locale at
its current version with its review, the message rendered for a sample player (the template's
declared examples), and approve / reject for a reviewer (crm.campaigns.template_reviews: a person,
never the template's owner; recorded in the audit log).

Templates serve every brand, so, like a campaign for every brand, only a user of every brand and
region sees or reviews them (crm.access: ``template.review`` for compliance, ``template.draft`` to
read them for marketing)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from crm.service.web import _allowed, _csrf, _form, _page, _same, _signed_in

router = APIRouter(prefix="/ui", include_in_schema=False)


def _may(user, action: str) -> bool:
    return _allowed(user, action, [], [])  # every brand and region: a user of all of them


def _may_read(user) -> bool:
    return _may(user, "template.review") or _may(user, "template.draft")


@router.get("/templates")
def templates_page(request: Request) -> Response:
    from crm.campaigns.template_reviews import status
    from crm.channels.templates import TemplateError

    user, away = _signed_in(request)
    if away:
        return away
    if not _may_read(user):
        return _page("error.html", 404, message="No such page.")
    try:
        rows, problem = status(request.app.state.paths), ""
    except TemplateError as e:
        rows, problem = [], str(e)
    return _page("templates.html", user=user, csrf=_csrf(request, user.name), rows=rows, problem=problem)


def _template(template_id: str):
    from crm.channels.templates import TemplateError, TemplateStore

    try:
        return TemplateStore().get(template_id)
    except TemplateError:
        return None


@router.get("/templates/{template_id}/{locale}")
def template_page(request: Request, template_id: str, locale: str) -> Response:
    from crm.campaigns.template_reviews import status
    from crm.channels.templates import TemplateRenderError, TemplateStore

    user, away = _signed_in(request)
    if away:
        return away
    template = _template(template_id) if _may_read(user) else None
    if template is None or locale not in template.locales:
        return _page("error.html", 404, message="No such template.")
    [row] = [r for r in status(request.app.state.paths) if r.template_id == template.id and r.locale == locale]
    try:
        sample, problem = TemplateStore().preview(template.id, locale), ""
    except TemplateRenderError as e:
        sample, problem = None, str(e)
    return _page("template.html", user=user, csrf=_csrf(request, user.name), t=template, row=row, sample=sample,
                 problem=problem, params=template.params, may_review=_may(user, "template.review"),
                 own=bool(template.owner) and _same_person(user.person, template.owner))


def _same_person(a: str, b: str) -> bool:
    from crm.campaigns.approvals import same_person

    return same_person(a, b)


@router.post("/templates/{template_id}/{locale}/{decision}")
async def review_decision(request: Request, template_id: str, locale: str, decision: str) -> Response:
    """Approve or reject this locale's current version, as ``crm templates review`` does, under the
    user's person name (never the template's owner)."""
    from crm.campaigns.approvals import ApprovalError
    from crm.campaigns.template_reviews import review

    user, away = _signed_in(request)
    if away:
        return away
    form = await _form(request)
    if form is None or not _same(form.get("csrf", ""), _csrf(request, user.name)):
        return _page("error.html", 403, message="The form did not come from this page.")
    template = _template(template_id) if _may_read(user) else None
    if template is None or locale not in template.locales or decision not in ("approve", "reject"):
        return _page("error.html", 404, message="No such template.")
    if not _may(user, "template.review"):
        return _page("error.html", 403, message="Your role does not allow reviewing templates.")
    if form.get("version") != template.version(locale):
        return _page("error.html", 409, message="The text changed since you opened it: review the new version.")
    reason = " ".join(form.get("reason", "").split())
    if not reason or len(reason) > 500:
        return _page("error.html", 422, message="A reason of 1 to 500 characters is required.")
    try:
        review(request.app.state.paths, template, locale, "approved" if decision == "approve" else "rejected",
               user.person, reason)
    except ApprovalError as e:
        return _page("error.html", 409, message=str(e))
    return RedirectResponse(f"/ui/templates/{template.id}/{locale}", status_code=303)
