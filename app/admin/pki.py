"""Console: Settings > Private CAs (with the creation wizard) and Certificate Profiles."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, redirect, request, url_for
from flask_admin import expose
from markupsafe import Markup
from sqlalchemy import select
from wtforms import BooleanField, HiddenField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from app.admin.base import (
    AdminForm,
    SecureModelView,
    actor,
    apply_errors,
    current_scope,
    select_choices,
)
from app.admin.choices import COUNTRIES
from app.admin.display import dn
from app.admin.fields import MultiCheckboxField
from app.extensions import db
from app.models import CaStatus, CertificateAuthority, CertType, LintMode
from app.pki import keys
from app.pki.profiles import CaPurpose, default_ca_lifetime_years
from app.services.ca import authorities, profiles, signing
from app.services.errors import DomainError
from app.services.scope import Scope

KEY_TYPE_CHOICES = [(k, k) for k in keys.KEY_TYPES]  # the one vocabulary: app/pki/algorithms.py
HASH_CHOICES = [
    ("", "Default (by key type: ECDSA P-256 SHA-256, P-384 SHA-384; RSA SHA-256)"),
    ("SHA-256", "SHA-256"),
    ("SHA-384", "SHA-384"),
    ("SHA-512", "SHA-512"),
    ("SHA-1", "SHA-1 (legacy, not accepted for signing)"),
]


PURPOSE_CHOICES = [
    (CaPurpose.TLS.value, "TLS (SSL certificates)"),
    (CaPurpose.SMIME.value, "S/MIME (Client certificates)"),
    (CaPurpose.CODE_SIGNING.value, "Code signing"),
    (CaPurpose.DEVICE.value, "Device certificates"),
]


class CaForm(AdminForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=128)])
    parent_id = SelectField(
        "Parent issuer", coerce=str, description="None makes a self-issued root CA."
    )
    key_type = SelectField(
        "Template (key type)",
        choices=select_choices(KEY_TYPE_CHOICES),
        description="Sets the lifetime: root 20 years; issuing CA 5 years for RSA-2048, 10 otherwise.",
    )
    signature_hash = SelectField(
        "Signature hash",
        choices=select_choices(HASH_CHOICES),
        description="What this CA signs with. An ECDSA key fixes it (CA/B Forum BR 7.1.3.2.2); "
        "RSA keys may choose.",
    )
    purpose = SelectField(
        "Purpose (issuing CA)",
        choices=select_choices(PURPOSE_CHOICES),
        description="What the issuing CA issues; it sets the CA certificate's extended key "
        "usage. A root has none.",
    )
    customer_name = StringField(
        "Customer name",
        validators=[DataRequired(), Length(max=128)],
        description="Used as O, and as CN with ' Root CA' / ' Issuing CA' appended.",
    )
    locality = StringField("City", validators=[Length(max=128)])
    state = StringField("State / province", validators=[Length(max=128)])
    country = SelectField("Country", choices=select_choices(COUNTRIES))
    confirmed = HiddenField(default="")


def _ca_status(view: Any, context: Any, model: CertificateAuthority, name: str) -> Markup:
    badge = "success" if model.status == CaStatus.ACTIVE else "secondary"
    return Markup('<span class="badge badge-{}">{}</span>').format(badge, model.status.value)


def _ca_downloads(view: Any, context: Any, model: CertificateAuthority, name: str) -> Markup:
    links = Markup('<a href="{}">.cer</a> · <a href="{}">.pem</a> · <a href="{}">CRL</a>').format(
        url_for("pki.ca_certificate", ca_id=model.id),
        url_for("pki.ca_certificate_pem", ca_id=model.id),
        url_for("pki.crl", ca_id=model.id),
    )
    if model.parent_id is not None and model.revoked_at is None and current_scope().is_master:
        links += Markup(' · <a class="text-danger" href="{}">Revoke</a>').format(
            url_for(".revoke_view", id=model.id)
        )
    return links


def _ca_purpose(view: Any, context: Any, model: CertificateAuthority, name: str) -> str:
    return authorities.purpose_label(model)


def _ca_revocation(view: Any, context: Any, model: CertificateAuthority, name: str) -> str:
    if model.revoked_at is None:
        return ""
    return f"{model.revoked_at:%Y-%m-%d %H:%M:%S} UTC, {model.revocation_reason}"


class CaView(SecureModelView):
    form = CaForm
    record_noun = "CA"
    empty_text = (
        "No private CA yet. Start with a root CA (self-issued, kept offline in spirit), "
        "then an issuing CA under it that signs your certificates."
    )

    def empty_actions(self) -> list[tuple[str, str]]:
        return [("Create your root CA", url_for(".create_view"))] if self.can_create else []

    can_edit = False
    can_delete = False
    column_list = (
        "name",
        "kind_label",
        "purpose",
        "parent",
        "key_type",
        "signature_hash",
        "subject_dn",
        "not_after",
        "status",
        "crl_next_update",
        "downloads",
    )
    column_labels = {
        "kind_label": "Kind",
        "subject_dn": "Subject",
        "not_after": "Valid to",
        "crl_next_update": "CRL next update",
        "signature_hash": "Signature hash",
        "purpose": "Issues",
        "revoked_at": "Revoked",
        "parent": "Parent CA",
        "downloads": "Downloads",
        "created_at": "Created",
    }
    column_details_list = (
        "name",
        "kind_label",
        "purpose",
        "parent",
        "key_type",
        "signature_hash",
        "subject_dn",
        "serial_hex",
        "fingerprint",
        "not_before",
        "not_after",
        "status",
        "revoked_at",
        "crl_number",
        "crl_this_update",
        "crl_next_update",
        "created_at",
        "downloads",
    )
    column_formatters = {
        "status": _ca_status,
        "downloads": _ca_downloads,
        "subject_dn": lambda v, c, m, n: dn(m.subject_dn),
        "purpose": _ca_purpose,
        "revoked_at": _ca_revocation,
    }
    column_sortable_list = ("name", "not_after", "key_type")
    column_default_sort = "id"
    create_template = "admin/ca_wizard.html"

    def scope_clause(self, scope: Scope) -> Any:
        return None  # CA certificates are public; only an MRAO changes anything

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return current_scope().is_master

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        parents = db.session.execute(
            select(CertificateAuthority)
            .where(CertificateAuthority.status == CaStatus.ACTIVE)
            .order_by(CertificateAuthority.name)
        ).scalars()
        form.parent_id.choices = select_choices(
            [("", "None (root CA)"), *((str(c.id), f"{c.name} ({c.kind_label})") for c in parents)]
        )
        return form

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        """Wizard: the form, then a confirmation of what will be created, then creation."""
        if not self.can_create:
            return redirect(url_for(".index_view"))
        form = self.create_form()
        if request.method == "POST" and form.validate():
            spec = authorities.CaSpec(
                name=form.name.data or "",
                key_type=form.key_type.data,
                customer_name=form.customer_name.data or "",
                parent_id=int(form.parent_id.data) if form.parent_id.data else None,
                signature_hash=form.signature_hash.data or None,
                locality=form.locality.data or "",
                state=form.state.data or "",
                country=form.country.data or "",
                purpose=form.purpose.data or CaPurpose.TLS.value,
            )
            if form.confirmed.data != "yes":
                try:
                    # Every check before the confirmation step; the hash the CA will use.
                    chosen = authorities.check_spec(spec)
                except DomainError as exc:
                    apply_errors(form, exc)
                    return self.render(self.create_template, form=form, confirm=None)
                form.confirmed.data = "yes"
                return self.render(
                    self.create_template, form=form, confirm=_preview(spec, chosen.value)
                )
            created = self.run_service(
                form, lambda: authorities.create_ca(actor=actor(), spec=spec)
            )
            if created:
                flash(f"Created the CA '{created.name}' ({created.kind_label}).", "success")
                return redirect(url_for(".details_view", id=created.id))
            form.confirmed.data = ""
        return self.render(self.create_template, form=form, confirm=None)

    @expose("/revoke/", methods=("GET", "POST"))
    def revoke_view(self) -> Any:
        """Revoke an issuing CA (MRAO): its parent's CRL lists it at once."""
        authority = self.get_one(request.values.get("id"))
        if authority is None or not current_scope().is_master:
            return redirect(url_for(".index_view"))
        form = CaRevokeForm()
        form.reason.choices = select_choices(authorities.revocation_reason_choices())
        if form.validate_on_submit() and self.run_service(
            form,
            lambda: authorities.revoke_ca(
                actor=actor(),
                ca_id=authority.id,
                reason=form.reason.data,
                message=form.message.data or "",
            ),
            success=f"The CA '{authority.name}' was revoked; its parent's CRL lists it.",
        ):
            return redirect(url_for(".details_view", id=authority.id))
        return self.render("admin/ca_revoke.html", form=form, authority=authority)

    @expose("/retire/", methods=("POST",))
    def retire_view(self) -> Any:
        authority = self.get_one(request.form.get("id"))
        if authority is not None:
            self.run_service(None, lambda: authorities.retire_ca(actor=actor(), ca_id=authority.id))
        return redirect(url_for(".index_view"))


