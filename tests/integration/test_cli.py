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


def test_secrets_generate_prints_an_environment_file_a_deployment_can_use(app, tmp_path):
    """`secrets generate` gives the three shared secrets as KEY=value lines; what it prints
    is what the configuration accepts: a Fernet key that seals and unseals a CA key."""
    import os
    import subprocess
    import sys

    from cryptography.hazmat.primitives.asymmetric import ec

    from app.pki import keystore

    result = app.test_cli_runner().invoke(args=["secrets", "generate"])
    assert result.exit_code == 0, result.output
    assert "Keep its CW_KEK and CW_AUDIT_KEY" in result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    values = dict(line.split("=", 1) for line in lines)
    assert list(values) == ["SECRET_KEY", "CW_KEK", "CW_AUDIT_KEY"]
    assert len(values["SECRET_KEY"]) == 64 and len(values["CW_AUDIT_KEY"]) == 64
    again = app.test_cli_runner().invoke(args=["secrets", "generate"]).stdout
    assert not set(values.values()) & set(again.split())  # fresh every time
    (tmp_path / "certwright.env").write_text(result.stdout)
    env = {**os.environ, "CW_INSTANCE_DIR": str(tmp_path / "instance"), **values}
    shown = subprocess.run(
        [
            sys.executable,
            "-c",
            "from app.config import Config; c = Config(); "
            "print(c.SECRET_KEY, c.CW_KEK, c.CW_AUDIT_KEY)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=app.root_path + "/..",
    ).stdout.split()
    assert shown == [values["SECRET_KEY"], values["CW_KEK"], values["CW_AUDIT_KEY"]]
    keks = keystore.parse_keks(values["CW_KEK"])
    key = ec.generate_private_key(ec.SECP256R1())
    sealed = keystore.seal_private_key(key, keks)
    assert keystore.unseal_private_key(sealed, keks).private_numbers() == key.private_numbers()


def test_a_command_imports_neither_pkilint_nor_the_console(tmp_path):
    """Start-up of every `flask --app wsgi ...` call (issue 9, E5): building the app must not
    import pkilint (half a second) nor build the Flask-Admin console; both come when used."""
    import subprocess

    from tests.processes import PY, ROOT, app_env

    probe = (
        "import sys, wsgi; "
        "print(sorted(m for m in ('pkilint', 'flask_admin.contrib.sqla', 'app.admin.certificates') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [PY, "-c", probe],
        cwd=ROOT,
        env=app_env(CW_INSTANCE_DIR=tmp_path, FLASK_RUN_FROM_CLI="true"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_console_is_built_before_the_first_request(app, client):
    from app import ensure_console

    client.get("/login")
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert {"admin.index", "ssl_certs.index_view", "network_assets.index_view"} <= endpoints
    ensure_console(app)  # a second time is a no-op (gunicorn calls it at worker start)
    assert {rule.endpoint for rule in app.url_map.iter_rules()} == endpoints
