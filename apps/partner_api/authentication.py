"""API-key authentication and the base class of every /v1 view: key, scope, rate limit, error shape.

Only `Authorization: Bearer vk_...` authenticates on /v1; a signed-in web session does not (a customer's
browser is not a partner), so a request without a key is a 401 whatever cookies it carries.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from rest_framework.authentication import BaseAuthentication
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_authenticate
from apps.partner_api.errors import PartnerApiError, exception_handler, missing_key
from apps.partner_api.ratelimit import limiter


class ApiKeyAuthentication(BaseAuthentication):
    def authenticate(self, request: Request) -> tuple[AnonymousUser, ApiKey] | None:
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, raw = header.partition(" ")
        if not header:
            return None
        if scheme.lower() != "bearer" or not raw.strip():
            raise PartnerApiError(401, "invalid_api_key", "Send the key as `Authorization: Bearer vk_...`.")
        api_key = api_key_authenticate(raw_key=raw.strip())
        # The caller is a partner system, not a person: no user; the key (and its tenant) is `request.auth`.
        return AnonymousUser(), api_key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="verity"'


class PartnerApiView(APIView):
    """Base of every /v1 operation: subclasses set `scope` and write `get`/`post`/`delete` only."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes: list[Any] = []
    renderer_classes = [JSONRenderer]
    scope = "models"

    def get_exception_handler(self):
        return exception_handler

    @property
    def api_key(self) -> ApiKey:
        return self.request.auth

    def rate_cost(self, request: Request) -> tuple[int, int]:
        """(requests, tokens) this call reserves; chat completions reserve their token estimate too."""
        return 1, 0

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            raise missing_key()
        if not api_key.allows_endpoint(self.scope):
            raise PartnerApiError(403, "scope_denied", f"This API key may not use the '{self.scope}' endpoints.")
        requests, tokens = self.rate_cost(request)
        decision = limiter().acquire(str(api_key.pk), requests_limit=api_key.requests_per_minute,
                                     tokens_limit=api_key.tokens_per_minute, requests=requests, tokens=tokens)
        self.rate_headers = decision.headers()
        self.reserved_tokens = tokens
        if not decision.admitted:
            what = "requests per minute" if decision.limited_by == "requests" else "tokens per minute"
            limit = api_key.requests_per_minute if decision.limited_by == "requests" else api_key.tokens_per_minute
            raise PartnerApiError(429, "rate_limit_exceeded", f"Rate limit reached: {limit} {what} for this key. "
                                  f"Retry after {decision.retry_after_s}s.", headers=self.rate_headers)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in getattr(self, "rate_headers", {}).items():
            response.headers.setdefault(name, value)
        return response