class CaRevokeForm(AdminForm):
    reason = SelectField("Reason (RFC 5280, CA/B Forum BR 7.2.2)")
    message = TextAreaField("Message (kept in the audit log)", validators=[Length(max=2000)])


def _preview(spec: authorities.CaSpec, chosen: str) -> dict[str, str]:
    parent = db.session.get(CertificateAuthority, spec.parent_id) if spec.parent_id else None
    key_type = keys.parse_key_type(spec.key_type)
    years = default_ca_lifetime_years(key_type, is_root=parent is None)
    suffix = "Root CA" if parent is None else "Issuing CA"
    subject = f"CN={spec.customer_name} {suffix}, O={spec.customer_name}"
    for label, value in (("L", spec.locality), ("ST", spec.state), ("C", spec.country)):
        if value:
            subject += f", {label}={value}"
    lifetime = f"{years} years" + (
        f" (cut to the parent's expiry, {parent.not_after:%Y-%m-%d}, if sooner)" if parent else ""
    )
    own = signing.urls("<id>")
    return {
        "Name": spec.name,
        "Kind": suffix,
        "Parent": parent.name if parent else "none (self-issued)",
        "Key": spec.key_type,
        "Signature hash": chosen
        + (f" (the parent signs this certificate with {parent.signature_hash})" if parent else ""),
        **({"Issues": CaPurpose(spec.purpose).label} if parent else {}),
        "Subject": subject,
        "Lifetime": lifetime,
        "URLs in this certificate": (
            _url_lines(signing.urls(parent.id))
            if parent
            else "none (a root names no CRL, OCSP or issuer URL)"
        ),
        "URLs in the certificates it issues": _url_lines(own)
        + f" (<id> is this CA's number; from {_pki_url_source()}, {signing.pki_url()})",
    }


