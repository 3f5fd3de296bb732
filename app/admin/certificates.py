"""Console: Certificates > <type>: the inventory (issued, discovered and imported alike)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from flask import Response, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup
from sqlalchemy import and_
from wtforms import SelectField, TextAreaField
from wtforms.validators import Length

from app.admin.base import (
    AdminForm,
    SecureModelView,
    actor,
    apply_errors,
    current_scope,
    per_request,
    select_choices,
)
from app.admin.display import FLAG_LABELS, local_time
from app.admin.orgs import org_choices
from app.extensions import db
from app.models import Certificate, CertStatus, CertType
from app.models.types import utcnow
from app.pki.info import describe_certificate
from app.services import certificates, enrollment, network_assets, renewal, revocation
from app.services.errors import DomainError
from app.services.scope import Scope

STATUS_BADGE = {
    "Issued": "success",
    "Revoked": "danger",
    "Expired": "secondary",
    "Replaced": "info",
    "External": "dark",
    "Requested": "warning",
    "Approved": "primary",
    "Declined": "secondary",
    "Failed": "danger",
}


def badge(text: str) -> Markup:
    return Markup('<span class="badge badge-{}">{}</span>').format(
        STATUS_BADGE.get(text, "light"), text
    )


def display_status(cert: Certificate) -> str:
    if cert.status == CertStatus.ISSUED and cert.not_after < utcnow():
        return "Expired"
    return cert.status.value


def install_state(cert: Certificate) -> str:
    return certificates.install_state(cert)


def _install_link(cert: Certificate) -> Markup | str:
    """The install state; where discovery found it, a link to those endpoints."""
    state = install_state(cert)
    if not state.startswith("Installed"):
        return state
    url = url_for("network_assets.index_view", flt0_certificate_id_equals=cert.id)
    return Markup('<a href="{}">{}</a>').format(url, state)


class TypeAccessMixin:
    """A certificate-type tab is open to admins holding that type's privilege somewhere."""

    cert_type: CertType

    def is_accessible(self) -> bool:
        if not super().is_accessible():  # type: ignore[misc]
            return False
        scope = current_scope()
        held = [*scope.orgs.values(), *(p for _, p in scope.depts.values())]
        return scope.is_master or any(self.cert_type in p for p in held)


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
        "assigned_by": lambda v, c, m, n: network_assets.assigned_by(actor=actor(), certificate=m),
    }
    column_formatters_export = {
        "status": lambda v, c, m, n: display_status(m),
        "install_state": lambda v, c, m, n: install_state(m),
        "assigned_by": lambda v, c, m, n: network_assets.assigned_by(actor=actor(), certificate=m),
    }
    details_template = "admin/cert_details.html"

    def __init__(self, cert_type: CertType, **kwargs: Any) -> None:
        self.cert_type = cert_type
        super().__init__(Certificate, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        base = and_(
            Certificate.cert_type == self.cert_type, Certificate.organization_id.is_not(None)
        )
        clause = certificates.visible_clause(scope, self.cert_type)
        return base if clause is None else and_(base, clause)

    def get_filters(self) -> Any:
        statuses = [(s.value, s.value) for s in CertStatus]
        return [
            FilterEqual(Certificate.status, "Status", options=statuses),
            FilterEqual(
                Certificate.organization_id, "Organization", options=per_request(org_choices)
            ),
            FilterEqual(
                Certificate.origin,
                "Origin",
                options=[
                    ("Issued", "Issued by Certwright"),
                    ("Discovered", "Discovered"),
                    ("Imported", "Imported"),
                ],
            ),
        ]

    @expose("/details/")
    def details_view(self) -> Any:
        cert = self.get_one(request.args.get("id"))
        if cert is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        info = describe_certificate(x509.load_der_x509_certificate(cert.der))
        chain = [describe_certificate(c) for c in certificates.chain_for(cert)]
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
            assigned_by=network_assets.assigned_by(actor=actor(), certificate=cert),
            endpoints=network_assets.endpoints_of(actor=actor(), certificate_id=cert.id),
            flag_labels=FLAG_LABELS,
        )

    @expose("/download/")
    def download_view(self) -> Any:
        cert = self.get_one(request.args.get("id"))
        if cert is None:
            return redirect(url_for(".index_view"))
        try:
            result = certificates.render(cert, request.args.get("format", "x509"))
        except DomainError as exc:
            flash(exc.message, "error")
            return redirect(url_for(".details_view", id=cert.id))
        name = cert.common_name.replace("*", "star") or "certificate"
        return Response(
            result.content,
            mimetype=result.mime_type,
            headers={"Content-Disposition": f'attachment; filename="{name}.{result.extension}"'},
        )

    @expose("/pkcs12/", methods=("POST",))
    def pkcs12_view(self) -> Any:
        cert = self.get_one(request.form.get("id"))
        if cert is None:
            return redirect(url_for(".index_view"))
        try:
            result = certificates.pkcs12(
                actor=actor(), certificate_id=cert.id, password=request.form.get("password", "")
            )
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")
            return redirect(url_for(".details_view", id=cert.id))
        return Response(
            result.content,
            mimetype=result.mime_type,
            headers={
                "Content-Disposition": f'attachment; filename="{cert.common_name.replace("*", "star")}.p12"'
            },
        )

    @expose("/revoke/", methods=("GET", "POST"))
    def revoke_view(self) -> Any:
        ids = [int(i) for i in (request.values.get("ids") or "").split(",") if i.isdigit()]
        certs = [c for c in (self.get_one(i) for i in ids) if c is not None]
        if not certs:
            flash("Choose the certificates to revoke.", "error")
            return redirect(url_for(".index_view"))
        form = RevokeForm()
        form.reason.choices = select_choices(revocation.reason_choices())
        if form.validate_on_submit():
            try:
                done = revocation.revoke(
                    actor=actor(),
                    certificate_ids=[c.id for c in certs],
                    reason=form.reason.data,
                    message=form.message.data or "",
                )
                db.session.commit()
                flash(
                    f"{len(done)} certificate(s) revoked ({form.reason.data}); the CRL was re-published.",
                    "success",
                )
                return redirect(
                    url_for(".index_view")
                    if len(certs) > 1
                    else url_for(".details_view", id=certs[0].id)
                )
            except DomainError as exc:
                db.session.rollback()
                apply_errors(form, exc)
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
            try:
                req = renewal.renew(actor=actor(), certificate_id=cert.id)
                db.session.commit()
                flash(f"Renewal request #{req.id} created ({req.status.value}).", "success")
            except DomainError as exc:
                db.session.rollback()
                flash(exc.message, "error")
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
            try:
                req = renewal.replace(actor=actor(), certificate_id=cert.id, csr=csr)
                db.session.commit()
                flash(
                    f"Replacement request #{req.id} created ({req.status.value}); the old certificate is revoked when the new one is issued.",
                    "success",
                )
                return redirect(url_for(".details_view", id=cert.id))
            except DomainError as exc:
                db.session.rollback()
                apply_errors(form, exc)
        return self.render("admin/replace.html", form=form, cert=cert)


def certificates_formats() -> list[tuple[str, str]]:
    from app.api.collect import FORMAT_LABELS

    return FORMAT_LABELS


class RevokeForm(AdminForm):
    reason = SelectField("Reason (RFC 5280)")
    message = TextAreaField("Message (kept in the audit log)", validators=[Length(max=2000)])


class ReplaceForm(AdminForm):
    csr = TextAreaField("New CSR (PEM)", validators=[Length(max=enrollment.MAX_CSR_BYTES * 2)])
