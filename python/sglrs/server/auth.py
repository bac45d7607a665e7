"""`--api-key`: a bearer token required on every endpoint except health checks and metrics."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from sglrs.server.errors import error_response

# Probes and scrapers usually carry no credentials (SGLang exempts the same paths).
EXEMPT_PATHS = frozenset({"/health", "/health_generate", "/metrics"})


def is_authorized(authorization: bytes | None, api_key: str) -> bool:
    if authorization is None:
        return False
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Constant-time comparison: the key must not leak through response timing.
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


class APIKeyMiddleware:
    """Answers 401 (in the path's error shape) unless `Authorization: Bearer <key>` matches."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization")
        if is_authorized(authorization, self.api_key):
            await self.app(scope, receive, send)
            return
        response = error_response(
            scope["path"],
            "invalid or missing API key: send 'Authorization: Bearer <key>'",
            401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)
