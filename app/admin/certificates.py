"""Console: Certificates > <type>: the inventory (issued, discovered and imported alike)."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import BaseSQLAFilter, FilterEqual
from markupsafe import Markup
from sqlalchemy import and_, false, or_
from wtforms import SelectField, TextAreaField
from wtforms.validators import Length

from app.admin.base import (
    AdminForm,
    SecureModelView,
    TypeAccessMixin,
    actor,
    per_request,
    select_choices,
)
from app.admin.choices import org_choices
from app.admin.display import FLAG_LABELS, badge, dn, local_time
from app.admin.filters import MonthFilter, month_options
from app.downloads import attachment, certificate_filename
from app.ids import parse_ids
from app.models import Certificate, CertificateRequest, CertStatus, CertType
from app.models.types import utcnow
from app.pki.bundles import load_certificate
from app.pki.info import describe_certificate
from app.reports import charts
from app.services.acme import orders as acme_orders
from app.services.certificates import enrollment, inventory, renewal, revocation, risks
from app.services.discovery import endpoints
from app.services.errors import DomainError
from app.services.imports import findings
from app.services.imports.findings import LABELS
from app.services.reports import dashboard
from app.services.scope import Scope


def display_status(cert: Certificate) -> str:
    if cert.status == CertStatus.ISSUED and cert.not_after < utcnow():
        return "Expired"
    return cert.status.value


def install_state(cert: Certificate) -> str:
    """From the counts CertificateView.prepare_rows loaded for the page or export chunk."""
    counts = g.get("cw_install_counts")
    if counts is not None and cert.id in counts:
        return inventory.install_label(counts[cert.id])
    return inventory.install_state(cert)


def _install_link(cert: Certificate) -> Markup | str:
    """The install state; where discovery found it, a link to those endpoints."""
    state = install_state(cert)
    if not state.startswith("Installed"):
        return state
    url = url_for("network_assets.index_view", flt0_certificate_id_equals=cert.id)
    return Markup('<a href="{}">{}</a>').format(url, state)


def _finding_counts(cert: Certificate) -> dict[str, int]:
    return dict(g.get("cw_finding_counts", {}).get(cert.id, {}))


def _findings_link(view: Any, cert: Certificate) -> Any:
    """The certificate's findings by severity, linked to its page where they are explained."""
    text = findings.summary_of(_finding_counts(cert))
    if not text:
        return ""
    url = url_for(f"{view.endpoint}.details_view", id=cert.id) + "#cw-findings"
    return Markup('<a href="{}">{}</a>').format(url, text)


def _origin(cert: Certificate, *, html: bool) -> Any:
    """The word ACME (with the account and client) for a certificate of an ACME order, else the
    origin; rows of a listing page were looked up once (prepare_rows)."""
    origins = g.get("cw_acme_origins")
    if origins is None:
        origins = acme_orders.acme_origins({cert.id: cert.request_id})
    found = origins.get(cert.id)
    if found is None:
        return cert.origin.value
    if not html:
        return f"ACME: {found.label}"
    url = url_for("acme_accounts.details_view", id=found.account_id)
    return Markup('ACME <small class="text-muted"><a href="{}">{}</a></small>').format(
        url, found.label
    )


class AcmeOriginFilter(BaseSQLAFilter):
    """Certificates issued for ACME orders (Origin: ACME)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        clause = acme_orders.acme_certificates_clause()
        return query.filter(clause if value == "yes" else ~clause)

    def operation(self) -> str:
        return "is"


def _finding_choices() -> list[tuple[Any, str]]:
    """The findings this admin may filter by (an MRAO: every one)."""
    hidden = findings.MRAO_ONLY if not actor().is_master else frozenset()
    return sorted((code, label) for code, label in LABELS.items() if code not in hidden)


class FindingFilter(BaseSQLAFilter):
    """Certificates carrying a finding (parse, key or inventory: docs/imports.md)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(findings.with_finding(str(value), actor=actor()))

    def operation(self) -> str:
        return "is"


class ExpiryWindowFilter(BaseSQLAFilter):
    """Live (Issued or External) certificates expiring in a dashboard window: "0-7" is
    the UTC days today to today+6 (from now on), "7-30" today+7 to today+29, ...
    (app.reports.charts.EXPIRY_WINDOWS, dashboard.expiry_window_clause): the dashboard's
    drill-down."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        start, _, end = str(value).partition("-")
        if not (start.isdigit() and end.isdigit()):
            return query.filter(false())
        return query.filter(
            Certificate.status.in_([CertStatus.ISSUED, CertStatus.EXTERNAL]),
            dashboard.expiry_window_clause(int(start), int(end), now=utcnow()),
        )

    def operation(self) -> str:
        return "in"


class DisplayStatusFilter(BaseSQLAFilter):
    """The status as lists and the dashboard show it: an Issued certificate past its
    expiry is Expired (and not Issued)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(inventory.display_status_clause(str(value), now=utcnow()))

    def operation(self) -> str:
        return "is"


