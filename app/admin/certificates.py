"""Console: Certificates > <type> (the inventory) and <type> Requests (the wizard, approvals)."""

from __future__ import annotations

from typing import Any

from cryptography import x509
from flask import Response, flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup
from sqlalchemy import and_, select
from wtforms import SelectField, StringField, TextAreaField
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
from app.models import Certificate, CertificateRequest, CertStatus, CertType, RequestStatus
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


class RequestForm(AdminForm):
    mode = SelectField(
        "Mode",
        choices=select_choices(
            [("csr", "Paste or upload a CSR"), ("keygen", "Let Certwright generate the key")]
        ),
    )
    csr = TextAreaField(
        "CSR (PEM; or upload a PEM/DER file below; at most 32 KB)",
        validators=[Length(max=enrollment.MAX_CSR_BYTES * 2)],
    )
    key_type = SelectField("Key type (server-generated keys)", validate_choice=False)
    target = SelectField("Organization / department", validate_choice=False)
    profile_id = SelectField("Certificate profile", coerce=int, validate_choice=False)
    term_days = SelectField("Term", coerce=int, validate_choice=False)
    common_name = StringField("Common name", validators=[Length(max=255)])
    sans = TextAreaField(
        "Subject alternative names (one per line: DNS names or IP addresses)",
        validators=[Length(max=20000)],
    )
    requester_email = StringField("Requester email", validators=[Length(max=254)])
    external_requesters = TextAreaField(
        "External requesters (emails, one per line; they get the collection email)",
        validators=[Length(max=5000)],
    )
    auto_renew = SelectField("Auto renew", choices=select_choices([("off", "Off"), ("on", "On")]))
    renew_days_before = StringField("Renew this many days before expiry", default="30")
    comments = TextAreaField("Comments", validators=[Length(max=2000)])
    eula = SelectField(
        "Subscriber agreement",
        choices=select_choices(
            [("", "— choose —"), ("accept", "I accept the subscriber agreement (EULA)")]
        ),
    )


EULA = "The subscriber accepts the certificate policy of this private CA, protects the private key, uses the certificate only for the names listed, and asks for revocation at once if the key is compromised or a name is no longer theirs."


