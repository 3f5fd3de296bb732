"""Times in certificates: the UTC clock, validity windows and the notBefore backdate; no I/O.

Every time Certwright writes into a certificate comes from here, so the rules are in one
place: whole seconds in UTC, an inclusive notAfter (RFC 5280 §4.1.2.5), a notBefore set
BACKDATE before the moment of signing, and a certificate never outliving its issuer.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from app.pki.errors import ProfileError

ONE_SECOND: Final = dt.timedelta(seconds=1)

# notBefore is set this much before the moment of signing, so that a client whose clock
# runs somewhat behind the CA's (or a CA whose clock runs ahead) never receives a
# certificate that is "not yet valid". One hour, as Let's Encrypt has done since 2015:
# it covers ordinary drift and the hour of a daylight-saving mistake. The BRs allow it:
# a subscriber certificate's notBefore may be within 48 hours of signing (BR §7.1.2.7),
# a CA certificate's no earlier than one day before signing (BR §7.1.2.1.1, §7.1.2.10.1).
# The validity period stays the term: notAfter counts from the backdated notBefore, so a
# 90-day certificate still spans exactly 90 days (BR §6.3.2 counts notBefore..notAfter
# inclusive) and ends an hour earlier than it would have without the backdate.
BACKDATE: Final = dt.timedelta(hours=1)


def utc_now() -> dt.datetime:
    """The current time in UTC truncated to the second (X.509 time has no fractions)."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def to_utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC truncated to the second; a naive datetime is taken as UTC."""
    if moment.tzinfo is dt.UTC and not moment.microsecond:
        return moment  # already so (utc_now()): the issuance hot path
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC).replace(microsecond=0)


def backdated(moment: dt.datetime, *, not_before_limit: dt.datetime | None = None) -> dt.datetime:
    """The notBefore for a certificate signed at ``moment``: BACKDATE earlier, but never
    before ``not_before_limit`` (the issuer's notBefore), so a certificate's validity
    stays inside its issuer's."""
    start = to_utc(moment) - BACKDATE
    if not_before_limit is not None:
        start = max(start, to_utc(not_before_limit))
    return start


def validity_window(
    term_days: int,
    *,
    now: dt.datetime,
    not_after_limit: dt.datetime | None = None,
    not_before_limit: dt.datetime | None = None,
) -> tuple[dt.datetime, dt.datetime]:
    """(notBefore, notAfter) for a term of ``term_days`` for a certificate signed at ``now``.

    notBefore is backdated by BACKDATE (not before ``not_before_limit``, the issuing CA's
    notBefore). RFC 5280 §4.1.2.5: notAfter is inclusive, so a 90-day term ends 90 days
    minus one second after notBefore: the validity period (BR §6.3.2, notBefore..notAfter
    inclusive) is exactly the term, backdate included. The end is clamped to
    ``not_after_limit`` (the issuing CA's notAfter): a certificate never outlives its
    issuer.

    Raises:
        ProfileError: the issuing CA has expired by ``now``.
    """
    moment = to_utc(now)
    not_before = backdated(moment, not_before_limit=not_before_limit)
    not_after = not_before + dt.timedelta(days=term_days) - ONE_SECOND
    if not_after_limit is not None:
        if moment >= not_after_limit:
            raise ProfileError(f"the issuing CA expired on {not_after_limit.isoformat()}")
        not_after = min(not_after, not_after_limit)
    return not_before, not_after


def add_years(moment: dt.datetime, years: int) -> dt.datetime:
    """The same day and time ``years`` later (28 February for 29 February)."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February in a non-leap target year
        return moment.replace(year=moment.year + years, day=28)
