"""The foundation's command line: bootstrap and admin create, for scripts."""

from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Admin, CertType, Role
from tests.factories import make_dept, make_org


def run(app, *args, env=None):
    result = app.test_cli_runner().invoke(args=list(args), env=env or {})
    return result.exit_code, result.output


def test_bootstrap_prints_a_generated_password_once(app):
    code, out = run(app, "bootstrap")
    assert code == 0 and "Sign in as 'admin' with the password:" in out
    assert "Created the first organization" in out
    code, out = run(app, "bootstrap")
    assert code == 0 and "password" not in out


def test_admin_create_with_scopes(app):
    org = make_org("Acme")
    make_dept(org, "IT")
    code, out = run(
        app,
        "admin",
        "create",
        "--login",
        "it-drao",
        "--email",
        "it@acme.example",
        "--role",
        "DRAO",
        "--scope",
        "Acme/IT:ssl,device",
        env={"CW_NEW_ADMIN_PASSWORD": "a-strong-password-1"},
    )
    assert code == 0 and "Created DRAO 'it-drao'" in out, out
    admin = db.session.execute(select(Admin).where(Admin.login == "it-drao")).scalar_one()
    assert admin.role == Role.DRAO and admin.scopes[0].privileges() == {
        CertType.SSL,
        CertType.DEVICE,
    }


def test_admin_create_errors(app):
    make_org("Acme")
    code, out = run(
        app,
        "admin",
        "create",
        "--login",
        "x1",
        "--email",
        "x@example.com",
        "--role",
        "RAO",
        "--scope",
        "Nope",
        env={"CW_NEW_ADMIN_PASSWORD": "a-strong-password-1"},
    )
    assert code == 2 and "no organization named 'Nope'" in out
    code, out = run(
        app,
        "admin",
        "create",
        "--login",
        "weak",
        "--email",
        "w@example.com",
        "--role",
        "MRAO",
        env={"CW_NEW_ADMIN_PASSWORD": "short"},
    )
    assert code == 2 and "at least 12 characters" in out
    code, out = run(
        app,
        "admin",
        "create",
        "--login",
        "d",
        "--email",
        "d@example.com",
        "--role",
        "DRAO",
        "--scope",
        "Acme",
        env={"CW_NEW_ADMIN_PASSWORD": "a-strong-password-1"},
    )
    assert code == 2
