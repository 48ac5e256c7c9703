"""One error shape: JSON `{"error", "message"}` for the API, a small HTML page for browsers."""

from __future__ import annotations

import logging
from http import HTTPStatus

from flask import Flask, Response, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, default_exceptions

log = logging.getLogger(__name__)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, *, dashboard_link: bool = False
) -> Response:
    """The service's error shape for `status`: JSON for API clients, HTML for pages.

    With `dashboard_link`, a browser that asked for a page even of the API (a navigation to a
    download) gets the page, which links to the dashboard.
    """
    phrase = HTTPStatus(status).phrase
    api = request.path.startswith("/api/") or request.path in ("/readyz", "/healthz")
    if (api and not dashboard_link) or not _wants_html():
        response = jsonify(error=phrase, message=message)
    else:
        # The page explains itself in words for people; the JSON `message` is for scripts (a 401's
        # says how to send the token, which means nothing to someone at a login prompt).
        response = Response(
            render_template("error.html", status=status, error=phrase, message=message), mimetype="text/html"
        )
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _wants_html() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def api_abort(status: int, message: str, *, dashboard_link: bool = False, **headers: str) -> None:
    """Stop the request with `status`, `message` and extra response headers (e.g. Retry_After)."""
    exc = default_exceptions[status](description=message)
    exc.extra_headers = {name.replace("_", "-"): value for name, value in headers.items()}
    exc.dashboard_link = dashboard_link
    raise exc


def register_error_handlers(app: Flask) -> None:
    """Route every error, expected or not, through `error_response`; no stack trace reaches a client."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        headers = dict(getattr(exc, "extra_headers", {}))
        allow = exc.get_headers() and dict(exc.get_headers()).get("Allow")
        if allow:
            headers["Allow"] = allow
        return error_response(
            exc.code or 500,
            exc.description or HTTPStatus(exc.code).phrase,
            headers,
            dashboard_link=getattr(exc, "dashboard_link", False),
        )

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "The service hit an unexpected error; it has been logged.")
