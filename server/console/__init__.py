"""The audit review console at /console: sign-in, activity, one exec, sessions, the
approval queue, integrity and exports. Server-rendered (Jinja2, htmx shipped here)."""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from policies.service.core import ExecService
from server.console.pages import Pages, signed_in
from server.console.security import SecurityHeaders
from server.console.signin import LinkRedeemer, console_key
from server.mounts import Mounted
from server.settings import Settings

SESSION_COOKIE = "execgate_console"
STATIC = Path(__file__).parent / "static"


def build_console_app(settings: Settings, service: ExecService) -> Starlette:
    """The console as an ASGI app to mount at /console."""
    key = console_key(settings.data_dir)
    pages = Pages(service, LinkRedeemer(key, settings.console.link_ttl_seconds, service.review))
    routes = [
        Route("/", signed_in(pages.activity)),
        Route("/export.{fmt:str}", signed_in(pages.export)),
        Route("/execs/{audit_id:str}", signed_in(pages.exec_page)),
        Route("/sessions/{session_id:str}", signed_in(pages.session_page)),
        Route("/approvals", signed_in(pages.approvals)),
        Route("/approvals/{approval_id:str}/vote", signed_in(pages.vote), methods=["POST"]),
        Route("/integrity", signed_in(pages.integrity)),
        Route("/integrity/verify", signed_in(pages.verify), methods=["POST"]),
        Route("/signin", pages.signin),
        Route("/signout", pages.signout, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    oidc_label = None
    if settings.console.oidc.issuer:
        from server.console.oidc import oidc_routes

        routes.extend(oidc_routes(settings, service.review))
        oidc_label = settings.console.oidc.label
    secure = settings.server.public_url.startswith("https://")
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=key.decode(),
            session_cookie=SESSION_COOKIE,
            max_age=int(settings.console.session_hours * 3600),
            path="/console",
            same_site="lax",
            https_only=secure,
        ),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.oidc_label = oidc_label
    return app


def console_mount(settings: Settings, service: ExecService) -> Mounted | None:
    """/console, unless turned off in the settings."""
    if not settings.console.enabled:
        return None
    return Mounted(routes=[Mount("/console", app=build_console_app(settings, service))])