def _pki_url_source() -> str:
    return "CW_PKI_URL" if current_app.config.get("CW_PKI_URL") else "CW_BASE_URL"


def _url_lines(urls: dict[str, str]) -> str:
    return f"CRL {urls['crl_url']} · OCSP {urls['ocsp_url']} · CA issuers {urls['ca_issuers_url']}"


class ProfileForm(AdminForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=128)])
    description = TextAreaField("Description", validators=[Length(max=2000)])
    cert_type = SelectField("Type", choices=select_choices((t.value, t.label) for t in CertType))
    ca_id = SelectField("Enrolling backend (issuing CA)", coerce=int)
    terms = StringField(
        "Allowed terms (days)",
        validators=[DataRequired()],
        description="Comma separated, e.g. 90, 199",
    )
    key_types = MultiCheckboxField("Allowed key types", choices=select_choices(KEY_TYPE_CHOICES))
    requires_approval = BooleanField("Requests need approval", default=True)
    four_eyes = BooleanField("Four eyes (the requester cannot approve)")
    allow_key_reuse = BooleanField("Renewals may reuse the key", default=True)
    include_client_auth = BooleanField("SSL: add clientAuth to the extended key usage")
    include_server_auth = BooleanField("Device: add serverAuth to the extended key usage")
    key_escrow = BooleanField(
        "Client: escrow the key (sealed under the KEK; an MRAO may export it, audited)"
    )
    pkcs12_legacy = BooleanField(
        "Client: legacy PKCS#12 (3DES and SHA-1, weak) for old Windows and macOS importers"
    )
    lint_mode = SelectField(
        "Lint before signing",
        choices=select_choices(
            [
                (LintMode.EVERY.value, "Every certificate"),
                (LintMode.SAMPLE.value, "The first after a change, then one in N"),
            ]
        ),
    )
    lint_sample_n = IntegerField(
        "N (sampling)", default=100, validators=[Optional(), NumberRange(min=1, max=100000)]
    )
    active = BooleanField("Active", default=True)
    acme_slug = StringField(
        "ACME directory name",
        validators=[Length(max=63)],
        description="SSL profiles only: set it (e.g. tls-servers) to serve an ACME directory "
        "at /acme/<name>/directory; empty: no ACME",
    )