class RiskFilter(BaseSQLAFilter):
    """The dashboard's top risks (app.services.certificates.risks)."""

    def apply(self, query: Any, value: Any, alias: Any = None) -> Any:
        return query.filter(risks.risk_clause(str(value), now=utcnow()))

    def operation(self) -> str:
        return "is"


EXPIRY_OPTIONS = [(f"{a}-{b}", f"{a + (a > 0)} to {b} days") for a, b in charts.EXPIRY_WINDOWS]
# The dashboard's 12-month timeline: week n from today (days [7(n-1), 7n) from now).
WEEK_OPTIONS = [
    (f"{a}-{b}", f"week {i + 1} (days {a} to {b - 1} from today, UTC)")
    for i, (a, b) in enumerate(charts.week_windows())
]


class CertificateView(TypeAccessMixin, SecureModelView):
    """The inventory of one certificate type: issued, discovered and imported alike."""

    can_create = False
    can_edit = False
    can_delete = False
    can_export = True
    column_list = (
        "common_name",
        "organization",
        "department",
        "status",
        "not_after",
        "install_state",
        "renewal_state",
        "origin",
        "assigned_by",
        "findings",
    )
    column_labels = {
        "assigned_by": "Assigned by",
        "common_name": "Common name",
        "not_after": "Expires",
        "install_state": "Install state",
        "renewal_state": "Renewal state",
    }
    column_searchable_list = ("common_name", "serial_hex", "fingerprint", "subject_dn")
    column_sortable_list = (
        "common_name",
        "not_after",
        "status",
        ("organization", "organization.name"),
        "origin",
    )
    column_default_sort = ("not_after", False)
    column_formatters = {
        "status": lambda v, c, m, n: badge(display_status(m)),
        "install_state": lambda v, c, m, n: _install_link(m),
        "not_after": lambda v, c, m, n: local_time(m.not_after),
        "assigned_by": lambda v, c, m, n: endpoints.assigned_by(actor=actor(), certificate=m),
        "findings": lambda v, c, m, n: _findings_link(v, m),
        "origin": lambda v, c, m, n: _origin(m, html=True),
    }
    column_formatters_export = {
        "origin": lambda v, c, m, n: _origin(m, html=False),
        "status": lambda v, c, m, n: display_status(m),
        "install_state": lambda v, c, m, n: install_state(m),
        "assigned_by": lambda v, c, m, n: endpoints.assigned_by(actor=actor(), certificate=m),
        "findings": lambda v, c, m, n: findings.summary_of(_finding_counts(m)),
    }
    details_template = "admin/cert_details.html"
    record_noun = "Certificate"
    search_hint = "Search by common name, serial number, fingerprint or subject"
    column_formatters_detail = {"subject_dn": lambda v, c, m, n: dn(m.subject_dn)}

    @property
    def empty_text(self) -> str:  # type: ignore[override]
        label = self.cert_type.label
        return (
            f"No {label} certificates yet. The certificates you request here, and those "
            "discovered on your network or imported, appear in this one inventory."
        )

    def _request_url(self) -> str | None:
        """The request wizard of this type, when the admin may open it."""
        endpoint = f"{self.endpoint.removesuffix('_certs')}_requests"
        view = next((v for v in self.admin._views if getattr(v, "endpoint", "") == endpoint), None)
        return url_for(f"{endpoint}.create_view") if view and view.is_accessible() else None

    def empty_actions(self) -> list[tuple[str, str]]:
        url = self._request_url()
        return [("Request a certificate", url)] if url else []

    def menu_links(self) -> list[tuple[str, str, str]]:
        url = self._request_url()
        return [("Request a certificate", url, "cw-request-certificate")] if url else []

    def __init__(self, cert_type: CertType, **kwargs: Any) -> None:
        self.cert_type = cert_type
        super().__init__(Certificate, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        base = and_(
            Certificate.cert_type == self.cert_type, Certificate.organization_id.is_not(None)
        )
        clause = inventory.visible_clause(scope, self.cert_type)
        return base if clause is None else and_(base, clause)

    def prepare_rows(self, rows: list[Any]) -> None:
        counts = inventory.install_counts([row.id for row in rows])
        g.cw_install_counts = counts if counts is not None else {}
        g.cw_finding_counts = findings.counts_by_certificate(
            [row.id for row in rows], actor=actor()
        )
        g.cw_acme_origins = acme_orders.acme_origins({row.id: row.request_id for row in rows})

    def get_filters(self) -> Any:
        statuses = [(s.value, s.value) for s in CertStatus]
        return [
            DisplayStatusFilter(Certificate.status, "Status", options=statuses),
            FilterEqual(
                Certificate.organization_id, "Organization", options=per_request(org_choices)
            ),
            FindingFilter(Certificate.id, "Finding", options=per_request(_finding_choices)),
            ExpiryWindowFilter(Certificate.not_after, "Expires", options=EXPIRY_OPTIONS),
            ExpiryWindowFilter(Certificate.not_after, "Expires in week", options=WEEK_OPTIONS),
            FilterEqual(Certificate.issuer_cn, "Issuer"),
            FilterEqual(Certificate.key_type, "Key type"),
            FilterEqual(Certificate.signature_algorithm, "Signature algorithm"),
            FilterEqual(
                Certificate.origin,
                "Origin",
                options=[
                    ("Issued", "Issued by Certwright"),
                    ("Discovered", "Discovered"),
                    ("Imported", "Imported"),
                ],
            ),
            RiskFilter(Certificate.id, "Risk", options=list(risks.RISKS.items())),
            MonthFilter(Certificate.created_at, "Added", options=per_request(month_options)),
            AcmeOriginFilter(
                Certificate.request_id,
                "Issued over ACME",
                options=[("yes", "yes"), ("no", "no")],
            ),
        ]

    @expose("/details/")
    def details_view(self) -> Any:
        cert = self.get_one(request.args.get("id"))
        if cert is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        info = describe_certificate(load_certificate(cert.der))
        chain = [describe_certificate(c) for c in inventory.chain_for(cert)]
        requests = (
            url_for(
                f"{self.endpoint.removesuffix('_certs')}_requests.details_view", id=cert.request_id
            )
            if cert.request_id
            else None
        )
        return self.render(
            self.details_template,
            cert=cert,
            info=info,
            chain=chain,
            status=display_status(cert),
            install=install_state(cert),
            reasons=revocation.reason_choices(),
            request_url=requests,
            formats=certificates_formats(),
            assigned_by=endpoints.assigned_by(actor=actor(), certificate=cert),
            endpoints=endpoints.endpoints_of(actor=actor(), certificate_id=cert.id),
            flag_labels=FLAG_LABELS,
            followups=self._followups(cert),
            findings=findings.of_certificate(cert.id, actor=actor()),
            finding_labels=LABELS,
            acme=acme_orders.acme_origins({cert.id: cert.request_id}).get(cert.id),
        )

    def _followups(self, cert: Certificate) -> list[dict[str, Any]]:
        """Renewals and replacements of this certificate, with their live status."""
        endpoint = f"{self.endpoint.removesuffix('_certs')}_requests"
        view = next((v for v in self.admin._views if getattr(v, "endpoint", "") == endpoint), None)
        if view is None:
            return []
        rows = (
            view.get_query()
            .filter(
                or_(
                    CertificateRequest.renewal_of_id == cert.id,
                    CertificateRequest.replaces_id == cert.id,
                )
            )
            .order_by(CertificateRequest.id.desc())
            .limit(5)
            .all()
        )
        return [
            {
                "request": r,
                "kind": "Renewal" if r.renewal_of_id == cert.id else "Replacement",
                "url": url_for(f"{endpoint}.details_view", id=r.id),
                "status_url": url_for(f"{endpoint}.status_view"),
                "state": view.live_state(r),
            }
            for r in rows
        ]

    @expose("/download/")
    def download_view(self) -> Any:
        cert = self.get_one(request.args.get("id"))
        if cert is None:
            return redirect(url_for(".index_view"))
        try:
            result = inventory.render(cert, request.args.get("format", "x509"))
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".details_view", id=cert.id))
        return attachment(
            result.content,
            filename=certificate_filename(cert.common_name, request.args.get("format", "x509")),
            mimetype=result.mime_type,
        )

    @expose("/pkcs12/", methods=("POST",))
    def pkcs12_view(self) -> Any:
        cert = self.get_one(request.form.get("id"))
        if cert is None:
            return redirect(url_for(".index_view"))
        result = self.run_service(
            None,
            lambda: inventory.pkcs12(
                actor=actor(), certificate_id=cert.id, password=request.form.get("password", "")
            ),
        )
        if not result:
            return redirect(url_for(".details_view", id=cert.id))
        return attachment(
            result.content,
            filename=certificate_filename(cert.common_name, "p12"),
            mimetype=result.mime_type,
        )

    @expose("/revoke/", methods=("GET", "POST"))
    def revoke_view(self) -> Any:
        ids = parse_ids(request.values.get("ids"))
        certs = [c for c in (self.get_one(i) for i in ids) if c is not None]
        if not certs:
            flash("Choose the certificates to revoke.", "error")
            return redirect(url_for(".index_view"))
        form = RevokeForm()
        form.reason.choices = select_choices(revocation.reason_choices())
        if form.validate_on_submit() and self.run_service(
            form,
            lambda: revocation.revoke(
                actor=actor(),
                certificate_ids=[c.id for c in certs],
                reason=form.reason.data,
                message=form.message.data or "",
            ),
            success=lambda done: (
                f"{len(done)} certificate(s) revoked ({form.reason.data}); the CRL was re-published."
            ),
        ):
            return redirect(
                url_for(".index_view")
                if len(certs) > 1
                else url_for(".details_view", id=certs[0].id)
            )
        return self.render(
            "admin/revoke.html", form=form, certs=certs, ids=",".join(str(c.id) for c in certs)
        )

    @action("revoke", "Revoke")
    def action_revoke(self, ids: list[str]) -> Any:
        return redirect(url_for(".revoke_view", ids=",".join(ids)))

    @expose("/renew/", methods=("POST",))
    def renew_view(self) -> Any:
        cert = self.get_one(request.form.get("id"))
        if cert is not None:
            self.run_service(
                None,
                lambda: renewal.renew(actor=actor(), certificate_id=cert.id),
                success=lambda req: f"Renewal request #{req.id} created ({req.status.value}).",
            )
            return redirect(url_for(".details_view", id=cert.id))
        return redirect(url_for(".index_view"))

    @expose("/replace/", methods=("GET", "POST"))
    def replace_view(self) -> Any:
        cert = self.get_one(request.values.get("id"))
        if cert is None:
            return redirect(url_for(".index_view"))
        form = ReplaceForm()
        if form.validate_on_submit():
            upload = request.files.get("csr_file")
            csr = (
                upload.read(enrollment.MAX_CSR_BYTES + 1)
                if upload and upload.filename
                else (form.csr.data or "").encode()
            )
            if self.run_service(
                form,
                lambda: renewal.replace(actor=actor(), certificate_id=cert.id, csr=csr),
                success=lambda req: (
                    f"Replacement request #{req.id} created ({req.status.value}); the old certificate is revoked when the new one is issued."
                ),
            ):
                return redirect(url_for(".details_view", id=cert.id))
        return self.render("admin/replace.html", form=form, cert=cert)


