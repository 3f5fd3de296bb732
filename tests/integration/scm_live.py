"""A live Certwright for the SCM REST API tests: gunicorn (embedded worker, SQLite) on a
free loopback port, with an account seeded through the services, driven with `requests`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from app import create_app
from app.extensions import db
from app.models import AdminKind, CertType, Role
from app.services.accounts import admins
from app.services.scope import SYSTEM
from tests.conftest import make_config
from tests.factories import PASSWORD, make_admin, make_dept, make_domain, make_org, make_pki
from tests.processes import PY, Proc, app_env, describe, free_port, port_open, wait_until

API_PASSWORD = "an-api-script-password-1"


class DnsServer:
    """A tiny authoritative answerer on loopback UDP: CNAME records from ``records``."""

    def __init__(self) -> None:
        import socket
        import threading

        self.records: dict[str, str] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        import dns.message
        import dns.rcode
        import dns.rrset

        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            query = dns.message.from_wire(data)
            reply = dns.message.make_response(query)
            question = query.question[0]
            target = self.records.get(str(question.name).lower())
            if target is not None and question.rdtype == dns.rdatatype.CNAME:
                reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "CNAME", target))
            else:
                reply.set_rcode(dns.rcode.NXDOMAIN)
            self.sock.sendto(reply.to_wire(), peer)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


@dataclass
class Live:
    base: str
    app: Any
    ids: dict[str, int] = field(default_factory=dict)
    proc: Any = None
    dns: Any = None

    def headers(
        self, login: str, password: str = API_PASSWORD, uri: str = "certwright"
    ) -> dict[str, str]:
        return {
            "login": login,
            "password": password,
            "customerUri": uri,
            "Accept": "application/json",
        }

    def call(
        self, method: str, path: str, login: str = "api-mrao", **kwargs: Any
    ) -> requests.Response:
        headers = {**self.headers(login), **kwargs.pop("headers", {})}
        return requests.request(
            method, f"{self.base}/api{path}", headers=headers, timeout=30, **kwargs
        )

    def wait_status(
        self, ssl_id: int, want: str, login: str = "api-mrao", timeout: float = 60
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            data = self.call("GET", f"/ssl/v1/{ssl_id}", login).json()
            return data if data.get("status") == want else None

        return wait_until(
            probe, timeout=timeout, what=f"order {ssl_id} to be {want}", why=describe(self.proc)
        )


def api_admin(
    login: str,
    role: Role = Role.MRAO,
    *,
    org: Any = None,
    dept: Any = None,
    networks: tuple[str, ...] = (),
) -> Any:
    grants = []
    if role != Role.MRAO:
        grants.append(admins.Grant(org.id, dept.id if dept else None, frozenset(CertType)))
    admin = admins.create_admin(
        actor=SYSTEM,
        login=login,
        email=f"{login}@example.com",
        role=role,
        password=API_PASSWORD,
        grants=grants,
        kind=AdminKind.API,
        api_networks=networks,
    )
    db.session.commit()
    return admin


def seed() -> dict[str, int]:
    human = make_admin("mrao")
    acme = make_org("Acme", city="Berlin", state="Berlin")
    beta = make_org("Beta", city="Paris")
    it = make_dept(acme, "IT")
    make_domain("acme.example", by=human, org=acme)
    make_domain("beta.example", by=human, org=beta)
    root, issuing, auto = make_pki(key_type="RSA-2048", requires_approval=False, name="Auto TLS")
    from app.services.ca import profiles

    manual = profiles.create_profile(
        actor=SYSTEM,
        data=profiles.ProfileData(
            name="Approved TLS",
            cert_type=CertType.SSL,
            ca_id=issuing.id,
            terms=(90,),
            key_types=("RSA-2048", "EC-P256"),
            requires_approval=True,
        ),
    )
    db.session.commit()
    api_admin("api-mrao")
    api_admin("api-acme", Role.RAO, org=acme)
    api_admin("api-beta", Role.RAO, org=beta)
    api_admin("api-far", networks=("10.99.0.0/16",))
    return {
        "human": human.id,
        "acme": acme.id,
        "beta": beta.id,
        "it": it.id,
        "root": root.id,
        "issuing": issuing.id,
        "auto": auto.id,
        "manual": manual.id,
    }


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, template_db: Path) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("scm-live")
    path = folder / "api.db"
    shutil.copy(template_db, path)
    url = f"sqlite:///{path}"
    app = create_app(make_config(url))
    ctx = app.app_context()
    ctx.push()
    try:
        ids = seed()
        dns_server = DnsServer()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = app_env(
            DATABASE_URL=url,
            CW_BIND=f"127.0.0.1:{port}",
            CW_KEK=app.config["CW_KEK"],
            CW_INSTANCE_DIR=str(folder / "instance"),
            CW_BASE_URL=base,
            CW_WEB_THREADS=4,
            CW_LOGIN_MAX_FAILURES=3,
            CW_API_RATE_LIMIT=0,
            CW_DCV_NAMESERVERS=f"127.0.0.1:{dns_server.port}",
            # The tests stand in for a TLS-terminating proxy on this host (/private/api).
            CW_PROXY_HOPS=1,
        )
        proc = Proc(
            "gunicorn",
            [PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            env=env,
            logs=folder,
        )
        try:
            wait_until(lambda: port_open(port), timeout=60, what="gunicorn", why=describe(proc))
            # The port opens before the worker has loaded the app: on a busy machine the
            # first call could spend its whole timeout waiting for that.
            wait_until(
                lambda: _answers(f"{base}/login"), timeout=120, what="the app", why=describe(proc)
            )
            yield Live(base=base, app=app, ids=ids, proc=proc, dns=dns_server)
        finally:
            proc.stop()
            dns_server.close()
    finally:
        db.session.remove()
        db.engine.dispose()
        ctx.pop()


def console_session(live: Live, login: str = "mrao", password: str = PASSWORD) -> requests.Session:
    """A person signed in to the console of the live server."""
    import re

    session = requests.Session()
    html = session.get(f"{live.base}/login", timeout=30).text
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html)
    assert token, html[:500]
    answer = session.post(
        f"{live.base}/login",
        data={"csrf_token": token.group(1), "login": login, "password": password},
        timeout=30,
        allow_redirects=False,
    )
    assert answer.status_code in (302, 303), answer.text[:500]
    return session


def approve_in_console(live: Live, request_id: int) -> None:
    """A person approves a request in the console of the live server."""
    import re

    session = console_session(live)
    url = f"{live.base}/admin/ssl_requests/decide/?id={request_id}"
    token = re.search(
        r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', session.get(url, timeout=30).text
    )
    assert token
    done = session.post(
        url,
        data={"csrf_token": token.group(1), "approve": "1", "message": "checked"},
        timeout=30,
        allow_redirects=False,
    )
    assert done.status_code in (302, 303), done.text[:500]
