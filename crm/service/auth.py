"""Bearer API keys: 401 without a live key, 403 without the route's scope.

A key found live is remembered in the process for :data:`KEY_TTL_S` seconds, so a busy
integration does not pay a store lookup (and two thread hand-offs) on every request: a
revocation (``crm api-keys revoke``, from any process) takes effect within that time. Unknown
and revoked keys are never remembered: each such request asks the store again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from crm.store.keys import MAX_KEY_CHARS, ApiKey, authenticate, hash_key

KEY_TTL_S = 2.0
_MAX_REMEMBERED = 1024  # live keys remembered per process; past it the oldest go first

_bearer = HTTPBearer(auto_error=False, description="An API key from `crm api-keys create`")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class LiveKeys:
    """Live keys by the hash of the key, each with the monotonic time it was read from the store.
    Used from the event loop only (no lock); the lookup on a miss runs in the thread pool."""

    def __init__(self, ttl_s: float = KEY_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self._clock = ttl_s, clock
        self._keys: dict[str, tuple[float, ApiKey]] = {}

    async def find(self, engine, presented: str) -> ApiKey | None:
        if not presented or len(presented) > MAX_KEY_CHARS:
            return None  # not one of ours (never hashed)
        h = hash_key(presented)
        hit = self._keys.get(h)
        now = self._clock()
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        key = await run_in_threadpool(authenticate, engine, presented)
        self._keys.pop(h, None)
        if key is not None:
            if len(self._keys) >= _MAX_REMEMBERED:
                del self._keys[next(iter(self._keys))]  # dicts keep insertion order: the oldest read
            self._keys[h] = (now, key)
        return key


async def current_key(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> ApiKey:
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(401, "an API key is required: Authorization: Bearer <key>", headers=_CHALLENGE)
    key = await request.app.state.live_keys.find(request.app.state.engine, creds.credentials)
    if key is None:
        raise HTTPException(401, "unknown or revoked API key", headers=_CHALLENGE)
    return key


def require_scope(scope: str) -> Callable[..., ApiKey]:
    async def dependency(key: ApiKey = Depends(current_key)) -> ApiKey:
        if scope not in key.scopes:
            raise HTTPException(403, f"this API key lacks the scope {scope}")
        return key
    return dependency
