"""The gateway's ``/docs`` page: Swagger UI over ``/openapi.json``, served by the gateway itself.

The Swagger UI files come from the installed ``swagger-ui-bundle-v2`` package, never from a
CDN, so the page works on a network without internet. The page loads nothing from anywhere
else, and says so in a content security policy: scripts and styles only from the gateway (the
start-up script is a file too, not inline), images also as ``data:`` URIs (Swagger UI's icons),
requests only to the gateway ("Try it out"), and no framing.

Links are relative (``docs/...``, ``openapi.json``), so the page also works behind a proxy
that serves the gateway under a path prefix.
"""

from __future__ import annotations

import functools
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from swagger_ui_bundle import swagger_ui_path

from .problems import problem

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
ASSET_HEADERS = {**HEADERS, "Cache-Control": "public, max-age=3600"}
# The bundled files the page uses, by the name they are served under (/docs/<name>).
ASSETS = {"swagger-ui.css": "text/css", "swagger-ui-bundle.js": "text/javascript"}
START = b"""window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({url: "openapi.json", dom_id: "#ui", deepLinking: true});
});
"""
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/start.js"></script>
</body></html>
"""


@functools.cache
def _asset(name: str) -> bytes:
    """A bundled file, read once: they only change with the installed package."""
    return (Path(str(swagger_ui_path)) / name).read_bytes()


def docs_routes(title: str = "cqrs-runtime gateway") -> list[Route]:
    """The routes of the page and of the files it loads."""
    page = PAGE.format(title=title)

    async def docs(request: Request) -> Response:
        return HTMLResponse(page, headers=HEADERS)

    async def start(request: Request) -> Response:
        return Response(START, media_type="text/javascript", headers=ASSET_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = ASSETS.get(name)
        if media_type is None:
            return problem("not_a_route", f"GET {request.url.path} is not served here"[:300])
        return Response(_asset(name), media_type=media_type, headers=ASSET_HEADERS)

    return [
        Route("/docs", docs, methods=["GET"]),
        Route("/docs/start.js", start, methods=["GET"]),
        Route("/docs/{name}", asset, methods=["GET"]),
    ]