def _profile_data(form: Any) -> profiles.ProfileData:
    return profiles.ProfileData(
        name=form.name.data or "",
        description=form.description.data or "",
        cert_type=CertType(form.cert_type.data),
        ca_id=form.ca_id.data or 0,
        terms=profiles.parse_terms(form.terms.data or ""),
        key_types=tuple(form.key_types.data or ()),
        requires_approval=form.requires_approval.data,
        four_eyes=form.four_eyes.data,
        allow_key_reuse=form.allow_key_reuse.data,
        include_client_auth=form.include_client_auth.data,
        include_server_auth=form.include_server_auth.data,
        key_escrow=form.key_escrow.data,
        pkcs12_legacy=form.pkcs12_legacy.data,
        lint_mode=LintMode(form.lint_mode.data),
        lint_sample_n=form.lint_sample_n.data or 100,
        active=form.active.data,
        acme_slug=form.acme_slug.data or "",
    )


class CertificateProfileView(SecureModelView):
    form = ProfileForm
    record_noun = "Profile"
    empty_text = (
        "No certificate profiles yet. A profile ties a certificate type to an issuing CA, "
        "with the terms, key types and approval rules requests must follow."
    )
    column_list = (
        "name",
        "cert_type",
        "ca",
        "terms_label",
        "key_types",
        "requires_approval",
        "four_eyes",
        "lint_mode",
        "active",
    )
    column_labels = {
        "cert_type": "Type",
        "ca": "Issuing CA",
        "terms_label": "Terms",
        "key_types": "Key types",
        "requires_approval": "Needs approval",
        "lint_mode": "Lint before signing",
        "four_eyes": "Four eyes",
        "active": "Active",
    }
    column_formatters = {
        "cert_type": lambda v, c, m, n: m.cert_type.label,
        "key_types": lambda v, c, m, n: ", ".join(m.key_types or []),
    }
    column_default_sort = "name"

    def scope_clause(self, scope: Scope) -> Any:
        return None  # profiles are account-wide settings; only an MRAO changes them

    @property
    def can_create(self) -> bool:  # type: ignore[override]
        return current_scope().is_master

    can_edit = can_create
    can_delete = can_create

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        cas = db.session.execute(
            select(CertificateAuthority)
            .where(
                CertificateAuthority.status == CaStatus.ACTIVE,
                CertificateAuthority.parent_id.is_not(None),
            )
            .order_by(CertificateAuthority.name)
        ).scalars()
        # Each CA with what it issues: a profile's type must be one its CA's purpose covers.
        form.ca_id.choices = select_choices(
            (c.id, f"{c.name} (issues {authorities.purpose_label(c)})") for c in cas
        )
        if obj is not None and request.method == "GET":
            form.terms.data = ", ".join(str(t) for t in obj.terms)
            form.key_types.data = list(obj.key_types)
            form.cert_type.data = obj.cert_type.value
            form.lint_mode.data = obj.lint_mode.value
        return form

    def _data(self, form: Any) -> Any:
        try:
            return _profile_data(form)
        except DomainError as exc:
            apply_errors(form, exc)
            return None

    def create_model(self, form: Any) -> Any:
        data = self._data(form)
        return data is not None and self.run_service(
            form, lambda: profiles.create_profile(actor=actor(), data=data)
        )

    def update_model(self, form: Any, model: Any) -> Any:
        data = self._data(form)
        return data is not None and self.run_service(
            form, lambda: profiles.update_profile(actor=actor(), profile_id=model.id, data=data)
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(
            None, lambda: profiles.delete_profile(actor=actor(), profile_id=model.id)
        )