def certificates_formats() -> list[tuple[str, str]]:
    from app.pki.formats import FORMAT_LABELS

    return FORMAT_LABELS


class OtherCertificateView(CertificateView):
    """Certificates of no type Certwright issues, imported or discovered: CA certificates
    and those whose extended key usage says nothing (or says something else). Open to every
    admin, for what is placed in their scope; nothing to request, renew or revoke here."""

    def __init__(self, **kwargs: Any) -> None:
        SecureModelView.__init__(self, Certificate, **kwargs)

    def is_accessible(self) -> bool:
        return SecureModelView.is_accessible(self)

    @property
    def empty_text(self) -> str:  # type: ignore[override]
        return (
            "No other certificates. CA certificates and certificates of no type Certwright "
            "issues appear here when they are imported or discovered and placed."
        )

    def _request_url(self) -> str | None:
        return None

    def scope_clause(self, scope: Scope) -> Any:
        base = and_(Certificate.cert_type.is_(None), Certificate.organization_id.is_not(None))
        clause = inventory.visible_clause(scope, None)
        return base if clause is None else and_(base, clause)


class RevokeForm(AdminForm):
    reason = SelectField("Reason (RFC 5280)")
    message = TextAreaField("Message (kept in the audit log)", validators=[Length(max=2000)])


class ReplaceForm(AdminForm):
    csr = TextAreaField("New CSR (PEM)", validators=[Length(max=enrollment.MAX_CSR_BYTES * 2)])
