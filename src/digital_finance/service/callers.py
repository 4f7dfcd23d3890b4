"""Who is calling: a bearer JWT from the OpenID Connect issuer, or an API key.

`Authorization: Bearer <token>` carries either (an API key starts `dfk_`); `X-API-Key:
<key>` carries a key. No credential, or one that does not verify, is 401 — the service has
no anonymous callers. A JWT already verified is found in the verifier's cache on the event
loop; a new one is verified on a worker thread, since it may have to fetch the issuer's
keys.
"""

from __future__ import annotations

import asyncio

from digital_finance.service.auth import AuthError, Principal
from digital_finance.service.auth.api_keys import ApiKeyStore
from digital_finance.service.auth.jwt_bearer import JwtVerifier

KEY_PREFIX = "dfk_"
CHALLENGE = 'Bearer realm="digital-finance"'


class Callers:
    """Turns a request's credentials into a `Principal`, or raises `AuthError`."""

    def __init__(self, keys: ApiKeyStore, jwt: JwtVerifier | None) -> None:
        self.keys = keys
        self.jwt = jwt

    async def identify(self, authorization: str | None, api_key: str | None) -> Principal:
        """The caller, from the `Authorization` and `X-API-Key` header values.

        Every credential sent must verify: a valid key beside a forged token is refused,
        not taken for the key alone, and two valid ones must be the same caller's.
        """
        if authorization is None and api_key is None:
            raise AuthError(
                401, "credentials are required: a bearer token or an API key", CHALLENGE
            )
        by_key = self.keys.verify(api_key.strip()) if api_key is not None else None
        if authorization is None:
            assert by_key is not None
            return by_key
        by_bearer = await self._bearer(authorization)
        if by_key is not None and by_key.subject != by_bearer.subject:
            raise AuthError(
                401, "the API key and the bearer credential name different callers; send one",
                CHALLENGE,
            )  # fmt: skip
        return by_bearer

    async def _bearer(self, authorization: str) -> Principal:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                401, "the Authorization header must be `Bearer <token or API key>`", CHALLENGE
            )
        if token.startswith(KEY_PREFIX):
            return self.keys.verify(token)
        if self.jwt is None:
            raise AuthError(
                401,
                "this service accepts no bearer tokens ([api.jwt] is not set); use an API key",
                'Bearer realm="digital-finance", error="invalid_token"',
            )
        known = self.jwt.cached(token)
        if known is not None:
            return known
        return await asyncio.to_thread(self.jwt.verify, token)
