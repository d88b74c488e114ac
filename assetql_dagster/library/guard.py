"""What every request passes through: identity, the rate limit, CSRF and the security headers.

CSRF is a signed double-submit token: a random nonce and the person's name, signed with the
library's secret, is kept in an HttpOnly SameSite cookie and written into every page (forms as
`csrf_token`, scripts send it as `X-CSRF-Token`). A state-changing request signed in by the proxy or
as the local admin must send it back equal to the cookie, signed by us and for the same person;
API tokens are exempt, since no browser adds them to a request by itself. `csrf_protected` is
applied to every state-changing route where the routes are built (`app.routes`), so none can
forget it.
"""

from __future__ import annotations

import functools
import hmac
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable

from itsdangerous import BadSignature, URLSafeSerializer
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response

from assetql_dagster.library.auth import Denied, identify
from assetql_dagster.library.config import LibraryConfig

CSRF_COOKIE = "assetql_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WINDOW_S = 60.0
# Catalogued images are what a page is made of: a grid of 60 thumbnails must not spend a person's
# minute of requests. They are read-only and each is checked against the catalog.
UNLIMITED_PREFIXES = ("/files/",)
# Uploads: a CSV (5 MB), up to 5 references (10 MB each) and the form's fields.
MAX_FORM_FILES = 8
SECURITY_HEADERS = {
    # Scripts and styles only from our own files; images also from data: (palettes), blob: (an upload's
    # preview) and https: (presigned storage URLs a thumbnail redirects to).
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data: blob: https:; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


class Csrf:
    """Issues and checks the signed double-submit tokens of one library instance."""

    def __init__(self, secret: str):
        self.serializer = URLSafeSerializer(secret, salt="assetql-library-csrf")

    def issue(self, user: str) -> str:
        return self.serializer.dumps({"u": user, "n": secrets.token_urlsafe(16)})

    def belongs_to(self, token: str | None, user: str) -> bool:
        if not token:
            return False
        try:
            data = self.serializer.loads(token)
        except BadSignature:
            return False
        return isinstance(data, dict) and data.get("u") == user

    def valid(self, cookie: str | None, submitted: str | None, user: str) -> bool:
        return bool(cookie and submitted) and hmac.compare_digest(str(cookie), str(submitted)) and self.belongs_to(
            submitted, user)


class RateLimiter:
    """At most `limit` requests per person in any 60 seconds (a sliding window of request times)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.seen: dict[str, deque[float]] = {}
        self.lock = threading.Lock()
        self.swept = time.monotonic()

    def retry_after(self, key: str, now: float | None = None) -> int | None:
        """Count one request of `key`: None when allowed, else seconds until one is allowed again."""
        now = time.monotonic() if now is None else now
        with self.lock:
            if now - self.swept > WINDOW_S:  # forget people who went quiet, so memory stays bounded
                self.seen = {k: q for k, q in self.seen.items() if q and now - q[-1] < WINDOW_S}
                self.swept = now
            times = self.seen.setdefault(key, deque())
            while times and now - times[0] >= WINDOW_S:
                times.popleft()
            if len(times) >= self.limit:
                return max(1, math.ceil(times[0] + WINDOW_S - now))
            times.append(now)
            return None


ErrorPage = Callable[[Request, int, str], Response]


class Guard(BaseHTTPMiddleware):
    """Identity (`request.state.identity`), the rate limit, the CSRF cookie and the security headers.
    `config` is asked on every request, since an admin may change roles and tokens while it runs."""

    def __init__(self, app, config: Callable[[], LibraryConfig], csrf: Csrf, error: ErrorPage):
        super().__init__(app)
        self.config, self.csrf, self.error = config, csrf, error
        self.limiter = RateLimiter(config().rate_limit_per_minute)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path.startswith("/static/"):  # the stylesheet and script: public, unlimited
            response = await call_next(request)
            response.headers.setdefault("cache-control", "public, max-age=3600")
            return self._secured(response)
        host = request.client.host if request.client else None
        config = self.config()
        self.limiter.limit = config.rate_limit_per_minute
        limited = not (request.method in SAFE_METHODS and request.url.path.startswith(UNLIMITED_PREFIXES))
        try:
            identity = identify(config, host, request.headers)
        except Denied as denied:
            wait = self.limiter.retry_after(f"peer:{host}") if limited else None
            response = self._too_many(request, wait, config) if wait else self.error(request, denied.status, denied.message)
            return self._secured(response)
        wait = self.limiter.retry_after(f"user:{identity.user}") if limited else None
        if wait:
            return self._secured(self._too_many(request, wait, config))
        request.state.identity = identity
        cookie = request.cookies.get(CSRF_COOKIE)
        fresh = not self.csrf.belongs_to(cookie, identity.user)
        request.state.csrf = self.csrf.issue(identity.user) if fresh else cookie
        response = await call_next(request)
        if fresh and identity.via != "token":
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/")
        return self._secured(response)

    def _too_many(self, request: Request, wait: int, config: LibraryConfig) -> Response:
        response = self.error(request, 429, f"more than {config.rate_limit_per_minute} requests a minute; "
                                            f"try again in {wait} s")
        response.headers["retry-after"] = str(wait)
        return response

    @staticmethod
    def _secured(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("cache-control", "no-store")
        return response


def is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind in ("application/x-www-form-urlencoded", "multipart/form-data")


async def read_form(request: Request):
    """The request's form with the library's limits (parsed once; Starlette keeps it for later calls)."""
    return await request.form(max_files=MAX_FORM_FILES, max_fields=200)


def csrf_protected(csrf: Csrf, endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """`endpoint` answering 403 to a state-changing request without the CSRF token (see the module)."""

    @functools.wraps(endpoint)
    async def checked(request: Request) -> Response:
        identity = request.state.identity
        if request.method not in SAFE_METHODS and identity.via != "token":
            submitted = request.headers.get(CSRF_HEADER)
            if not submitted and is_form(request):
                submitted = (await read_form(request)).get(CSRF_FIELD)
            if not csrf.valid(request.cookies.get(CSRF_COOKIE), submitted if isinstance(submitted, str) else None,
                              identity.user):
                raise Denied(403, "the form's CSRF token is missing or stale; reload the page and try again")
        return await endpoint(request)

    return checked
