"""Console: Settings > ACME accounts: the EAB keys ACME clients register with (create,
shown once with the client commands; revoke), and the accounts registered with them, each
with its orders and certificates (AcmeAccountView)."""

from __future__ import annotations

from typing import Any

from flask import flash, g, redirect, request, url_for
from flask_admin import expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.filters import FilterEqual
from markupsafe import Markup
from sqlalchemy import select
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from app.admin.base import AdminForm, SecureModelView, actor, current_scope, select_choices
from app.admin.choices import parse_target, target_choices
from app.admin.display import local_time
from app.extensions import db
from app.ids import parse_id
from app.models import AcmeAccount, AcmeExternalKey, CertificateProfile, CertType
from app.services.acme import accounts, external_keys
from app.services.errors import DomainError
from app.services.scope import Scope


class AcmeKeyForm(AdminForm):
    label = StringField(
        "Label",
        validators=[Length(max=128)],
        description="What the key is for, e.g. 'web servers of the Berlin office'",
    )
    target = SelectField(
        "Organization / department",
        validators=[DataRequired()],
        validate_choice=False,
        description="Accounts registered with this key order certificates for names "
        "delegated here (SSL)",
    )


def _status(view: Any, context: Any, model: AcmeExternalKey, name: str) -> str:
    return "Revoked" if model.is_revoked else "Active"


def _key_accounts(view: Any, context: Any, model: AcmeExternalKey, name: str) -> Any:
    url = url_for("acme_accounts.index_view", flt0_eab_key_equals=model.id)
    return Markup('<a href="{}">accounts</a>').format(url)


def directories() -> list[tuple[str, str]]:
    """(profile name, directory URL) of every active ACME-enabled profile."""
    rows = db.session.execute(
        select(CertificateProfile)
        .where(CertificateProfile.acme_slug.is_not(None), CertificateProfile.active.is_(True))
        .order_by(CertificateProfile.name)
    ).scalars()
    return [(p.name, url_for("acme.directory", slug=p.acme_slug, _external=True)) for p in rows]


class AcmeKeyView(SecureModelView):
    record_noun = "ACME key"
    empty_text = (
        "No ACME keys yet. An ACME client (certbot, lego, acme.sh) registers an account with "
        "an external account binding key created here; the account then orders certificates "
        "for the names delegated to the key's organization or department."
    )
    column_list = (
        "key_id",
        "label",
        "organization",
        "department",
        "status",
        "created_at",
        "revoked_at",
        "accounts",
    )
    column_labels = {
        "key_id": "EAB key id",
        "label": "What it is for",
        "status": "Status",
        "revoked_at": "Revoked",
        "accounts": "Registered accounts",
    }
    column_formatters = {"status": _status, "accounts": _key_accounts}
    column_searchable_list = ("key_id", "label")
    column_default_sort = ("created_at", True)
    column_details_list = column_list
    can_edit = False
    can_delete = False

    def scope_clause(self, scope: Scope) -> Any:
        return scope.row_filter(AcmeExternalKey.organization_id, AcmeExternalKey.department_id)

    def menu_links(self) -> list[tuple[str, str, str]]:
        return [("Registered accounts", url_for("acme_accounts.index_view"), "cw-acme-accounts")]

    def get_create_form(self) -> Any:
        return AcmeKeyForm

    def prepare_form(self, form: Any, obj: Any = None) -> Any:
        form.target.choices = select_choices(target_choices())
        return form

    @expose("/new/", methods=("GET", "POST"))
    def create_view(self) -> Any:
        """The HMAC key is shown on the page that answers the creation, once: it is never
        stored readable, put in a flash (a cookie) or shown again."""
        form = self.prepare_form(AcmeKeyForm())
        if request.method == "POST" and form.validate():
            org_id, dept_id = parse_target(form.target.data or "")
            created = self.run_service(
                form,
                lambda: external_keys.create_key(
                    actor=actor(),
                    organization_id=org_id,
                    department_id=dept_id,
                    label=form.label.data or "",
                ),
            )
            if created:
                return self.render(
                    "admin/acme_key_created.html",
                    key=created.key,
                    hmac_key=created.hmac_key,
                    directories=directories(),
                )
        return self.render(
            "admin/model/create.html",
            form=form,
            form_opts=None,
            return_url=url_for(".index_view"),
        )

    @action("revoke", "Revoke", "Revoke the selected ACME keys? Their accounts stop working.")
    def action_revoke(self, ids: list[str]) -> None:
        done = 0
        for raw in ids:
            key_id = parse_id(raw)
            if key_id is None:
                continue
            try:
                external_keys.revoke_key(actor=actor(), key_id=key_id)
                db.session.commit()
                done += 1
            except DomainError as exc:
                db.session.rollback()
                flash(exc.message, "error")
        if done:
            flash(f"{done} ACME key{'s' if done != 1 else ''} revoked.", "success")

    def is_action_allowed(self, name: str) -> bool:
        if name == "revoke":
            return bool(current_scope().is_master or current_scope().orgs or current_scope().depts)
        return bool(super().is_action_allowed(name))


