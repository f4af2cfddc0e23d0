"""Bearer API keys: 401 without a live key, 403 without the route's scope."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from crm.store.keys import ApiKey, authenticate

_bearer = HTTPBearer(auto_error=False, description="An API key from `crm api-keys create`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def current_key(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> ApiKey:
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", headers=_CHALLENGE)
    key = authenticate(request.app.state.engine, creds.credentials)
    if key is None:
        raise HTTPException(401, "unknown or revoked API key", headers=_CHALLENGE)
    return key


def require_scope(scope: str) -> Callable[..., ApiKey]:
    def dependency(key: ApiKey = Depends(current_key)) -> ApiKey:
        if scope not in key.scopes:
            raise HTTPException(403, f"this API key lacks the scope {scope}")
        return key
    return dependency
