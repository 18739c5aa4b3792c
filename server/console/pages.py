"""The console's pages. Each handler reads the signed-in principal, calls the service
(which decides what they may see or do) and renders a template: nothing else."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.templating import Jinja2Templates

from policies.audit.browse import BrowseFilter
from policies.errors import (
    AccessDenied,
    ApprovalError,
    ApprovalNotFound,
    AuditUnavailable,
    ExecGateError,
    NotAnApprover,
    SelfApprovalRefused,
    UnknownPrincipal,
)
from policies.service.core import ExecService
from policies.service.results import VoteResult
from policies.service.review import RecordNotFound
from policies.types import ApprovalId, AuditId, Principal, SessionId
from server.console import export
from server.console.charts import Bucket, bar_chart, bucket_starts
from server.console.filters import BadFilter, parse_query
from server.console.security import CsrfRefused, check_csrf, csrf_token
from server.console.signin import LinkRedeemer, SignInRefused
from server.console.text import page_of, plain

logger = logging.getLogger(__name__)

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
TEMPLATES.env.filters["plain"] = plain
PAGE_SIZE = 50
_STATUS = {
    AccessDenied: 403,
    UnknownPrincipal: 403,
    CsrfRefused: 403,
    SignInRefused: 403,
    NotAnApprover: 403,
    SelfApprovalRefused: 403,
    RecordNotFound: 404,
    ApprovalNotFound: 404,
    BadFilter: 400,
    ApprovalError: 409,
    AuditUnavailable: 503,
}

Handler = Callable[[Request, Principal], Awaitable[Response]]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("me", request.session.get("principal"))
    context["csrf"] = csrf_token(request.session)
    response = TEMPLATES.TemplateResponse(request, name, context, status_code=status)
    response.headers["Vary"] = "HX-Request"
    return response


def from_htmx(request: Request) -> bool:
    """Whether htmx asked (for a part of a page to swap in), not a page load; htmx
    restoring history it no longer holds asks for the whole page."""
    headers = request.headers
    return headers.get("HX-Request") == "true" and "HX-History-Restore-Request" not in headers


def error_page(request: Request, exc: ExecGateError) -> Response:
    status = next((s for cls, s in _STATUS.items() if isinstance(exc, cls)), 500)
    if from_htmx(request):
        target = request.headers.get("HX-Target", "")
        return render(
            request, "_error.html", status, code=exc.code, message=exc.safe_message, target=target
        )
    return render(request, "error.html", status, code=exc.code, message=exc.safe_message)


def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Run ``handler`` for the session's principal; errors become safe pages."""

    async def endpoint(request: Request) -> Response:
        name = request.session.get("principal")
        if not isinstance(name, str):
            if from_htmx(request):  # the session ended: load the page, which asks to sign in
                return Response(status_code=204, headers={"HX-Refresh": "true"})
            return render(request, "signin.html", 401, oidc=request.app.state.oidc_label)
        try:
            return await handler(request, Principal.parse(name))
        except ExecGateError as exc:
            return error_page(request, exc)
        except Exception:
            logger.exception("console page failed")
            return render(request, "error.html", 500, code="internal", message="internal error")

    return endpoint