def _account_key(view: Any, context: Any, model: AcmeAccount, name: str) -> Any:
    key = model.external_key
    url = url_for("acme_keys.details_view", id=key.id)
    state = " (revoked)" if key.is_revoked else ""
    return Markup('<a href="{}"><code>{}</code></a>{}').format(url, key.key_id, state)


def _account_orders(view: Any, context: Any, model: AcmeAccount, name: str) -> Any:
    count = g.get("cw_acme_order_counts", {}).get(model.id, 0)
    url = url_for("acme_accounts.details_view", id=model.id) + "#cw-acme-orders"
    return Markup('<a href="{}">{}</a>').format(url, count)


class AcmeAccountView(SecureModelView):
    """The ACME accounts registered with the EAB keys the admin sees (SSL privilege where
    the account is placed), each with its orders, their certificates and client."""

    record_noun = "ACME account"
    empty_text = (
        "No ACME account yet. An ACME client registers one with an EAB key from "
        "Settings > ACME accounts; it then shows here with its orders and certificates."
    )
    column_list = (
        "id",
        "organization",
        "department",
        "external_key",
        "status",
        "contact",
        "thumbprint",
        "created_at",
        "last_used_at",
        "user_agent",
        "orders",
    )
    column_labels = {
        "external_key": "EAB key id",
        "status": "Status",
        "contact": "Contact addresses",
        "thumbprint": "Key thumbprint (RFC 7638)",
        "last_used_at": "Last used",
        "user_agent": "Client (user agent at registration)",
        "orders": "Orders made",
    }
    column_formatters = {
        "external_key": _account_key,
        "contact": lambda v, c, m, n: ", ".join(m.contact or []),
        "thumbprint": lambda v, c, m, n: Markup("<code>{}</code>").format(m.thumbprint),
        "last_used_at": lambda v, c, m, n: local_time(m.last_used_at) if m.last_used_at else "",
        "orders": _account_orders,
    }
    column_searchable_list = ("thumbprint", "user_agent")
    search_hint = "Search by key thumbprint or client"
    column_sortable_list = ("id", "status", "created_at", "last_used_at")
    column_default_sort = ("id", True)
    named_filter_urls = True
    details_template = "admin/acme_account_details.html"
    can_create = False
    can_edit = False
    can_delete = False

    def get_filters(self) -> Any:
        return [
            FilterEqual(AcmeAccount.external_key_id, "EAB key"),
            FilterEqual(
                AcmeAccount.status,
                "Status",
                options=(("valid", "valid"), ("deactivated", "deactivated")),
            ),
        ]

    def scope_clause(self, scope: Scope) -> Any:
        return scope.type_filter(
            AcmeAccount.organization_id, AcmeAccount.department_id, CertType.SSL
        )

    def menu_links(self) -> list[tuple[str, str, str]]:
        return [("EAB keys", url_for("acme_keys.index_view"), "cw-acme-keys")]

    def prepare_rows(self, rows: list[Any]) -> None:
        g.cw_acme_order_counts = accounts.order_counts([row.id for row in rows])

    @expose("/details/")
    def details_view(self) -> Any:
        account = self.get_one(request.args.get("id"))
        if account is None:
            flash("That ACME account does not exist or is not yours to see.", "error")
            return redirect(url_for(".index_view"))
        return self.render(
            self.details_template,
            account=account,
            lines=accounts.order_lines(account_id=account.id, limit=ORDERS_SHOWN),
            shown=ORDERS_SHOWN,
        )


ORDERS_SHOWN = 100  # the details page lists the latest orders; the inventory has them all
