"""Reports > Account Structure: XML that validates against the shipped XSD, scoped."""

from __future__ import annotations

import xmlschema
from defusedxml import ElementTree

from app.extensions import db
from app.models import CertType, Role
from app.reports.structure import NAMESPACE, SCHEMA_PATH
from app.services.reports.account_structure import account_structure_xml
from app.services.structure import domains
from tests.factories import make_admin, make_dept, make_org

NS = {"a": NAMESPACE}


def build_world():
    mrao = make_admin()
    mine = make_org('=HYPERLINK("http://evil.example","x")', address1="Main St 1 & <2>")
    theirs = make_org("Theirs")
    make_dept(mine, "IT")
    make_dept(theirs, "Secret Lab")
    domain = domains.create_domain(
        actor=mrao, name="shared.example", organization_id=mine.id, types=[CertType.SSL]
    )
    db.session.flush()
    domains.create_domain(
        actor=mrao, name="theirs.example", organization_id=theirs.id, types=list(CertType)
    )
    db.session.commit()
    rao = make_admin("rao", Role.RAO, org=mine, privileges=[CertType.SSL, CertType.CLIENT])
    make_admin("their_rao", Role.RAO, org=theirs)
    return mrao, rao, mine, theirs, domain


def document(actor) -> bytes:
    data = b"".join(account_structure_xml(actor=actor))
    db.session.commit()
    return data


def test_the_account_structure_validates_against_the_shipped_schema(app):
    mrao, _, mine, theirs, _ = build_world()
    data = document(mrao)
    schema = xmlschema.XMLSchema(str(SCHEMA_PATH))
    schema.validate(data.decode())  # raises on any violation
    root = ElementTree.fromstring(data)
    orgs = root.findall("a:organizations/a:organization", NS)
    assert [o.findtext("a:name", namespaces=NS) for o in orgs] == [mine.name, theirs.name]
    assert orgs[0].findtext("a:address/a:line", namespaces=NS) == "Main St 1 & <2>"
    assert orgs[1].find("a:departments/a:department/a:name", NS).text == "Secret Lab"
    theirs_domain = root.find("a:domains/a:domain[2]", NS)
    types = theirs_domain.findall("a:delegations/a:delegation/a:types/a:type", NS)
    assert [t.text for t in types] == ["SSL", "Client", "Code Signing", "Device"]
    admins = {a.findtext("a:login", namespaces=NS): a for a in root.findall("a:admins/a:admin", NS)}
    assert set(admins) == {"mrao", "rao", "their_rao"}
    rao_types = admins["rao"].findall("a:grants/a:grant/a:types/a:type", NS)
    assert [t.text for t in rao_types] == ["SSL", "Client"]


def test_an_rao_sees_only_their_organization(app):
    _, rao, _mine, _, _ = build_world()
    data = document(rao)
    xmlschema.XMLSchema(str(SCHEMA_PATH)).validate(data.decode())
    text = data.decode()
    assert "Theirs" not in text and "Secret Lab" not in text and "theirs.example" not in text
    assert "their_rao" not in text and "mrao" not in text
    root = ElementTree.fromstring(data)
    assert len(root.findall("a:organizations/a:organization", NS)) == 1
    assert root.find("a:domains/a:domain/a:name", NS).text == "shared.example"


def test_the_schema_rejects_a_broken_document(app):
    mrao, *_ = build_world()
    data = document(mrao).decode().replace('role="MRAO"', 'role="ROOT"')
    schema = xmlschema.XMLSchema(str(SCHEMA_PATH))
    assert not schema.is_valid(data)
