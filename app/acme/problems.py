"""ACME problem documents (RFC 8555 §6.7, RFC 7807): the error types and their statuses.

Every refusal in the ACME front door is one of these; nothing else is raised on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PREFIX = "urn:ietf:params:acme:error:"
CONTENT_TYPE = "application/problem+json"

# RFC 8555 §6.7 error types and the HTTP status each is answered with.
STATUS: dict[str, int] = {
    "accountDoesNotExist": 400,
    # RFC 9773 §7.4: the certificate named by "replaces" was replaced by another order.
    "alreadyReplaced": 409,
    "alreadyRevoked": 400,
    "badCSR": 400,
    "badNonce": 400,
    "badPublicKey": 400,
    "badRevocationReason": 400,
    "badSignatureAlgorithm": 400,
    "caa": 403,
    "compound": 403,
    "connection": 400,
    "dns": 400,
    "externalAccountRequired": 401,
    "incorrectResponse": 400,
    "invalidContact": 400,
    "malformed": 400,
    "orderNotReady": 403,
    "rateLimited": 429,
    "rejectedIdentifier": 400,
    "serverInternal": 500,
    "tls": 400,
    "unauthorized": 403,
    "unsupportedContact": 400,
    "unsupportedIdentifier": 400,
    "userActionRequired": 403,
}


@dataclass
class AcmeProblem(Exception):
    """A refusal as RFC 8555 names it: ``AcmeProblem("badNonce", "the nonce was used")``."""

    kind: str
    detail: str
    status: int = 0
    identifier: dict[str, str] | None = None
    # badSignatureAlgorithm answers with the algorithms the server accepts (§6.2).
    algorithms: tuple[str, ...] = field(default=())
    # rateLimited: seconds until a retry can succeed (the Retry-After header, §6.6).
    retry_after: int = 0

    def __post_init__(self) -> None:
        if self.kind not in STATUS:
            raise ValueError(f"unknown ACME error type {self.kind!r}")
        if not self.status:
            self.status = STATUS[self.kind]
        super().__init__(self.detail)

    @property
    def type(self) -> str:
        return PREFIX + self.kind

    def document(self) -> dict[str, Any]:
        """The JSON body (application/problem+json)."""
        doc: dict[str, Any] = {"type": self.type, "detail": self.detail, "status": self.status}
        if self.identifier is not None:
            doc["identifier"] = dict(self.identifier)
        if self.algorithms:
            doc["algorithms"] = list(self.algorithms)
        return doc