class RequestView(TypeAccessMixin, SecureModelView):
    """Requests of one certificate type: the request wizard, approve and decline."""

    field_map = {
        "organization": "target",
        "department": "target",
        "profile": "profile_id",
        "term": "term_days",
    }
    can_edit = False
    can_delete = False
    column_list = (
        "id",
        "common_name",
        "organization",
        "department",
        "profile",
        "term_days",
        "status",
        "requester_email",
        "created_at",
    )
    column_labels = {
        "id": "#",
        "common_name": "Common name",
        "term_days": "Term (days)",
        "requester_email": "Requester",
        "created_at": "Requested",
    }
    column_searchable_list = ("common_name", "requester_email")
    column_sortable_list = ("id", "common_name", "status", "created_at")
    column_default_sort = ("id", True)
    column_details_list = (
        "id",
        "cert_type",
        "status",
        "common_name",
        "sans",
        "subject",
        "organization",
        "department",
        "profile",
        "term_days",
        "mode",
        "key_type",
        "requester_email",
        "external_requesters",
        "auto_renew",
        "renew_days_before",
        "comments",
        "created_at",
        "decided_at",
        "decision_message",
        "failure_reason",
        "certificate",
        "renewal_of_id",
        "replaces_id",
    )
    create_template = "admin/request_wizard.html"

    def _status(view: Any, context: Any, model: CertificateRequest, name: str) -> Markup:
        html = badge(model.status.value)
        if model.status == RequestStatus.REQUESTED:
            html += Markup(
                ' <a class="btn btn-sm btn-outline-primary" href="{}">Approve / decline</a>'
            ).format(url_for(".decide_view", id=model.id))
        if model.certificate_id:
            html += Markup(' <a href="{}">certificate</a>').format(
                url_for(
                    f"{view.endpoint.removesuffix('_requests')}_certs.details_view",
                    id=model.certificate_id,
                )
            )
        return html

    column_formatters = {
        "status": _status,
        "sans": lambda v, c, m, n: ", ".join(m.sans),
        "cert_type": lambda v, c, m, n: m.cert_type.label,
    }

    def __init__(self, cert_type: CertType, **kwargs: Any) -> None:
        self.cert_type = cert_type
        super().__init__(CertificateRequest, **kwargs)

    def scope_clause(self, scope: Scope) -> Any:
        base = CertificateRequest.cert_type == self.cert_type
        clause = scope.type_filter(
            CertificateRequest.organization_id, CertificateRequest.department_id, self.cert_type
        )
        return base if clause is None else and_(base, clause)

    def get_filters(self) -> Any:
        return [
            FilterEqual(
                CertificateRequest.status,
                "Status",
                options=[(s.value, s.value) for s in RequestStatus],
            )
        ]

    def _choices(self, form: RequestForm) -> None:
        from app.admin.orgs import target_choices
        from app.models import CertificateProfile

        scope = current_scope()
        places = []
        for value, label in target_choices():
            org_id, dept_id = _target(value)
            if scope.may(self.cert_type, org_id, dept_id):
                places.append((value, label))
        form.target.choices = select_choices(places)
        profiles = (
            db.session.execute(
                select(CertificateProfile)
                .where(
                    CertificateProfile.cert_type == self.cert_type,
                    CertificateProfile.active.is_(True),
                )
                .order_by(CertificateProfile.name)
            )
            .scalars()
            .all()
        )
        form.profile_id.choices = select_choices(
            (
                p.id,
                f"{p.name} ({p.terms_label}; {'approval' if p.requires_approval else 'no approval'})",
            )
            for p in profiles
        )
        terms = sorted({t for p in profiles for t in p.terms})
        form.term_days.choices = select_choices((t, f"{t} days") for t in terms)
        key_types = sorted({k for p in profiles for k in p.key_types})
        form.key_type.choices = select_choices((k, k) for k in key_types)
        if request.method == "GET" and not form.requester_email.data:
            form.requester_email.data = actor().email

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        form = RequestForm()
        self._choices(form)
        if request.method == "POST" and form.validate():
            upload = request.files.get("csr_file")
            csr = (
                upload.read(enrollment.MAX_CSR_BYTES + 1)
                if upload and upload.filename
                else (form.csr.data or "").strip().encode()
            )
            if "from_csr" in request.form:
                self._fill_from_csr(form, csr)
            else:
                org_id, dept_id = _target(form.target.data)
                try:
                    renew_days = int(form.renew_days_before.data or 30)
                except ValueError:
                    renew_days = -1
                data = enrollment.RequestData(
                    organization_id=org_id,
                    department_id=dept_id,
                    profile_id=form.profile_id.data or 0,
                    term_days=form.term_days.data or 0,
                    mode=enrollment.RequestMode(form.mode.data),
                    csr=csr if form.mode.data == "csr" else None,
                    key_type=form.key_type.data,
                    common_name=form.common_name.data or "",
                    sans=[s.strip() for s in (form.sans.data or "").splitlines() if s.strip()],
                    requester_email=form.requester_email.data or "",
                    external_requesters=[
                        s.strip()
                        for s in (form.external_requesters.data or "")
                        .replace(",", "\n")
                        .splitlines()
                        if s.strip()
                    ],
                    auto_renew=form.auto_renew.data == "on",
                    renew_days_before=renew_days,
                    eula_accepted=form.eula.data == "accept",
                    comments=form.comments.data or "",
                    cert_type=self.cert_type,
                )
                req = self.run_service(
                    form, lambda: enrollment.submit_request(actor=actor(), data=data)
                )
                if req:
                    flash(
                        f"Request #{req.id} for {req.common_name} is {req.status.value}.", "success"
                    )
                    return redirect(url_for(".details_view", id=req.id))
        return self.render(self.create_template, form=form, eula=EULA, cert_type=self.cert_type)

    def _fill_from_csr(self, form: RequestForm, csr: bytes) -> None:
        from app.pki import csr as pki_csr
        from app.pki.errors import PkiError

        try:
            parsed = pki_csr.parse_csr(csr)
        except PkiError as exc:
            form.csr.errors = [f"The CSR is not usable: {exc}"]
            return
        form.csr.data = csr.decode(errors="replace") if csr.startswith(b"-----") else form.csr.data
        form.common_name.data = parsed.common_name or ""
        form.sans.data = "\n".join([*parsed.dns_names, *(str(ip) for ip in parsed.ip_addresses)])
        flash(f"Read the CSR: {parsed.key_type} key, CN {parsed.common_name or '(none)'}.", "info")

    @expose("/decide/", methods=("GET", "POST"))
    def decide_view(self) -> Any:
        from app.admin.domains import DecideForm

        req = self.get_one(request.args.get("id"))
        if req is None:
            flash("No such request.", "error")
            return redirect(url_for(".index_view"))
        form = DecideForm()
        if form.validate_on_submit():
            try:
                if "approve" in request.form:
                    enrollment.approve(
                        actor=actor(), request_ids=[req.id], message=form.message.data or ""
                    )
                    flash(
                        f"Request #{req.id} approved; the certificate is being issued.", "success"
                    )
                else:
                    enrollment.decline(
                        actor=actor(), request_id=req.id, message=form.message.data or ""
                    )
                    flash(f"Request #{req.id} declined.", "success")
                db.session.commit()
                return redirect(url_for(".details_view", id=req.id))
            except DomainError as exc:
                db.session.rollback()
                flash(exc.message, "error")
        summary = f"#{req.id} {req.common_name} ({', '.join(req.sans)}) for {req.organization.name}{' / ' + req.department.name if req.department else ''}, {req.term_days} days, profile {req.profile.name}, requested by {req.requester_email}"
        return self.render(
            "admin/decide.html",
            form=form,
            item=req,
            title=f"{self.cert_type.label} request",
            summary=summary,
        )

    @action("approve", "Approve", "Approve the selected requests?")
    def action_approve(self, ids: list[str]) -> None:
        visible = [r.id for r in (self.get_one(i) for i in ids) if r is not None]
        try:
            approved = enrollment.approve(actor=actor(), request_ids=visible)
            db.session.commit()
            flash(f"{len(approved)} request(s) approved; issuance queued.", "success")
        except DomainError as exc:
            db.session.rollback()
            flash(exc.message, "error")


def _target(value: str | None) -> tuple[int, int | None]:
    from app.admin.orgs import parse_target

    return parse_target(value or "")