class Pages:
    """Handlers over one ExecService."""

    def __init__(self, service: ExecService, redeemer: LinkRedeemer) -> None:
        self._service = service
        self._review = service.review
        self._redeemer = redeemer

    # ------------------------------------------------------------------ sign-in

    async def signin(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        try:
            principal = await self._redeemer.redeem(token)
        except ExecGateError as exc:
            return error_page(request, exc)
        start_session(request, principal)
        return RedirectResponse("/console/", status_code=303)

    async def signout(self, request: Request) -> Response:
        try:
            await check_csrf(request)
        except CsrfRefused as exc:
            return error_page(request, exc)
        request.session.clear()
        return RedirectResponse("/console/", status_code=303)

    # ------------------------------------------------------------------ activity

    async def activity(self, request: Request, principal: Principal) -> Response:
        now = _utcnow()
        query = parse_query(dict(request.query_params), now)
        viewer, page = await self._review.activity_page(
            principal, query.filter, after=query.after, limit=PAGE_SIZE
        )
        until = query.filter.until or now
        since = query.filter.since or until - dt.timedelta(hours=24)
        bucket: Bucket = "day" if until - since > dt.timedelta(days=3) else "hour"
        starts = bucket_starts(since, until, bucket)
        window = BrowseFilter(**{**_fields(query.filter), "since": since, "until": until})
        chart = await self._review.activity_chart(principal, window, starts, until)
        next_link = None
        if page.next_cursor is not None:
            next_link = "?" + query.link(after=page.next_cursor.encode())
        return render(
            request,
            "_activity_results.html" if from_htmx(request) else "activity.html",
            viewer=viewer,
            records=page.records,
            values=query.values,
            next_link=next_link,
            first_link="?" + query.link(after=None) if query.after else None,
            export_query=query.link(after=None),
            chart=bar_chart(chart.counts, starts, bucket),
            top_denied=chart.top_denied,
            bucket=bucket,
        )

    async def export(self, request: Request, principal: Principal) -> Response:
        fmt = request.path_params["fmt"]
        if fmt not in export.MEDIA:
            raise RecordNotFound("export as csv or jsonl")
        query = parse_query(dict(request.query_params), _utcnow())
        # Access is decided here, before the first byte; batches are read as sent.
        batches = await self._review.export(principal, query.filter)
        return StreamingResponse(
            export.stream(batches, fmt),
            media_type=export.MEDIA[fmt],
            headers={"Content-Disposition": f'attachment; filename="execgate-audit.{fmt}"'},
        )

    # ------------------------------------------------------------------ one exec

    async def exec_page(self, request: Request, principal: Principal) -> Response:
        audit_id = AuditId(request.path_params["audit_id"])
        detail = await self._review.exec_detail(principal, audit_id)
        outcome = detail.record.outcome
        page = _int(request.query_params.get("page"), 1)
        stdout = page_of(outcome.stdout_text if outcome else "", page)
        stderr = page_of(outcome.stderr_text if outcome else "", page)
        duration = None
        if outcome and outcome.started_at and outcome.ended_at:
            duration = int((outcome.ended_at - outcome.started_at).total_seconds() * 1000)
        return render(
            request,
            "exec.html",
            d=detail,
            r=detail.record,
            o=outcome,
            stdout=stdout,
            stderr=stderr,
            pages=max(stdout.pages, stderr.pages),
            duration_ms=duration,
        )

    async def session_page(self, request: Request, principal: Principal) -> Response:
        session_id = SessionId(request.path_params["session_id"])
        transcript = await self._review.transcript(principal, session_id)
        return render(request, "session.html", t=transcript)

    # ------------------------------------------------------------------ approvals

    async def approvals(self, request: Request, principal: Principal) -> Response:
        viewer, pending = await self._review.approval_queue(principal)
        return render(request, "approvals.html", viewer=viewer, pending=pending)

    async def vote(self, request: Request, principal: Principal) -> Response:
        form = await check_csrf(request)
        approval_id = ApprovalId(request.path_params["approval_id"])
        decision = form.get("decision")
        if decision not in ("approve", "deny"):
            raise BadFilter("choose approve or deny", param="decision")
        record = await self._review.approval(principal, approval_id)
        result = await self._service.vote(approval_id, principal, approve=decision == "approve")
        pending = result.result is None and result.approval.state.value == "pending"
        if from_htmx(request):
            viewer, _ = await self._review.approval_queue(principal)
            return render(
                request,
                "_approval_row.html",
                a=result.approval,
                viewer=viewer,
                outcome=_vote_outcome(result),
                audit_id=None if pending else record.audit_id,
            )
        if pending:
            return RedirectResponse("/console/approvals", status_code=303)
        return RedirectResponse(f"/console/execs/{record.audit_id}", status_code=303)

    # ------------------------------------------------------------------ integrity

    async def integrity(self, request: Request, principal: Principal) -> Response:
        state = await self._review.integrity(principal)
        return render(request, "integrity.html", s=state)

    async def verify(self, request: Request, principal: Principal) -> Response:
        await check_csrf(request)
        await self._review.verify_now(principal)
        return RedirectResponse("/console/integrity", status_code=303)


def _vote_outcome(vote: VoteResult) -> str:
    """What a vote did, in a sentence for the row it was cast on."""
    approval = vote.approval
    if vote.result is not None:
        ran = vote.result
        code = "" if ran.exit_code is None else f", exit code {ran.exit_code}"
        return f"Approved and run: {ran.status.value}{code}."
    if approval.state.value == "pending":
        return f"Your vote is recorded: {len(approval.approvals)} of {approval.threshold}."
    return f"The request is {approval.state.value}."


def start_session(request: Request, principal: str) -> None:
    """A fresh session for ``principal`` (a new CSRF token: none carries over)."""
    request.session.clear()
    request.session["principal"] = principal
    csrf_token(request.session)


def _fields(flt: BrowseFilter) -> dict[str, Any]:
    return {name: getattr(flt, name) for name in flt.__slots__}


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        return default
