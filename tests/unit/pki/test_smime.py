"""S/MIME subscriber certificates: the two subjects, the term ceiling, and pkilint's S/MIME
validator (lint_cabf_smime_cert) judging what Certwright issues for the Client kind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from app.pki import issue, lint, names, smime
from app.pki.errors import LintError, NamePolicyError, ProfileError
from app.pki.profiles import CertKind, LeafProfile
from tests.unit.pki.conftest import Hierarchy, KeyCache

ALT = ("jane.doe@example.com", "j.doe@mail.example.com")
LINTER = str(Path(sys.executable).parent / "lint_cabf_smime_cert")


def _client(
    hierarchy: Hierarchy, key_cache: KeyCache, subject: x509.Name, key_type: str = "EC-P256"
) -> x509.Certificate:
    return issue.issue_leaf(
        hierarchy.issuing_for(CertKind.CLIENT),
        public_key=key_cache.get(key_type).public_key(),  # type: ignore[arg-type]
        subject=subject,
        alt_names=names.parse_alt_names(ALT),
        profile=LeafProfile(CertKind.CLIENT),
        serial=issue.new_serial(),
        term_days=365,
    )


@pytest.mark.parametrize("key_type", ["EC-P256", "RSA-2048"])
@pytest.mark.parametrize(
    ("level", "expected_dn", "target"),
    [
        (smime.ValidationLevel.MAILBOX, "CN=jane.doe@example.com", lint.LintTarget.SMIME_MAILBOX),
        (
            smime.ValidationLevel.INDIVIDUAL,
            "CN=Jane Q Doe,SN=Doe,GN=Jane",
            lint.LintTarget.SMIME_INDIVIDUAL,
        ),
    ],
)
def test_client_certificates_pass_the_smime_linter(
    hierarchy: Hierarchy,
    key_cache: KeyCache,
    tmp_path: Path,
    key_type: str,
    level: smime.ValidationLevel,
    expected_dn: str,
    target: lint.LintTarget,
) -> None:
    values = smime.subject_values(
        level, email=ALT[0], given_name="Jane", surname="Doe", full_name="Jane Q Doe"
    )
    cert = _client(hierarchy, key_cache, smime.build_subject(values), key_type)  # linted inside
    assert cert.subject.rfc4514_string(smime.DN_NAMES) == expected_dn
    assert lint.lint_target(cert, CertKind.CLIENT) is target
    findings = lint.check_certificate(cert, CertKind.CLIENT)
    assert {f.code for f in findings} <= set(lint.LINT_ALLOW_LIST)
    # pkilint's own command line (lint_cabf_smime_cert) agrees: allow-listed findings only.
    path = tmp_path / "client.pem"
    path.write_bytes(cert.public_bytes(Encoding.PEM))
    kind = "MAILBOX" if level is smime.ValidationLevel.MAILBOX else "INDIVIDUAL"
    out = subprocess.run(
        [LINTER, "lint", "-t", f"{kind}-MULTIPURPOSE", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    codes = set(
        re.findall(r"^\s+([a-z0-9_.]+) \((?:FATAL|ERROR|WARNING|NOTICE|INFO)\)", out.stdout, re.M)
    )
    assert "cabf.smime.certificate_policies_extension_missing" in codes, out.stdout
    assert codes <= set(lint.LINT_ALLOW_LIST), out.stdout


def test_organization_in_a_client_subject_is_refused_by_the_smime_linter(
    hierarchy: Hierarchy, key_cache: KeyCache
) -> None:
    # The old client subject (O, OU, C) breaks the mailbox profile: issuance refuses it.
    subject = names.build_subject(common_name=ALT[0], organization="Acme", country="DE")
    with pytest.raises(LintError, match=r"cabf\.smime\.prohibited_attribute"):
        _client(hierarchy, key_cache, subject)


def test_subject_values_checks() -> None:
    assert smime.subject_values(smime.ValidationLevel.MAILBOX, email="a@b.example") == {
        "CN": "a@b.example"
    }
    with pytest.raises(NamePolicyError, match="given name and the surname"):
        smime.subject_values(smime.ValidationLevel.INDIVIDUAL, email="a@b.example", given_name="A")
    with pytest.raises(
        NamePolicyError, match=r"given name contains the bidirectional control character U\+202E"
    ):
        smime.subject_values(
            smime.ValidationLevel.INDIVIDUAL, email="a@b.example", given_name="A\u202e", surname="B"
        )
    with pytest.raises(NamePolicyError, match="longer than 64"):
        smime.build_subject({"CN": "x" * 65})


def test_term_ceiling() -> None:
    smime.check_term(825)
    with pytest.raises(ProfileError, match="exceeds the maximum of 825 days"):
        smime.check_term(826)
