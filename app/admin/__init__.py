"""The admin console (Flask-Admin), built per app when its process first serves a request
(app.ensure_console). Flask-Admin and the views are imported there, not with this package:
a command-line call, which serves no page, never pays for them."""

from __future__ import annotations

from typing import Any

from flask import Flask


def init_console(app: Flask) -> Any:
    from flask_admin import Admin as Console
    from flask_admin.theme import Bootstrap4Theme

    from app.admin.acme import AcmeAccountView, AcmeKeyView
    from app.admin.admins import AdminView
    from app.admin.certificates import CertificateView, OtherCertificateView
    from app.admin.dashboard import DashboardView
    from app.admin.discovery.agents import ScanAgentView
    from app.admin.discovery.assets import NetworkAssetView
    from app.admin.discovery.rules import AssignmentRuleView
    from app.admin.discovery.tasks import DiscoveryTaskView
    from app.admin.display import base_url_mismatch
    from app.admin.domains import DelegationView, DomainView
    from app.admin.errors import init_error_pages
    from app.admin.imports import ImportView
    from app.admin.notifications import (
        NotificationRuleView,
        NotificationWebhookView,
        SentNotificationView,
    )
    from app.admin.orgs import DepartmentView, OrganizationView
    from app.admin.persons import InvitationView, PersonView
    from app.admin.pki import CaView, CertificateProfileView
    from app.admin.planner import ValidityPlannerView
    from app.admin.report_schedules import ScheduledReportsView
    from app.admin.reports import ReportsView
    from app.admin.requests import RequestView
    from app.admin.system import AboutView, AuditView, JobView, MyProfileView, OutboxView
    from app.models import (
        AcmeAccount,
        AcmeExternalKey,
        Admin,
        AuditEvent,
        CertificateAuthority,
        CertificateProfile,
        CertType,
        Delegation,
        Department,
        Domain,
        Invitation,
        Job,
        Organization,
        OutboxMessage,
        Person,
    )

    app.jinja_env.globals["cw_base_url_mismatch"] = base_url_mismatch
    cert_types = (CertType.SSL, CertType.CLIENT, CertType.DEVICE, CertType.CODE_SIGNING)
    console = Console(
        app,
        name="Certwright",
        theme=Bootstrap4Theme(base_template="admin/cw_base.html", fluid=True),
        index_view=DashboardView(name="Dashboard", url="/admin"),
    )
    for cert_type in cert_types:
        label, key = cert_type.label, cert_type.value
        console.add_view(
            CertificateView(
                cert_type,
                name=f"{label} Certificates",
                category="Certificates",
                endpoint=f"{key}_certs",
            )
        )
        console.add_view(
            RequestView(
                cert_type,
                name=f"{label} Requests",
                category="Certificates",
                endpoint=f"{key}_requests",
            )
        )
        if cert_type == CertType.CLIENT:  # the end users of client certificates
            console.add_view(
                PersonView(
                    Person, name="Client Persons", category="Certificates", endpoint="persons"
                )
            )
            console.add_view(
                InvitationView(
                    Invitation,
                    name="Client Invitations",
                    category="Certificates",
                    endpoint="invitations",
                )
            )
    console.add_view(
        OtherCertificateView(
            name="Other Certificates (CA, untyped)", category="Certificates", endpoint="other_certs"
        )
    )
    console.add_view(ImportView(name="Import", category="Certificates", endpoint="cert_import"))
    console.add_view(
        NetworkAssetView(name="Network Assets", category="Discovery", endpoint="network_assets")
    )
    console.add_view(
        DiscoveryTaskView(
            name="Network Discovery Tasks", category="Discovery", endpoint="discovery_tasks"
        )
    )
    console.add_view(
        AssignmentRuleView(
            name="Assignment Rules", category="Discovery", endpoint="assignment_rules"
        )
    )
    console.add_view(ScanAgentView(name="Agents", category="Discovery", endpoint="scan_agents"))
    console.add_view(ReportsView(name="Run a Report", category="Reports", endpoint="reports"))
    console.add_view(
        ScheduledReportsView(
            name="Scheduled Reports", category="Reports", endpoint="report_schedules"
        )
    )
    console.add_view(
        ValidityPlannerView(name="Validity Planner", category="Reports", endpoint="planner")
    )
    console.add_view(
        AuditView(AuditEvent, name="Account Activity", category="Reports", endpoint="audit")
    )
    console.add_view(
        SentNotificationView(
            name="Sent Notifications", category="Reports", endpoint="sent_notifications"
        )
    )
    console.add_view(AdminView(Admin, name="Admins", endpoint="admins"))
    settings = (
        (
            OrganizationView(
                Organization, name="Organizations", category="Settings", endpoint="organization"
            )
        ),
        (
            DepartmentView(
                Department, name="Departments", category="Settings", endpoint="department"
            )
        ),
        (DomainView(Domain, name="Domains", category="Settings", endpoint="domain")),
        (
            DelegationView(
                Delegation, name="Domain Delegations", category="Settings", endpoint="delegation"
            )
        ),
        NotificationRuleView(
            name="Notifications", category="Settings", endpoint="notification_rules"
        ),
        NotificationWebhookView(
            name="Notification Webhooks", category="Settings", endpoint="notification_webhooks"
        ),
        (CaView(CertificateAuthority, name="Private CAs", category="Settings", endpoint="cas")),
        (
            CertificateProfileView(
                CertificateProfile,
                name="Certificate Profiles",
                category="Settings",
                endpoint="profiles",
            )
        ),
        AcmeKeyView(
            AcmeExternalKey, name="ACME accounts", category="Settings", endpoint="acme_keys"
        ),
    )
    for view in settings:
        console.add_view(view)
    # Reached from Settings > ACME accounts (its "Registered accounts" tab) and from an ACME
    # certificate's origin; not a menu entry of its own.
    accounts = AcmeAccountView(AcmeAccount, name="ACME account", endpoint="acme_accounts")
    accounts.is_visible = lambda: False  # type: ignore[method-assign]
    console.add_view(accounts)
    console.add_view(AboutView(name="About Certwright", category="About", endpoint="about"))
    console.add_view(JobView(Job, name="Background Jobs", category="About", endpoint="jobs"))
    console.add_view(
        OutboxView(OutboxMessage, name="Mail Outbox", category="About", endpoint="outbox")
    )
    profile = MyProfileView(name="My Profile", endpoint="profile")
    profile.is_visible = lambda: False  # type: ignore[method-assign]  # reached from the user menu
    console.add_view(profile)
    init_error_pages(app, console)
    return console
