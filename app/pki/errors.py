"""Domain exceptions raised by app.pki; each carries a message a person can act on.

Callers (services) map these to a form error, a flash or an HTTP status. Nothing here
imports the rest of the package at run time, so every module can raise them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class LintFinding(Protocol):
    """What LintError carries (app.pki.lint.LintFinding is the implementation)."""

    @property
    def code(self) -> str: ...

    @property
    def severity(self) -> str: ...


class PkiError(Exception):
    """Base class of every error app.pki raises on purpose."""


class CsrError(PkiError):
    """A certificate signing request is unreadable, too big or not self-consistent."""


class KeyPolicyError(PkiError):
    """A key is of a type, size or exponent the policy does not allow."""


class NamePolicyError(PkiError):
    """A DNS name, IP address, email address or subject attribute is not acceptable."""


class ProfileError(PkiError):
    """A request does not fit the certificate profile (term, kind, names, CA state)."""


class RevocationPolicyError(ProfileError):
    """A revocation reason that may not be chosen (for this certificate, by this revoker)
    or may not be published (in a CRL or OCSP response)."""


class LintError(PkiError):
    """pkilint reported findings that are not on the reviewed allow-list.

    A certificate was never signed with the CA key, and a CRL or OCSP response is not
    published; ``findings`` lists what to fix, ``document`` says what was refused.
    """

    def __init__(self, findings: Sequence[LintFinding], document: str = "certificate") -> None:
        self.findings: tuple[LintFinding, ...] = tuple(findings)
        self.document = document
        listed = "; ".join(str(finding) for finding in self.findings)
        super().__init__(f"{document} refused by lint: {listed}")


class SealError(PkiError):
    """A sealed CA key cannot be sealed or unsealed with the configured keys."""


class FormatError(PkiError):
    """Bytes that should hold certificates, keys or a PKCS#12 bundle cannot be read."""


class OcspRequestError(PkiError):
    """An OCSP request is malformed (the responder answers malformedRequest)."""
