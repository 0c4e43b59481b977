"""Who may call what: the X-API-Key check, done by a pure ASGI middleware before any request body is read.

Requests are classified by method and path: ``/healthz`` and ``/readyz`` are open, and so are GET and HEAD of
the web page's files (``/``, ``/ui/...``: no data in them); other GET and HEAD requests, and POST to
``/embed`` and ``/search``, are reads; anything else is a write. The write key (``VIREID_API_KEY``) may do
everything, the read key (``VIREID_READ_API_KEY``) only reads. Writes need the write key as soon as any key is
configured; reads need a key only with ``VIREID_AUTH_READS=true``. A refusal is 401 ``unauthorized`` (no valid
key) or 403 ``forbidden`` (the read key on a write), answered before the app runs, so an unauthenticated upload
is never parsed. The verdict is left in the scope for the audit log and the write routes' own check.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Literal

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import HTTP_ERRORS, ForbiddenError, UnauthorizedError, error_response
from service.settings import Settings
from service.ui import is_page_path

API_KEY_HEADER = "X-API-Key"
ACCESS_SCOPE_KEY = "vireid.access"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
READ_METHODS = frozenset({"GET", "HEAD"})
READ_POST_PATHS = frozenset({"/embed", "/search"})

Kind = Literal["open", "read", "write"]
KeyName = Literal["write", "read", "none"]


@dataclass(frozen=True)
class Access:
    """The middleware's verdict on one request: what kind of request it is and which key it carried."""

    kind: Kind
    key_name: KeyName


def classify(method: str, path: str) -> Kind:
    """Whether a request is open to all, a read or a write, from its method and path alone (no route lookup)."""
    if path in OPEN_PATHS or (method in READ_METHODS and is_page_path(path)):
        return "open"
    if method in READ_METHODS or (method == "POST" and path in READ_POST_PATHS):
        return "read"
    return "write"


def _same(given: bytes, expected: str | None) -> bool:
    """Constant-time comparison with a configured key (False when none is configured)."""
    return expected is not None and secrets.compare_digest(given, expected.encode())


class ApiKeys:
    """The configured keys and the rules of ``VIREID_AUTH_READS``; ``check`` is the whole policy."""

    def __init__(self, settings: Settings) -> None:
        """Take the keys from ``settings``."""
        self.write_key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        self.read_key = settings.read_api_key.get_secret_value() if settings.read_api_key is not None else None
        self.reads_protected = settings.auth_reads
        self.writes_protected = self.reads_protected or self.write_key is not None or self.read_key is not None

    def key_name(self, header: str | None) -> KeyName:
        """Which configured key ``header`` is; both comparisons always run, each in constant time."""
        if header is None:
            return "none"
        given = header.encode()
        is_write, is_read = _same(given, self.write_key), _same(given, self.read_key)
        return "write" if is_write else "read" if is_read else "none"

    def check(self, access: Access, has_header: bool) -> None:
        """Let ``access`` through, or raise why not (``has_header``: the request carried X-API-Key at all).

        Raises:
            UnauthorizedError: the request needs a key and carries no valid one (401).
            ForbiddenError: a write carries the read key (403).
        """
        kind, key = access.kind, access.key_name
        protected = kind == "write" and self.writes_protected or kind == "read" and self.reads_protected
        if not protected or key == "write" or (kind == "read" and key == "read"):
            return
        if key == "read":
            raise ForbiddenError("the read-only API key cannot write; this request needs the write key")
        if not has_header:
            what = "this write needs" if kind == "write" else "reads need"
            raise UnauthorizedError(f"{what} the {API_KEY_HEADER} header (the service has API keys set)")
        if kind == "write" and self.write_key is None:
            raise UnauthorizedError("writes are disabled: the service has a read key but no write key (VIREID_API_KEY)")
        raise UnauthorizedError(f"wrong {API_KEY_HEADER}")


def request_access(scope: Scope) -> Access | None:
    """The verdict ``AuthMiddleware`` left in the scope, or None when it did not see the request."""
    access: Access | None = scope.get(ACCESS_SCOPE_KEY)
    return access


class AuthMiddleware:
    """Checks X-API-Key against ``ApiKeys`` before the app runs; refusals use the service's JSON error body."""

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        """Wrap ``app``."""
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse without reading the body, or record the verdict in the scope and pass the request on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get(API_KEY_HEADER)
        access = Access(classify(scope["method"], scope["path"]), self.keys.key_name(header))
        scope[ACCESS_SCOPE_KEY] = access
        try:
            self.keys.check(access, has_header=header is not None)
        except (UnauthorizedError, ForbiddenError) as exc:
            status, code = HTTP_ERRORS[type(exc)]
            await error_response(status, code, str(exc))(scope, receive, send)
            return
        await self.app(scope, receive, send)
