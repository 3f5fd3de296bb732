"""Console: Certificates > Persons and Invitations (client certificates for end users):
add, edit (confirming the revocation it causes), delete, CSV import, send, resend and
revoke invitations."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup
from sqlalchemy import select
from wtforms import (
    BooleanField,
    FileField,
    PasswordField,
    SelectField,
    StringField,
    TextAreaField,
)
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
from app.admin.choices import org_choices, parse_target, target_choices
from app.admin.display import badge, local_time
from app.downloads import attachment
from app.extensions import db
from app.models import (
    CertificateProfile,
    CertType,
    DelegationStatus,
    Domain,
    Invitation,
    InvitationStatus,
    Person,
    ValidationType,
)
from app.models.types import utcnow
from app.services.errors import DomainError
from app.services.persons import imports, invitations, persons
from app.services.scope import Scope


class PersonForm(AdminForm):
    target = SelectField("Organization / department", validate_choice=False)
    email = StringField("Email", validators=[Length(max=254)])
    domain_id = SelectField(
        "Domain", validate_choice=False, description="Empty: the delegated domain of the email"
    )
    first_name = StringField("First name", validators=[Length(max=64)])
    middle_name = StringField("Middle name", validators=[Length(max=64)])
    last_name = StringField("Last name", validators=[Length(max=64)])
    alt_emails = TextAreaField(
        "Alternative emails (one per line; each inside a delegated domain)",
        validators=[Length(max=3000)],
    )
    validation_type = SelectField(
        "Validation type",
        choices=select_choices(
            [
                (ValidationType.STANDARD.value, "Standard (the mailbox: S/MIME mailbox-validated)"),
                (ValidationType.HIGH.value, "High (the person's name too: individual-validated)"),
            ]
        ),
    )
    phone = StringField("Phone", validators=[Length(max=32)])
    secret_id = PasswordField(
        "Secret id",
        validators=[Length(max=128)],
        description="Asked of the person at registration when set; never shown back. Empty keeps the current one.",
    )
    clear_secret_id = BooleanField("Remove the secret id")
    confirm_revoke = BooleanField(
        "Revoke this person's valid certificates (superseded) if the changes require it"
    )


def _alt(text: str | None) -> list[str]:
    return [a.strip() for a in (text or "").replace(",", "\n").splitlines() if a.strip()]


def _data(form: PersonForm) -> persons.PersonData:
    org_id, dept_id = parse_target(form.target.data or "")
    domain = form.domain_id.data or ""
    return persons.PersonData(
        organization_id=org_id,
        department_id=dept_id,
        domain_id=int(domain) if domain.isdigit() else None,
        email=form.email.data or "",
        first_name=form.first_name.data or "",
        middle_name=form.middle_name.data or "",
        last_name=form.last_name.data or "",
        alt_emails=_alt(form.alt_emails.data),
        validation_type=ValidationType(form.validation_type.data or "Standard"),
        phone=form.phone.data or "",
        secret_id=form.secret_id.data or "",
        clear_secret_id=bool(form.clear_secret_id and form.clear_secret_id.data),
    )


def _invitation_state(invitation: Invitation) -> str:
    if invitation.status == InvitationStatus.PENDING and invitation.expires_at <= utcnow():
        return "Expired"
    return invitation.status.value


class PersonView(TypeAccessMixin, SecureModelView):
    cert_type = CertType.CLIENT
    form = PersonForm
    record_noun = "Person"
    empty_text = (
        "No persons yet. A person is an end user of client certificates: add them here or "
        "import a CSV file, then send them an invitation to the enrollment portal."
    )
    search_hint = "Search by email or name"

    def record_label(self, model: Any) -> str:
        return str(model.email)

    field_map = {
        "organization": "target",
        "department": "target",
        "domain": "domain_id",
        "sans": "email",
    }
    column_list = (
        "email",
        "first_name",
        "last_name",
        "organization",
        "department",
        "validation_type",
        "created_at",
    )
    column_labels = {
        "first_name": "First name",
        "last_name": "Last name",
        "validation_type": "Validation",
        "created_at": "Added",
    }
    column_searchable_list = ("email", "first_name", "last_name")
    column_sortable_list = ("email", "first_name", "last_name", "created_at")
    column_default_sort = "email"
    details_template = "admin/person_details.html"
    list_template = "admin/person_list.html"

    def scope_clause(self, scope: Scope) -> Any:
        return persons.persons_clause(scope)

    def get_filters(self) -> Any:
        return [
            FilterEqual(Person.organization_id, "Organization", options=per_request(org_choices)),
            FilterEqual(
                Person.validation_type,
                "Validation",
                options=[(v.value, v.value) for v in ValidationType],
            ),
        ]

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        scope = current_scope()
        places = [
            (value, label)
            for value, label in target_choices()
            if scope.may(CertType.CLIENT, *parse_target(value))
        ]
        form.target.choices = select_choices(places)
        domains = db.session.execute(
            select(Domain).where(Domain.active.is_(True)).order_by(Domain.name)
        ).scalars()
        form.domain_id.choices = select_choices(
            [("", "— from the email —"), *((str(d.id), d.name) for d in domains if _sees(d))]
        )
        if obj is None:
            del form.confirm_revoke
            del form.clear_secret_id
        elif request.method == "GET":
            form.target.data = (
                f"d:{obj.department_id}" if obj.department_id else f"o:{obj.organization_id}"
            )
            form.domain_id.data = str(obj.domain_id)
            form.alt_emails.data = "\n".join(obj.alt_emails or [])
            form.validation_type.data = obj.validation_type.value
        return form

    def create_model(self, form: Any) -> Any:
        return self.run_service(
            form, lambda: persons.create_person(actor=actor(), data=_data(form))
        )

    def update_model(self, form: Any, model: Any) -> Any:
        return self.run_service(
            form,
            lambda: persons.update_person(
                actor=actor(),
                person_id=model.id,
                data=_data(form),
                confirmed=bool(form.confirm_revoke.data),
            ),
        )

    def delete_model(self, model: Any) -> Any:
        return self.run_service(
            None, lambda: persons.delete_person(actor=actor(), person_id=model.id)
        )

    @expose("/details/")
    def details_view(self) -> Any:
        person = self.get_one(request.args.get("id"))
        if person is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        sent = db.session.execute(
            select(Invitation)
            .where(Invitation.person_id == person.id)
            .order_by(Invitation.id.desc())
        ).scalars()
        return self.render(
            self.details_template,
            person=person,
            invitations=[(i, _invitation_state(i)) for i in sent],
            certificates=persons.valid_certificates(person.id),
            badge=badge,
            local_time=local_time,
        )

    @expose("/invite/", methods=("GET", "POST"))
    def invite_view(self) -> Any:
        person = self.get_one(request.values.get("id"))
        if person is None:
            flash("Record does not exist.", "error")
            return redirect(url_for(".index_view"))
        form = InviteForm()
        profiles = _client_profiles()
        form.profile_id.choices = select_choices(
            (p.id, f"{p.name} (terms: {p.terms_label}; keys: {', '.join(p.key_types)})")
            for p in profiles
        )
        form.term_days.choices = select_choices(
            (t, f"{t} days") for t in sorted({t for p in profiles for t in p.terms})
        )
        form.key_type.choices = select_choices(
            (k, k) for k in sorted({k for p in profiles for k in p.key_types})
        )
        if request.method == "GET" and profiles:  # preselect the first profile's choices
            form.profile_id.data = profiles[0].id
            form.term_days.data = str(sorted(profiles[0].terms)[0])
            form.key_type.data = profiles[0].key_types[0]
        if form.validate_on_submit() and self.run_service(
            form,
            lambda: invitations.send_invitation(
                actor=actor(),
                person_id=person.id,
                profile_id=int(form.profile_id.data or 0),
                term_days=int(form.term_days.data or 0)
                if str(form.term_days.data).isdigit()
                else 0,
                key_type=form.key_type.data or "",
            ),
            success=lambda inv: (
                f"Invitation sent to {person.email}; the code is valid until {local_time(inv.expires_at)}."
            ),
        ):
            return redirect(url_for(".details_view", id=person.id))
        return self.render("admin/person_invite.html", form=form, person=person)

    @expose("/invitation/", methods=("POST",))
    def invitation_view(self) -> Any:
        form = AdminForm()
        invitation_id = request.form.get("invitation_id", "")
        op = request.form.get("op", "")
        back = url_for(".details_view", id=request.form.get("id", ""))
        if (
            not form.validate_on_submit()
            or not invitation_id.isdigit()
            or op not in ("resend", "revoke")
        ):
            return redirect(back)
        fn = invitations.resend_invitation if op == "resend" else invitations.revoke_invitation
        self.run_service(
            None,
            lambda: fn(actor=actor(), invitation_id=int(invitation_id)),
            success="A new invitation was sent; the previous code no longer works."
            if op == "resend"
            else "The invitation was revoked.",
        )
        return redirect(back)

    @expose("/import/", methods=("GET", "POST"))
    def import_view(self) -> Any:
        form = ImportForm()
        report = None
        if form.validate_on_submit():
            upload = request.files.get("file")
            data = upload.read(imports.MAX_BYTES + 1) if upload and upload.filename else b""
            try:
                report = imports.import_csv(
                    actor=actor(),
                    data=data,
                    keep_good_lines=bool(form.keep_good_lines.data),
                    revoke_on_update=bool(form.revoke_on_update.data),
                )
                db.session.commit()
                flash(f"Import: {report.summary()}.", "success")
            except imports.ImportRefused as exc:
                db.session.rollback()
                report = exc.report
                flash(f"Import: {report.summary()}.", "error")
            except DomainError as exc:
                db.session.rollback()
                form.file.errors = [exc.message]
        return self.render("admin/person_import.html", form=form, report=report)

    @expose("/template.csv")
    def template_view(self) -> Any:
        return attachment(
            imports.TEMPLATE.encode(), filename="persons-template.csv", mimetype="text/csv"
        )


def _sees(domain: Domain) -> bool:
    scope = current_scope()
    return any(
        d.client
        and d.status == DelegationStatus.APPROVED
        and scope.may(CertType.CLIENT, d.organization_id, d.department_id)
        for d in domain.delegations
    )


def _client_profiles() -> list[CertificateProfile]:
    return list(
        db.session.execute(
            select(CertificateProfile)
            .where(
                CertificateProfile.cert_type == CertType.CLIENT,
                CertificateProfile.active.is_(True),
            )
            .order_by(CertificateProfile.name)
        ).scalars()
    )


class InviteForm(AdminForm):
    profile_id = SelectField("Certificate profile", coerce=int, validate_choice=False)
    term_days = SelectField("Term", validate_choice=False)
    key_type = SelectField("Key type (generated on the server)", validate_choice=False)


class ImportForm(AdminForm):
    file = FileField("CSV file (UTF-8, header line, at most 5000 lines)")
    keep_good_lines = BooleanField("Import the good lines even if some are refused")
    revoke_on_update = BooleanField(
        "Updating a person with valid certificates revokes them (superseded)"
    )


class InvitationView(TypeAccessMixin, SecureModelView):
    cert_type = CertType.CLIENT
    record_noun = "Invitation"
    empty_text = (
        "No invitations yet. Send one from a person's page (Client Persons): it mails a "
        "one-time code for the enrollment portal."
    )
    can_create = False
    can_edit = False
    can_delete = False
    column_list = (
        "person",
        "kind",
        "status",
        "profile",
        "term_days",
        "key_type",
        "expires_at",
        "created_at",
    )
    column_labels = {
        "person": "Person (email)",
        "profile": "Certificate profile",
        "term_days": "Term (days)",
        "key_type": "Key",
        "expires_at": "Expires",
        "created_at": "Sent",
    }
    column_sortable_list = ("status", "expires_at", "created_at")
    column_default_sort = ("created_at", True)
    column_formatters = {
        "status": lambda v, c, m, n: badge(_invitation_state(m)),
        "person": lambda v, c, m, n: Markup('<a href="{}">{}</a>').format(
            url_for("persons.details_view", id=m.person_id), m.person.email
        ),
    }

    def scope_clause(self, scope: Scope) -> Any:
        clause = persons.persons_clause(scope)
        if clause is None:
            return None
        return Invitation.person_id.in_(select(Person.id).where(clause))

    def get_filters(self) -> Any:
        return [
            FilterEqual(
                Invitation.status, "Status", options=[(s.value, s.value) for s in InvitationStatus]
            )
        ]

    @action("resend", "Resend", "Send new codes (the current ones stop working)?")
    def action_resend(self, ids: list[str]) -> None:
        self._each(ids, invitations.resend_invitation, "resent")

    @action("revoke", "Revoke", "Revoke the selected invitations?")
    def action_revoke(self, ids: list[str]) -> None:
        self._each(ids, invitations.revoke_invitation, "revoked")

    def _each(self, ids: list[str], fn: Any, done: str) -> None:
        visible = [i.id for i in (self.get_one(x) for x in ids) if i is not None]
        self.run_service(
            None,
            lambda: [fn(actor=actor(), invitation_id=i) for i in visible],
            success=lambda items: f"{len(items)} invitation(s) {done}.",
        )
