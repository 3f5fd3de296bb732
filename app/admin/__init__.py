"""The admin console (Flask-Admin), built per app inside create_app()."""

from __future__ import annotations

from flask import Flask
from flask_admin import Admin as Console
from flask_admin.theme import Bootstrap4Theme

from app.admin.admins import AdminView
from app.admin.dashboard import DashboardView, PendingTabView
from app.admin.domains import DelegationView, DomainView
from app.admin.orgs import DepartmentView, OrganizationView
from app.admin.system import AboutView, AuditView, JobView, OutboxView, ProfileView
from app.models import (
    Admin,
    AuditEvent,
    Delegation,
    Department,
    Domain,
    Job,
    Organization,
    OutboxMessage,
    Role,
)


def init_console(app: Flask) -> Console:
    console = Console(
        app,
        name="Certwright",
        theme=Bootstrap4Theme(base_template="admin/cw_base.html", fluid=True),
        index_view=DashboardView(name="Dashboard", url="/admin"),
    )
    console.add_view(
        PendingTabView(
            name="Certificates",
            endpoint="certificates",
            summary="The certificate inventory: SSL, Client, Device and Code Signing certificates, issued by the private CA, discovered on the network or imported.",
            parts=[
                ("SSL certificates", False),
                ("Client certificates", False),
                ("Device certificates", False),
                ("Code Signing certificates", False),
            ],
        )
    )
    console.add_view(
        PendingTabView(
            name="Discovery",
            endpoint="discovery",
            summary="Network discovery finds the certificates already deployed on your network and brings them into the inventory.",
            parts=[("Network Discovery Tasks", False), ("Network Assets", False)],
        )
    )
    console.add_view(
        AuditView(AuditEvent, name="Account Activity", category="Reports", endpoint="audit")
    )
    console.add_view(AdminView(Admin, name="Admins", endpoint="admins"))
    console.add_view(
        OrganizationView(
            Organization, name="Organizations", category="Settings", endpoint="organization"
        )
    )
    console.add_view(
        DepartmentView(Department, name="Departments", category="Settings", endpoint="department")
    )
    console.add_view(DomainView(Domain, name="Domains", category="Settings", endpoint="domain"))
    console.add_view(
        DelegationView(
            Delegation, name="Domain Delegations", category="Settings", endpoint="delegation"
        )
    )
    console.add_view(AboutView(name="About Certwright", category="About", endpoint="about"))
    console.add_view(JobView(Job, name="Background Jobs", category="About", endpoint="jobs"))
    console.add_view(
        OutboxView(OutboxMessage, name="Mail Outbox", category="About", endpoint="outbox")
    )
    profile = ProfileView(name="My Profile", endpoint="profile")
    profile.is_visible = lambda: False  # type: ignore[method-assign]  # reached from the user menu
    console.add_view(profile)
    _ = Role  # roles per view are declared on the view classes
    return console
