"""Console: Certificates > <type> Requests: the request wizard, approve and decline."""

from __future__ import annotations

from typing import Any

from flask import flash, jsonify, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from sqlalchemy import and_, select
from wtforms import SelectField, StringField, TextAreaField
from wtforms.validators import Length

from app.admin.base import (
    AdminForm,
    SecureModelView,
    TypeAccessMixin,
    actor,
    current_scope,
    per_request,
    select_choices,
)
from app.admin.choices import parse_target, target_choices
from app.admin.decisions import DecideForm
from app.admin.display import STATUS_BADGE, article, dn, dn_string, live
from app.admin.filters import AGE_OPTIONS, MonthFilter, PendingAgeFilter, month_options
from app.extensions import db
from app.models import CertificateRequest, CertType, RequestStatus
from app.services.certificates import approvals, enrollment
from app.services.scope import Scope


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
        "Subject alternative names (one per line: DNS names or IP addresses; email addresses for Client, URIs for Device certificates)",
        validators=[Length(max=20000)],
    )
    requester_email = StringField("Requester email", validators=[Length(max=254)])
    external_requesters = TextAreaField(
        "External requesters (emails, one per line; they get the collection email)",
        validators=[Length(max=5000)],
    )
    auto_renew = SelectField("Auto renew", choices=select_choices([("off", "Off"), ("on", "On")]))
    renew_days_before = StringField(
        "Renew this many days before expiry",
        default="30",
        description="With auto-renew: at most half the term (45 of 90 days).",
    )
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
    record_noun = "Request"
    search_hint = "Search by common name or requester email"

    def _status(view: Any, context: Any, model: CertificateRequest, name: str) -> Markup:
        html = live(url_for(".status_view"), model.id, view.live_state(model))
        if model.status == RequestStatus.REQUESTED:
            html += Markup(
                ' <a class="btn btn-sm btn-outline-primary" href="{}">Approve / decline</a>'
            ).format(url_for(".decide_view", id=model.id))
        if model.status == RequestStatus.FAILED:
            reason = model.failure_reason or "no reason recorded"
            short = reason if len(reason) <= 120 else reason[:117] + "..."
            html += Markup(' <span class="text-danger small" title="{}">{}</span>').format(
                reason, short
            )
            html += Markup(
                ' <form method="post" action="{}" class="d-inline">'
                '<input type="hidden" name="csrf_token" value="{}">'
                '<input type="hidden" name="id" value="{}">'
                '<button class="btn btn-sm btn-outline-primary" type="submit">Retry</button>'
                "</form>"
            ).format(url_for(".retry_view"), generate_csrf(), model.id)
        return html

    def _cert_link(view: Any, context: Any, model: CertificateRequest, name: str) -> Markup | str:
        cert_id = getattr(model, name if name != "certificate" else "certificate_id")
        if not cert_id:
            return ""
        return Markup('<a href="{}">certificate #{}</a>').format(view.cert_url(cert_id), cert_id)

    column_formatters = {
        "status": _status,
        "sans": lambda v, c, m, n: ", ".join(m.sans),
        "cert_type": lambda v, c, m, n: m.cert_type.label,
        "subject": lambda v, c, m, n: dn(dn_string(m.subject)),
        "certificate": _cert_link,
        "renewal_of_id": _cert_link,
        "replaces_id": _cert_link,
        "mode": lambda v, c, m, n: "CSR" if m.mode.value == "csr" else "Server-generated key",
        "auto_renew": lambda v, c, m, n: (
            f"On, {m.renew_days_before} days before expiry" if m.auto_renew else "Off"
        ),
        "external_requesters": lambda v, c, m, n: ", ".join(m.external_requesters or []),
    }
    column_labels = {
        "id": "#",
        "cert_type": "Certificate type",
        "mode": "Key source",
        "key_type": "Key type (server-generated)",
        "auto_renew": "Auto-renew",
        "comments": "Comments",
        "created_at": "Requested",
        "decided_at": "Decided",
        "certificate": "Issued certificate",
        "requester_email": "Requester",
        "profile": "Certificate profile",
    }

    @property
    def empty_text(self) -> str:  # type: ignore[override]
        label = self.cert_type.label
        return (
            f"No {label} certificate requests yet. A request names the organization, the "
            "certificate profile and the names; once approved (where the profile asks for it) "
            "it is issued in seconds."
        )

    def empty_actions(self) -> list[tuple[str, str]]:
        label = self.cert_type.label
        return [(f"Request {article(label)} {label} certificate", url_for(".create_view"))]

    def cert_url(self, cert_id: int) -> str:
        return url_for(f"{self.endpoint.removesuffix('_requests')}_certs.details_view", id=cert_id)

    def live_state(self, req: CertificateRequest) -> dict[str, Any]:
        """What the request page shows about the request, updated in place while issuing."""
        status = req.status.value
        state: dict[str, Any] = {
            "state": status,
            "badge": STATUS_BADGE.get(status, "light"),
            "final": req.status != RequestStatus.APPROVED,
        }
        if req.status == RequestStatus.APPROVED:
            state["text"] = "Issuing the certificate…"
        elif req.status == RequestStatus.ISSUED and req.certificate_id:
            state["text"] = "Certificate issued."
            state["links"] = [
                {"href": self.cert_url(req.certificate_id), "label": "Open the certificate"}
            ]
        elif req.status == RequestStatus.FAILED:
            state["text"] = req.failure_reason or "Issuance failed."
        elif req.status == RequestStatus.DECLINED and req.decision_message:
            state["text"] = req.decision_message
        return state

    @expose("/status/")
    def status_view(self) -> Any:
        """Live status of the requests named by ?ids= (only those the admin may see)."""
        ids = [
            int(i)
            for i in request.args.get("ids", "").split(",")[:100]
            if i.isdigit() and len(i) < 19
        ]
        self.record_foreign_ids(ids)
        rows = self.get_query().filter(CertificateRequest.id.in_(ids or [-1])).all()
        return jsonify({str(r.id): self.live_state(r) for r in rows})

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
            ),
            PendingAgeFilter(CertificateRequest.created_at, "Waiting", options=AGE_OPTIONS),
            MonthFilter(
                CertificateRequest.created_at, "Requested", options=per_request(month_options)
            ),
        ]

    def _choices(self, form: RequestForm) -> None:
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
        return self.render(
            self.create_template,
            form=form,
            eula=EULA,
            cert_type=self.cert_type,
            article=article(self.cert_type.label),
        )

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
        req = self.get_one(request.args.get("id"))
        if req is None:
            flash("No such request.", "error")
            return redirect(url_for(".index_view"))
        form = DecideForm()
        if form.validate_on_submit():
            approve = "approve" in request.form
            message = form.message.data or ""

            def decide() -> Any:
                if approve:
                    return approvals.approve(actor=actor(), request_ids=[req.id], message=message)
                return approvals.decline(actor=actor(), request_id=req.id, message=message)

            if self.run_service(
                None,
                decide,
                success=f"Request #{req.id} approved; the certificate is being issued."
                if approve
                else f"Request #{req.id} declined.",
            ):
                return redirect(url_for(".details_view", id=req.id))
        summary = f"#{req.id} {req.common_name} ({', '.join(req.sans)}) for {req.organization.name}{' / ' + req.department.name if req.department else ''}, {req.term_days} days, profile {req.profile.name}, requested by {req.requester_email}"
        return self.render(
            "admin/decide.html",
            form=form,
            item=req,
            title=f"{self.cert_type.label} request",
            summary=summary,
        )

    @expose("/retry/", methods=("POST",))
    def retry_view(self) -> Any:
        req = self.get_one(request.form.get("id", ""))
        if req is None:
            flash("No such request.", "error")
            return redirect(url_for(".index_view"))
        request_id = req.id
        self.run_service(
            None,
            lambda: approvals.retry(actor=actor(), request_ids=[request_id]),
            success=lambda retried: (
                f"Request #{request_id} is queued for issuance again."
                if retried
                else f"Request #{request_id} is already being issued or issued; nothing to retry."
            ),
        )
        return redirect(url_for(".details_view", id=request_id))

    @action("retry", "Retry issuance", "Queue the selected failed requests for issuance again?")
    def action_retry(self, ids: list[str]) -> None:
        visible = [r.id for r in (self.get_one(i) for i in ids) if r is not None]
        self.run_service(
            None,
            lambda: approvals.retry(actor=actor(), request_ids=visible),
            success=lambda retried: f"{len(retried)} failed request(s) queued for issuance again.",
        )

    @action("approve", "Approve", "Approve the selected requests?")
    def action_approve(self, ids: list[str]) -> None:
        visible = [r.id for r in (self.get_one(i) for i in ids) if r is not None]
        self.run_service(
            None,
            lambda: approvals.approve(actor=actor(), request_ids=visible),
            success=lambda approved: f"{len(approved)} request(s) approved; issuance queued.",
        )


def _target(value: str | None) -> tuple[int, int | None]:
    return parse_target(value or "")
